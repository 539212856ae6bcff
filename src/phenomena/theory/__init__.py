"""Closed forms the chapters compare against. Numpy in, numpy out; no torch needed."""

from __future__ import annotations

from .collapse import (
    class_mean_gram,
    class_mean_norms,
    classifier_row_norms,
    collapse_threshold,
    simplex_etf_gram,
    ufm_singular_values,
)
from .icl import (
    gradient_second_moment,
    least_squares_risk,
    one_step_gd_prediction,
    one_step_risk,
    optimal_one_step_risk,
    optimal_preconditioner,
    preconditioner_isotropy_gap,
)
from .ntk import arccos_kernel, gaussian_expectation, ntk_two_layer, ntk_two_layer_std, relu_ntk
from .perceptron import batch_perceptron, steps_to_separate, worst_case_steps
from .saxe import saxe_growing_strength, saxe_half_time, saxe_mode_strength

__all__ = [
    "saxe_growing_strength", "saxe_half_time", "saxe_mode_strength", "gradient_second_moment",
    "least_squares_risk", "one_step_gd_prediction", "one_step_risk", "optimal_one_step_risk",
    "optimal_preconditioner", "preconditioner_isotropy_gap", "class_mean_gram", "class_mean_norms",
    "classifier_row_norms", "collapse_threshold", "simplex_etf_gram", "ufm_singular_values",
    "arccos_kernel", "gaussian_expectation", "ntk_two_layer", "ntk_two_layer_std", "relu_ntk",
    "batch_perceptron", "steps_to_separate", "worst_case_steps",
]
from .attention import attention_entropy_bound, entropy_lower_bound, extremal_logits, softmax_entropy

__all__ += ["attention_entropy_bound", "entropy_lower_bound", "extremal_logits", "softmax_entropy"]
