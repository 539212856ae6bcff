"""Models shared by the chapters: one readable model per file, configured by a dataclass."""

from __future__ import annotations

from .deep_linear import INITS, DeepLinearConfig, DeepLinearNetwork, random_orthogonal
from .linear_attention import LSA_INITS, LinearAttentionConfig, LinearSelfAttention
from .mlp import ACTIVATIONS, MLP, PARAMETERIZATIONS, MLPConfig
from .unconstrained import UFMConfig, UnconstrainedFeatures

__all__ = [
    "INITS", "DeepLinearConfig", "DeepLinearNetwork", "random_orthogonal", "ACTIVATIONS", "MLP",
    "PARAMETERIZATIONS", "MLPConfig", "LinearAttentionConfig", "LinearSelfAttention", "LSA_INITS",
    "UFMConfig", "UnconstrainedFeatures",
]
from .gpt import GPT, NORMS, GPTConfig, Probes, lm_loss

__all__ += ["GPT", "GPTConfig", "NORMS", "Probes", "lm_loss"]
