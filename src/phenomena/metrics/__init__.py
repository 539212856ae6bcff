"""Measurements on models and their training: usable on any model, not tied to one chapter."""

from .ntk import empirical_ntk, kernel_regression

__all__ = ["empirical_ntk", "kernel_regression"]
from .collapse import neural_collapse, within_class_variability, class_means  # noqa: E402
__all__ += ["neural_collapse", "within_class_variability", "class_means"]
from .weights import feature_alignment, relative_change  # noqa: E402
__all__ += ["feature_alignment", "relative_change"]
from .hessian import ensemble_hessian_top_eigenvalue, hessian_top_eigenvalue, minibatch_hessian_top_eigenvalue  # noqa: E402
__all__ += ["hessian_top_eigenvalue", "minibatch_hessian_top_eigenvalue", "ensemble_hessian_top_eigenvalue"]
from .fourier import active_neurons, fourier_power, neuron_fourier_power, top_frequency_fraction  # noqa: E402
__all__ += ["fourier_power", "neuron_fourier_power", "top_frequency_fraction", "active_neurons"]
from .probe import probe_accuracy, ridge_probe  # noqa: E402
__all__ += ["probe_accuracy", "ridge_probe"]
