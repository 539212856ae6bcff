"""Shallow piecewise-linear RNN (shPLRNN, Hess et al. 2023), many members as one batched model.

    z_t = A ⊙ z_{t−1} + W₁ ReLU(W₂ z_{t−1} + h₂) + h₁        (latent dimension M, hidden width L)

The clipped variant replaces ``ReLU(W₂z + h₂)`` by ``ReLU(W₂z + h₂) − ReLU(W₂z)``, which is
bounded, so orbits stay bounded whenever ``max|A| < 1``. The Jacobian is analytic,
``J(z) = diag(A) + W₁ D(z) W₂`` with ``D`` the diagonal of ReLU slopes (0 or 1; for the clipped
form −1, 0 or 1), so Jacobian norms along orbits (for the GTF forcing strength) and Lyapunov
exponents need no autograd. Every parameter carries a leading ``members`` axis.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def spectral_norm_3x3(J: Tensor) -> Tensor:
    """``‖J‖₂`` of every 3×3 matrix in ``(..., 3, 3)``, in closed form (float64 inside).

    The largest eigenvalue of the symmetric ``B = JᵀJ`` by the trigonometric solution of its
    characteristic cubic: a few elementwise ops on the whole batch, where a batched SVD of
    thousands of tiny matrices costs a hundred times more. Used to recompute the GTF forcing
    strength at every training step.
    """
    if J.shape[-2:] != (3, 3):
        raise ValueError(f"spectral_norm_3x3 needs (..., 3, 3) matrices, got {tuple(J.shape)}")
    J = J.double()
    B = J.transpose(-1, -2) @ J
    q = (B[..., 0, 0] + B[..., 1, 1] + B[..., 2, 2]) / 3
    p1 = B[..., 0, 1] ** 2 + B[..., 0, 2] ** 2 + B[..., 1, 2] ** 2
    p2 = (B[..., 0, 0] - q) ** 2 + (B[..., 1, 1] - q) ** 2 + (B[..., 2, 2] - q) ** 2 + 2 * p1
    p = torch.sqrt(p2 / 6)
    safe = torch.where(p > 1e-300, p, torch.ones_like(p))
    C = (B - q[..., None, None] * torch.eye(3, dtype=B.dtype)) / safe[..., None, None]
    det = (C[..., 0, 0] * (C[..., 1, 1] * C[..., 2, 2] - C[..., 1, 2] * C[..., 2, 1])
           - C[..., 0, 1] * (C[..., 1, 0] * C[..., 2, 2] - C[..., 1, 2] * C[..., 2, 0])
           + C[..., 0, 2] * (C[..., 1, 0] * C[..., 2, 1] - C[..., 1, 1] * C[..., 2, 0]))
    r = (det / 2).clamp(-1.0, 1.0)
    top = q + 2 * p * torch.cos(torch.acos(r) / 3)
    return torch.sqrt(torch.where(p > 1e-300, top, q).clamp(min=0.0))


class ShallowPLRNN(nn.Module):
    """``members`` independent shPLRNNs; states are ``(members, ..., M)``."""

    def __init__(self, A: Tensor, W1: Tensor, W2: Tensor, h1: Tensor, h2: Tensor, *, clipped: bool = False) -> None:
        super().__init__()
        E, M = A.shape
        if W1.shape[:2] != (E, M) or W2.shape != (E, W1.shape[2], M) or h1.shape != (E, M) or h2.shape != W2.shape[:2]:
            raise ValueError(
                "shapes must be A (E, M), W1 (E, M, L), W2 (E, L, M), h1 (E, M), h2 (E, L); got "
                f"{tuple(A.shape)}, {tuple(W1.shape)}, {tuple(W2.shape)}, {tuple(h1.shape)}, {tuple(h2.shape)}"
            )
        self.A, self.W1, self.W2 = nn.Parameter(A), nn.Parameter(W1), nn.Parameter(W2)
        self.h1, self.h2 = nn.Parameter(h1), nn.Parameter(h2)
        self.clipped = bool(clipped)

    @classmethod
    def init(
        cls,
        members: int,
        latent: int,
        hidden: int,
        *,
        generator: torch.Generator,
        contraction: float | None = 0.9,
        clipped: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> ShallowPLRNN:
        """The GTF code's initialisation, optionally rescaled to a contracting map.

        As in the reference code: ``A`` is the diagonal of ``(RᵀR/M + I)/λ_max`` (``R`` Gaussian),
        ``W₁ ~ U(±1/√L)``, ``W₂ ~ U(±1/√M)``, biases 0. That map is typically *expanding*
        (its Jacobian bound exceeds 1), so a free-running orbit can blow up before training starts.
        With ``contraction = c < 1``, ``A`` is scaled to ``max|A| = c/2`` and ``W₁, W₂`` jointly to
        ``‖W₁‖‖W₂‖ = c/2``, so ``‖J(z)‖ ≤ c`` everywhere: every orbit converges to one fixed point.
        """
        if members < 1 or latent < 1 or hidden < 1:
            raise ValueError("members, latent and hidden must be positive integers")
        if contraction is not None and not 0 < contraction < 1:
            raise ValueError(f"contraction must lie in (0, 1) (or None for the expanding reference init), got {contraction}")
        g = generator
        R = torch.randn(members, latent, latent, generator=g, dtype=torch.float64)
        K = R.transpose(1, 2) @ R / latent + torch.eye(latent, dtype=torch.float64)
        K = K / torch.linalg.eigvalsh(K)[:, -1:, None]
        A = torch.diagonal(K, dim1=1, dim2=2).clone()
        W1 = (torch.rand(members, latent, hidden, generator=g, dtype=torch.float64) * 2 - 1) / hidden**0.5
        W2 = (torch.rand(members, hidden, latent, generator=g, dtype=torch.float64) * 2 - 1) / latent**0.5
        h2 = (torch.rand(members, hidden, generator=g, dtype=torch.float64) * 2 - 1) / latent**0.5 if clipped else (
            torch.zeros(members, hidden, dtype=torch.float64))
        if contraction is not None:
            A = A * (contraction / 2) / A.abs().amax(-1, keepdim=True)
            w = (contraction / 2 / (torch.linalg.matrix_norm(W1, 2) * torch.linalg.matrix_norm(W2, 2))).sqrt()
            W1, W2 = W1 * w[:, None, None], W2 * w[:, None, None]
        h1 = torch.zeros(members, latent, dtype=torch.float64)
        return cls(*(t.to(dtype) for t in (A, W1, W2, h1, h2)), clipped=clipped)

    @property
    def members(self) -> int:
        return self.A.shape[0]

    def _view(self, v: Tensor, z: Tensor) -> Tensor:
        return v.reshape(v.shape[:1] + (1,) * (z.dim() - 2) + v.shape[1:])

    def _pre(self, z: Tensor) -> Tensor:
        flat = z.reshape(z.shape[0], -1, z.shape[-1])
        return torch.bmm(flat, self.W2.transpose(1, 2)).reshape(z.shape[:-1] + (self.W2.shape[1],))

    def forward(self, z: Tensor) -> Tensor:
        """One step of every member: ``z (members, ..., M)`` → same shape."""
        if z.shape[0] != self.members or z.shape[-1] != self.A.shape[1]:
            raise ValueError(f"states must be (members={self.members}, ..., M={self.A.shape[1]}), got {tuple(z.shape)}")
        u = self._pre(z)
        act = torch.relu(u + self._view(self.h2, u))
        if self.clipped:
            act = act - torch.relu(u)
        flat = act.reshape(act.shape[0], -1, act.shape[-1])
        nonlin = torch.bmm(flat, self.W1.transpose(1, 2)).reshape(z.shape)
        return self._view(self.A, z) * z + nonlin + self._view(self.h1, z)

    def fused_step(self):
        """``forward`` for states ``(members, batch, M)`` in four fused ops: the inner loop of BPTT.

        Each time step of a recurrent loss costs Python-side dispatch per op; fusing the biases
        into ``baddbmm``/``addcmul`` makes training a long sequence several times faster.
        """
        W1t, W2t = self.W1.transpose(1, 2), self.W2.transpose(1, 2)
        h1, h2, A = self.h1.unsqueeze(1), self.h2.unsqueeze(1), self.A.unsqueeze(1)
        if self.clipped:
            def step(z: Tensor) -> Tensor:
                u = torch.bmm(z, W2t)
                return torch.baddbmm(torch.addcmul(h1, A, z), torch.relu(u + h2) - torch.relu(u), W1t)
        else:
            def step(z: Tensor) -> Tensor:
                return torch.baddbmm(torch.addcmul(h1, A, z), torch.relu(torch.baddbmm(h2, z, W2t)), W1t)
        return step

    def jacobian(self, z: Tensor) -> Tensor:
        """``∂F/∂z`` at ``z (members, ..., M)``: ``(members, ..., M, M)``, analytic."""
        u = self._pre(z)
        d = (u > -self._view(self.h2, u)).to(z.dtype)
        if self.clipped:
            d = d - (u > 0).to(z.dtype)
        E, M, L = self.W1.shape
        # J − diag(A) = Σ_l d_l · W1[:, l] W2[l, :]: one matmul of the slopes with the L rank-one terms
        outer = (self.W1.transpose(1, 2).unsqueeze(-1) * self.W2.unsqueeze(-2)).reshape(E, L, M * M)
        flat = torch.bmm(d.reshape(E, -1, L), outer).reshape(z.shape[:-1] + (M, M))
        return flat + torch.diag_embed(self._view(self.A, z))

    def norm_upper_bound(self) -> Tensor:
        """``max|A| + ‖W₁‖₂‖W₂‖₂`` per member: a state-free upper bound on ``‖J(z)‖₂``."""
        return self.A.abs().amax(-1) + torch.linalg.matrix_norm(self.W1, 2) * torch.linalg.matrix_norm(self.W2, 2)

    @torch.no_grad()
    def orbit(self, z0: Tensor, steps: int) -> Tensor:
        """Free-running orbit ``(steps + 1, members, ..., M)`` from ``z0``, the initial state first."""
        out = [z0]
        z = z0
        for _ in range(steps):
            z = self(z)
            out.append(z)
        return torch.stack(out)
