"""Closed forms the chapters compare against. Numpy in, numpy out; no torch needed."""

from .saxe import saxe_growing_strength, saxe_half_time, saxe_mode_strength

__all__ = ["saxe_mode_strength", "saxe_half_time", "saxe_growing_strength"]
from .icl import (  # noqa: E402
    gradient_second_moment, least_squares_risk, one_step_gd_prediction, one_step_risk,
    optimal_one_step_risk, optimal_preconditioner, preconditioner_isotropy_gap,
)
__all__ += ["gradient_second_moment", "least_squares_risk", "one_step_gd_prediction",
            "one_step_risk", "optimal_one_step_risk", "optimal_preconditioner", "preconditioner_isotropy_gap"]
from .collapse import (  # noqa: E402
    class_mean_gram, class_mean_norms, classifier_row_norms, collapse_threshold, simplex_etf_gram, ufm_singular_values,
)
__all__ += ["class_mean_gram", "class_mean_norms", "classifier_row_norms", "collapse_threshold", "simplex_etf_gram",
            "ufm_singular_values"]
from .ntk import arccos_kernel, gaussian_expectation, ntk_two_layer, ntk_two_layer_std, relu_ntk  # noqa: E402
__all__ += ["relu_ntk", "ntk_two_layer", "ntk_two_layer_std", "arccos_kernel", "gaussian_expectation"]
from .perceptron import batch_perceptron, steps_to_separate, worst_case_steps  # noqa: E402
__all__ += ["batch_perceptron", "steps_to_separate", "worst_case_steps"]
