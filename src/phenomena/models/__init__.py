"""Models shared by the chapters: one readable model per file, configured by a dataclass."""

from .deep_linear import INITS, DeepLinearConfig, DeepLinearNetwork, random_orthogonal

__all__ = ["DeepLinearConfig", "DeepLinearNetwork", "INITS", "random_orthogonal"]
from .mlp import ACTIVATIONS, MLP, PARAMETERIZATIONS, MLPConfig  # noqa: E402

__all__ += ["MLP", "MLPConfig", "ACTIVATIONS", "PARAMETERIZATIONS"]
from .linear_attention import LinearAttentionConfig, LinearSelfAttention  # noqa: E402
__all__ += ["LinearAttentionConfig", "LinearSelfAttention"]
from .unconstrained import UFMConfig, UnconstrainedFeatures  # noqa: E402
__all__ += ["UFMConfig", "UnconstrainedFeatures"]
from .linear_attention import LSA_INITS  # noqa: E402
__all__ += ["LSA_INITS"]
