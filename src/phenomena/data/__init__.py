"""Data made on the fly (or shipped inside a package): nothing downloads at run time."""

from __future__ import annotations

from .clusters import gaussian_clusters
from .digits import DigitsSplit, gaussian_like, load_digits_split, random_labels
from .hermite import SingleIndexTask, hermite, hermite_series, series_moments, single_index_task
from .icl import COVARIANCES, ICLBatch, ICLTasks, input_covariance
from .linear import linear_target, whitened_inputs
from .modular import OPERATIONS, ModularTask, modular_task
from .separable import separable_gaussian, tyurin_worst_case
from .sphere import sphere_points
from .xor import XorClusters, xor_clusters, xor_means

__all__ = [
    "whitened_inputs", "linear_target", "ICLBatch", "ICLTasks", "COVARIANCES", "input_covariance",
    "gaussian_clusters", "sphere_points", "SingleIndexTask", "hermite", "hermite_series", "series_moments",
    "single_index_task", "XorClusters", "xor_clusters", "xor_means", "OPERATIONS", "ModularTask",
    "modular_task", "DigitsSplit", "gaussian_like", "load_digits_split", "random_labels",
    "separable_gaussian", "tyurin_worst_case",
]
from .markov import (
    ContextMarkovLanguage,
    MarkovLanguage,
    de_bruijn,
    markov_language,
    markov_language_of_order,
)

__all__ += ["ContextMarkovLanguage", "MarkovLanguage", "de_bruijn", "markov_language", "markov_language_of_order"]
