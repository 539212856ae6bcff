"""Measurements on models and their training: usable on any model, not tied to one chapter."""

from __future__ import annotations

from .collapse import class_means, neural_collapse, within_class_variability
from .curves import NEVER, capped_loss, crossing_time, first_index, loglog_slope
from .fourier import active_neurons, fourier_power, neuron_fourier_power, top_frequency_fraction
from .hessian import ensemble_hessian_top_eigenvalue, hessian_top_eigenvalue, minibatch_hessian_top_eigenvalue
from .ntk import empirical_ntk, kernel_regression
from .probe import probe_accuracy, ridge_probe
from .weights import feature_alignment, relative_change

__all__ = [
    "NEVER", "capped_loss", "crossing_time", "first_index", "loglog_slope",
    "empirical_ntk", "kernel_regression", "neural_collapse", "within_class_variability", "class_means",
    "feature_alignment", "relative_change", "ensemble_hessian_top_eigenvalue", "hessian_top_eigenvalue",
    "minibatch_hessian_top_eigenvalue", "active_neurons", "fourier_power", "neuron_fourier_power",
    "top_frequency_fraction", "probe_accuracy", "ridge_probe",
]
from .attention import attention_entropy

__all__ += ["attention_entropy"]
from .curves import OffsetPowerLaw, ema, fit_offset_power_law, kendall_tau, mape  # noqa: E402

__all__ += ["OffsetPowerLaw", "ema", "fit_offset_power_law", "kendall_tau", "mape"]
