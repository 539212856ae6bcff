"""Per-example gradients and their coherence (Chatterjee & Zielinski 2022).

Two ways to the same numbers:

* :func:`per_example_grads` works for any model: ``torch.func.vmap(grad(loss))`` over the
  examples, in chunks so that ``examples × parameters`` never has to fit in memory at once;
* :class:`MLPGradients` works for :class:`phenomena.models.MLP` ensembles and never forms the
  per-example gradients at all. A weight matrix's per-example gradient is an outer product,
  ``∂ℓᵢ/∂W_l = m_l·δᵢ hᵢᵀ`` (``δᵢ`` the gradient of example ``i``'s loss at the layer's
  pre-activation, ``hᵢ`` the layer's input), so norms, dot products and Gram matrices of
  per-example gradients reduce to products of ``δ`` and ``h`` (``‖δhᵀ‖² = ‖δ‖²‖h‖²``). On a
  CPU this is what makes coherence cheap enough to log at every percent of training; the tests
  pin it to the vmap route.

The coherence of a sample of ``m`` gradients ``g_1..g_m`` (its empirical distribution) is
``α_m = ‖Σgᵢ‖² / (m·Σ‖gᵢ‖²)`` and its *m-coherence* ``m·α_m = ‖Σgᵢ‖² / Σ‖gᵢ‖²`` (see
:mod:`phenomena.theory.coherence`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad, vmap


# ----------------------------------------------------------------------------- any model
def per_example_grads(
    loss: Callable[[Mapping[str, Tensor], Tensor, Tensor], Tensor],
    params: Mapping[str, Tensor],
    inputs: Tensor,
    targets: Tensor,
    *,
    chunk: int = 64,
) -> Iterator[Tensor]:
    """Per-example gradients, flattened, one chunk at a time: yields ``(chunk, parameters)`` tensors.

    ``loss(params, x, y)`` is the loss of ONE example ``(x, y)`` (a scalar); ``params`` maps names
    to tensors (``dict(model.named_parameters())`` detached, say). Chunking bounds the memory:
    256 examples of an 85k-parameter network are 87 MB in float32, a chunk of 64 a quarter of that.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs and targets disagree on the number of examples: {inputs.shape[0]} vs {targets.shape[0]}")
    names = list(params)
    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    for start in range(0, inputs.shape[0], chunk):
        g = per_example(dict(params), inputs[start : start + chunk], targets[start : start + chunk])
        yield torch.cat([g[n].reshape(g[n].shape[0], -1) for n in names], dim=1)


@dataclass(frozen=True)
class CoherenceStats:
    """What coherence needs of a sample of gradients: ``total_sq_norm = ‖Σgᵢ‖²``,
    ``sq_norm_sum = Σ‖gᵢ‖²`` and the sample size ``count`` (tensors: one value per member, say)."""

    total_sq_norm: Tensor
    sq_norm_sum: Tensor
    count: int

    @property
    def m_coherence(self) -> Tensor:
        """``‖Σgᵢ‖² / Σ‖gᵢ‖² = m·α_m``."""
        return self.total_sq_norm / self.sq_norm_sum

    @property
    def alpha(self) -> Tensor:
        """``α_m = ‖Σgᵢ‖² / (m·Σ‖gᵢ‖²)``."""
        return self.m_coherence / self.count


def coherence_stats(chunks: Iterator[Tensor] | list[Tensor]) -> CoherenceStats:
    """Accumulate :class:`CoherenceStats` over chunks of flattened gradients ``(..., chunk, parameters)``
    (from :func:`per_example_grads`), never holding more than one chunk."""
    total = sq = None
    count = 0
    for g in chunks:
        s, q = g.sum(-2), (g * g).sum((-2, -1))
        total = s if total is None else total + s
        sq = q if sq is None else sq + q
        count += g.shape[-2]
    if total is None:
        raise ValueError("no gradients given: the sample is empty")
    return CoherenceStats(total_sq_norm=(total * total).sum(-1), sq_norm_sum=sq, count=count)


def alpha_from_gram(gram: Tensor) -> Tensor:
    """``α_m`` of a sample from its Gram matrix ``K_ij = gᵢ·gⱼ`` (``(..., m, m)``): mean(K) / mean(diag K)."""
    if gram.dim() < 2 or gram.shape[-1] != gram.shape[-2]:
        raise ValueError(f"gram must be (..., m, m), got shape {tuple(gram.shape)}")
    return gram.mean((-2, -1)) / torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1)


