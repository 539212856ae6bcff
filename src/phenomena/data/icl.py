"""In-context linear regression tasks, drawn fresh on every call.

A *task* is a weight vector ``w ~ N(0, I_d)``. Its prompt holds ``n`` context pairs
``(x_i, y_i)``, ``x_i ~ N(0, Σ)``, ``y_i = wᵀx_i + ε_i`` with ``ε_i ~ N(0, σ²)``, and a query
``x_q`` whose label ``y_q`` the model must predict. As tokens (von Oswald et al. 2023; Ahn et al.
2023) the prompt is the ``(n+1) × (d+1)`` matrix whose rows are ``(x_i, y_i)`` and, last,
``(x_q, 0)``.

Covariances (``covariance``): ``"isotropic"`` is ``Σ = I``; ``"anisotropic"`` is the
AR(1)/Toeplitz matrix ``Σ_ij = ρ^|i−j|``, which keeps ``tr Σ = d`` (the same signal power as the
isotropic case), has a tridiagonal inverse, and for ``ρ = 0.8``, ``d = 5`` a condition number of 30.

Task priors (``prior``): ``"gaussian"`` is ``w ~ N(0, I_d)``; ``"gmm"`` is the two-component mixture of
Panwar, Ahuja & Goyal (2023), ``w ~ π·N(+c·e₁, Σ₁) + (1−π)·N(−c·e₁, Σ₁)`` with ``Σ₁ = I`` except
``(Σ₁)₁₁ = 10⁻⁸`` (``jitter``): the first coordinate is pinned to ``±c``, the others are standard normal.
A prompt then hides one bit (the sign) besides ``w``'s Gaussian part, which is what makes the Bayes
predictor non-linear in the labels.

Token layouts: the rows ``(x_i, y_i)`` above (one token per pair), or Garg et al. (2022)'s interleaved
sequence ``x_1, ỹ_1, x_2, ỹ_2, …`` of ``d``-dimensional tokens with ``ỹ_i = (y_i, 0, …, 0)``
(:func:`interleave`), in which a causal transformer predicts ``y_i`` from the output at ``x_i``'s token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

COVARIANCES: tuple[str, ...] = ("isotropic", "anisotropic")
PRIORS: tuple[str, ...] = ("gaussian", "gmm")


def input_covariance(kind: str, d: int, *, rho: float = 0.8, dtype: torch.dtype = torch.float64) -> Tensor:
    """The input covariance ``Σ`` of a named kind: ``"isotropic"`` (``I``) or ``"anisotropic"`` (``ρ^|i−j|``)."""
    if kind not in COVARIANCES:
        raise ValueError(f"unknown covariance {kind!r}; valid kinds are: {', '.join(COVARIANCES)}")
    if int(d) != d or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    if kind == "isotropic":
        return torch.eye(d, dtype=dtype)
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1) for a positive-definite covariance, got {rho}")
    i = torch.arange(d, dtype=dtype)
    return torch.as_tensor(rho, dtype=dtype) ** (i[:, None] - i[None, :]).abs()


@dataclass
class ICLBatch:
    """``B`` prompts as tokens ``(B, n+1, d+1)`` (rows ``(x_i, y_i)``, last row ``(x_q, 0)``), the query
    labels ``y_query (B,)`` and the tasks ``w (B, d)``. ``x``, ``y``, ``x_query`` are views into the tokens."""

    tokens: Tensor
    y_query: Tensor
    w: Tensor

    @property
    def x(self) -> Tensor:
        """Context inputs ``(B, n, d)``."""
        return self.tokens[:, :-1, :-1]

    @property
    def y(self) -> Tensor:
        """Context labels ``(B, n)``."""
        return self.tokens[:, :-1, -1]

    @property
    def x_query(self) -> Tensor:
        """Query inputs ``(B, d)``."""
        return self.tokens[:, -1, :-1]

    @property
    def context_length(self) -> int:
        return self.tokens.shape[1] - 1

    @property
    def points_x(self) -> Tensor:
        """All inputs, context then query, ``(B, n+1, d)``."""
        return self.tokens[:, :, :-1]

    @property
    def points_y(self) -> Tensor:
        """All labels, context then query (the true ``y_q``), ``(B, n+1)``."""
        return torch.cat([self.y, self.y_query[:, None]], dim=1)

    def to(self, device: torch.device | str) -> ICLBatch:
        return ICLBatch(self.tokens.to(device), self.y_query.to(device), self.w.to(device))


def interleave(x: Tensor, y: Tensor, *, label_channel: bool = False) -> Tensor:
    """Garg et al. (2022)'s token sequence: ``x (..., m, d)``, ``y (..., m)`` → ``(..., 2m, d)``.

    Tokens alternate ``x_1, ỹ_1, x_2, ỹ_2, …`` with ``ỹ_i = (y_i, 0, …, 0)``: inputs and labels share
    one token width, and a causal model's output at ``x_i``'s token (position ``2i``) sees ``x_i`` and
    the ``i`` pairs before it, so one sequence trains the prediction at every context length.

    ``label_channel=True`` gives every token one more entry and puts the label there instead,
    ``x_i → (x_i, 0)`` and ``ỹ_i = (0, …, 0, y_i)`` (``(..., 2m, d+1)``): the same sequence, but a label
    no longer shares its channel with the first input coordinate, so a linear read-in can tell the
    two kinds of token apart.
    """
    if x.shape[:-1] != y.shape:
        raise ValueError(f"x (..., m, d) and y (..., m) disagree: got {tuple(x.shape)} and {tuple(y.shape)}")
    if label_channel:
        x = torch.cat([x, torch.zeros_like(x[..., :1])], dim=-1)
    label = torch.zeros_like(x)
    label[..., -1 if label_channel else 0] = y
    return torch.stack([x, label], dim=-2).flatten(-3, -2)


@dataclass(frozen=True)
class ICLTasks:
    """A distribution of in-context regression prompts; :meth:`sample` draws a fresh batch of tasks.

    ``noise`` is the label-noise *variance* ``σ²`` (context and query labels alike). ``prior`` picks the
    task prior (``"gaussian"`` or ``"gmm"``, see the module docstring); ``centre`` ``c``, ``mixing`` ``π``
    (the weight of ``+c·e₁``) and ``jitter`` (``(Σ₁)₁₁``) shape the mixture and are unused otherwise.
    """

    d: int = 5
    n: int = 20
    noise: float = 0.1
    covariance: str = "isotropic"
    rho: float = 0.8
    dtype: torch.dtype = torch.float64
    prior: str = "gaussian"
    centre: float = 3.0
    mixing: float = 0.5
    jitter: float = 1e-8

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; valid priors are: {', '.join(PRIORS)}")
        if self.prior == "gmm":
            if not 0 <= self.mixing <= 1:
                raise ValueError(f"mixing (the weight of the +c·e1 component) must lie in [0, 1], got {self.mixing!r}")
            if not self.jitter > 0:
                raise ValueError(f"jitter (the variance of w_1 within a component) must be > 0, got {self.jitter!r}")
        if int(self.n) != self.n or self.n < 1:
            raise ValueError(f"the context length n must be a positive integer, got {self.n!r}")
        if not self.noise >= 0:
            raise ValueError(f"noise (the label-noise variance) must be >= 0, got {self.noise!r}")
        input_covariance(self.covariance, self.d, rho=self.rho)  # validates covariance, d and rho

    @property
    def sigma(self) -> Tensor:
        """The input covariance ``Σ`` ``(d, d)``."""
        return input_covariance(self.covariance, self.d, rho=self.rho, dtype=self.dtype)

    @property
    def prior_second_moment(self) -> Tensor:
        """``E[w wᵀ]`` ``(d, d)``: ``I`` for the Gaussian prior, ``diag(c² + jitter, 1, …, 1)`` for the mixture.

        It is all a predictor linear in the labels can know of the prior: the ridge (Gaussian
        posterior-mean) predictor with this covariance is the best such predictor.
        """
        m = torch.eye(self.d, dtype=self.dtype)
        if self.prior == "gmm":
            m[0, 0] = self.centre**2 + self.jitter
        return m

    def sample(self, batch: int, generator: torch.Generator, device: torch.device | str | None = None) -> ICLBatch:
        """``batch`` fresh tasks, drawn on the generator's device (CPU by default) and moved to ``device``.

        The same generator state gives the same tasks, whatever ``device`` is.
        """
        if int(batch) != batch or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        d, n = self.d, self.n
        where = generator.device
        w = torch.randn(batch, d, generator=generator, dtype=self.dtype, device=where)
        if self.prior == "gmm":
            plus = torch.rand(batch, generator=generator, dtype=self.dtype, device=where) < self.mixing
            sign = plus.to(self.dtype) * 2 - 1
            w[:, 0] = w[:, 0] * self.jitter**0.5 + sign * self.centre
        # contiguous draws, then one copy: drawing into a strided view of `tokens` is several times slower
        x = torch.randn(batch, n + 1, d, generator=generator, dtype=self.dtype, device=where)
        if self.covariance != "isotropic":
            x = x @ torch.linalg.cholesky(self.sigma).to(where).T
        eps = torch.randn(batch, n + 1, 1, generator=generator, dtype=self.dtype, device=where)
        y = torch.baddbmm(eps.mul_(self.noise**0.5), x, w[:, :, None])
        y_query = y[:, n, 0].clone()
        y[:, n] = 0.0
        tokens = torch.cat([x, y], dim=-1)
        out = ICLBatch(tokens, y_query, w)
        if device is not None and torch.device(device) != torch.device(where):
            out = out.to(device)
        return out
