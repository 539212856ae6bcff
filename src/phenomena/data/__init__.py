"""Data made on the fly (or shipped inside a package): nothing downloads at run time."""

from .linear import whitened_inputs, linear_target

__all__ = ["whitened_inputs", "linear_target"]
from .icl import ICLBatch, ICLTasks, COVARIANCES, input_covariance  # noqa: E402
__all__ += ["ICLBatch", "ICLTasks", "COVARIANCES", "input_covariance"]
from .clusters import gaussian_clusters  # noqa: E402
__all__ += ["gaussian_clusters"]
from .sphere import sphere_points  # noqa: E402
__all__ += ["sphere_points"]
from .hermite import SingleIndexTask, hermite, hermite_series, series_moments, single_index_task  # noqa: E402
__all__ += ["SingleIndexTask", "hermite", "hermite_series", "series_moments", "single_index_task"]
from .xor import XorClusters, xor_clusters, xor_means  # noqa: E402
__all__ += ["XorClusters", "xor_clusters", "xor_means"]
from .modular import OPERATIONS, ModularTask, modular_task  # noqa: E402
__all__ += ["OPERATIONS", "ModularTask", "modular_task"]
from .digits import DigitsSplit, gaussian_like, load_digits_split, random_labels  # noqa: E402
__all__ += ["DigitsSplit", "load_digits_split", "gaussian_like", "random_labels"]
from .separable import separable_gaussian, tyurin_worst_case  # noqa: E402
__all__ += ["separable_gaussian", "tyurin_worst_case"]