def minibatch_alpha_monte_carlo(gram: Tensor, k: int, batches: int, *, generator: torch.Generator) -> Tensor:
    """Monte-Carlo ``α`` of the mean of ``k`` examples drawn i.i.d. (with replacement) from the sample.

    Draws ``batches`` minibatches, takes each one's mean gradient ``w_b`` and estimates
    ``‖E w‖² / E‖w‖²`` with the unbiased pair average ``Σ_{b≠b'} w_b·w_b' / (B(B-1))`` on top and
    ``Σ‖w_b‖²/B`` below. Everything goes through the Gram matrix ``gram`` ``(..., m, m)``, so no
    gradient vector is ever formed: ``w_b·w_b' = c_bᵀ K c_b' / k²`` with ``c_b`` the draw counts.
    """
    m = gram.shape[-1]
    if k < 1 or batches < 2:
        raise ValueError(f"need k >= 1 and at least 2 batches, got k={k}, batches={batches}")
    idx = torch.randint(0, m, (batches, k), generator=generator, device=generator.device).to(gram.device)
    counts = torch.zeros(batches, m, dtype=gram.dtype, device=gram.device)
    counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=gram.dtype))
    # Σ_b ‖w_b‖² = Σ_b c_bᵀKc_b / k² and ‖Σ_b w_b‖² = CᵀKC / k² with C = Σ_b c_b; pairs b≠b' are the difference
    own = ((counts @ gram) * counts).sum((-2, -1)) / k**2
    c = counts.sum(0)
    everything = ((c @ gram) * c).sum(-1) / k**2
    pairs = (everything - own) / (batches * (batches - 1))
    return pairs / (own / batches)


# ----------------------------------------------------------------------------- MLP fast path
@dataclass
class MLPGradients:
    """The factors of every per-example gradient of an :class:`~phenomena.models.MLP` ensemble.

    ``deltas[l]`` ``(members, n, out_l)``: gradient of each example's own loss at layer ``l``'s
    pre-activation; ``inputs[l]`` ``(members, n, in_l)``: the layer's input; ``multipliers[l]``: the
    layer's multiplier ``m_l``. Example ``i``'s gradient of ``W_l`` is ``m_l·δᵢ hᵢᵀ`` and of the bias
    ``δᵢ``. Built by :meth:`of`.
    """

    deltas: list[Tensor]
    inputs: list[Tensor]
    multipliers: list[float]
    bias: bool
    losses: Tensor
    """``(members, n)``: each example's loss (the per-example gradients are gradients of these)."""

    @classmethod
    def of(cls, model, x: Tensor, targets: Tensor) -> MLPGradients:
        """Factors for cross-entropy on inputs ``x`` ``(n, in)`` and labels ``targets`` ``(members, n)``
        (or ``(n,)``, shared by all members), at the model's current parameters (no gradient kept)."""
        cfg = model.config
        if cfg.activation not in ("relu", "tanh", "linear", "gelu", "sigmoid", "erf", "quadratic", "poly"):
            raise ValueError(f"unsupported activation {cfg.activation!r}")
        e = cfg.members
        if x.dim() != 2 or x.shape[1] != cfg.widths[0]:
            raise ValueError(f"x must be (n, {cfg.widths[0]}), got {tuple(x.shape)}")
        y = targets.expand(e, -1) if targets.dim() == 1 else targets
        if y.shape != (e, x.shape[0]):
            raise ValueError(f"targets must be (n,) or (members, n) = ({e}, {x.shape[0]}), got {tuple(targets.shape)}")
        weights = [w.detach() for w in model.weights]
        biases = [b.detach() for b in model.biases] if cfg.bias else [None] * len(weights)
        with torch.enable_grad():
            h = x.unsqueeze(0).expand(e, -1, -1)
            inputs, pre = [], []
            for layer, (w, b) in enumerate(zip(weights, biases)):
                inputs.append(h.detach())
                z = model.multipliers[layer] * torch.matmul(h, w.transpose(1, 2))
                if b is not None:
                    z = z + b.unsqueeze(1)
                if layer == 0:
                    z = z.detach().requires_grad_(True)
                pre.append(z)
                h = model.act(z) if layer < len(weights) - 1 else z
            logits = cfg.output_scale * h
            losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none").view(e, -1)
            deltas = torch.autograd.grad(losses.sum(), pre)
        return cls(deltas=[d.detach() for d in deltas], inputs=inputs, multipliers=list(model.multipliers),
                   bias=cfg.bias, losses=losses.detach())

    def _layers(self):
        return zip(self.deltas, self.inputs, self.multipliers)

    def sq_norms(self) -> Tensor:
        """``(members, n)``: ``‖gᵢ‖²`` over all parameters."""
        out = 0.0
        for d, h, m in self._layers():
            dd = (d * d).sum(-1)
            out = out + m * m * dd * (h * h).sum(-1) + (dd if self.bias else 0.0)
        return out

    def total(self) -> list[Tensor]:
        """``Σᵢ gᵢ`` per weight matrix, ``(members, out, in)`` each (biases: see :meth:`total_bias`)."""
        return [m * d.transpose(1, 2) @ h for d, h, m in self._layers()]

    def total_bias(self) -> list[Tensor]:
        """``Σᵢ gᵢ`` per bias vector, ``(members, out)`` each (empty without biases)."""
        return [d.sum(1) for d in self.deltas] if self.bias else []

    def dot(self, direction: list[Tensor], direction_bias: list[Tensor] | None = None) -> Tensor:
        """``(members, n)``: ``gᵢ · D`` for a direction ``D`` given like :meth:`total` (and :meth:`total_bias`)."""
        out = 0.0
        for (d, h, m), w in zip(self._layers(), direction):
            out = out + m * ((d @ w) * h).sum(-1)
        if self.bias and direction_bias is not None:
            for d, b in zip(self.deltas, direction_bias):
                out = out + (d * b.unsqueeze(1)).sum(-1)
        return out

    def stats(self) -> CoherenceStats:
        """:class:`CoherenceStats` of the sample (all ``n`` examples), per member."""
        total_sq = sum((t * t).sum((-2, -1)) for t in self.total()) + sum((b * b).sum(-1) for b in self.total_bias())
        return CoherenceStats(total_sq_norm=total_sq, sq_norm_sum=self.sq_norms().sum(-1), count=self.deltas[0].shape[1])

    def gram(self) -> Tensor:
        """``(members, n, n)``: ``K_ij = gᵢ·gⱼ`` = ``Σ_l m_l² (δᵢ·δⱼ)(hᵢ·hⱼ)`` (+ ``δᵢ·δⱼ`` for biases)."""
        out = 0.0
        for d, h, m in self._layers():
            dd = d @ d.transpose(1, 2)
            out = out + m * m * dd * (h @ h.transpose(1, 2)) + (dd if self.bias else 0.0)
        return out

    def group_means(self, order: Tensor, count: int) -> list[Tensor]:
        """Mean gradient of each of ``count`` groups of examples, per weight matrix: ``(members, count, out, in)``.

        The groups are ``count`` consecutive, near-equal slices of ``order`` (a permutation of the
        ``n`` examples, shared by all members): a random ``order`` per step splits the batch into
        random groups, as the median-of-means estimators do. ``count = n`` gives the per-example
        gradients themselves. Biases are not included (the robust step treats models without biases).
        """
        n = self.deltas[0].shape[1]
        if not 1 <= count <= n:
            raise ValueError(f"count must be between 1 and the number of examples ({n}), got {count}")
        out = []
        if n % count == 0:  # equal groups: one batched product (per-example gradients when count = n)
            size = n // count
            for d, h, m in self._layers():
                dg = d[:, order].reshape(d.shape[0], count, size, -1)
                hg = h[:, order].reshape(h.shape[0], count, size, -1)
                out.append(m * dg.transpose(2, 3) @ hg / size)
            return out
        parts = torch.tensor_split(order, count)
        for d, h, m in self._layers():
            means = [m * d[:, p].transpose(1, 2) @ h[:, p] / len(p) for p in parts]
            out.append(torch.stack(means, dim=1))
        return out


def mlp_m_coherence(model, x: Tensor, targets: Tensor) -> Tensor:
    """``(members,)``: m-coherence ``‖Σgᵢ‖²/Σ‖gᵢ‖²`` of the per-example cross-entropy gradients of a sample."""
    return MLPGradients.of(model, x, targets).stats().m_coherence
