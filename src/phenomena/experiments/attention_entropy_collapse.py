"""Experiments of the chapter *attention-entropy-collapse* (Zhai et al. 2023).

One switch setting (σReparam off or on) is one batched post-LN GPT whose ensemble axis is a
learning-rate grid: every member starts from the same weights and sees the same minibatches, so
along the axis only the learning rate differs. Training is Adam with no warm-up, the setting in
which the paper watches attention entropy collapse.

At every step, before the update, a fixed probe batch goes through the model and we record per
(member, layer, head):

* the head's attention entropy (mean over the probe rows that see at least two keys);
* the quantities of the paper's Theorem 3.1 *as the model applies them*: ``σ = ‖W_Q^h W_K^hᵀ‖₂ / √d_h``
  from the effective weights (``γ/σ(W)·W`` under σReparam), and ``σ_x = ‖XXᵀ‖₂`` of the inputs the
  attention sees (post-LN: the previous block's LayerNorm output, or the embeddings in layer 0);
* the margin ``Ent(A_i) − f(σσ_x, T)`` minimised over rows (``< 0`` would be a violation), and the
  sharper margin ``Ent(A_i) − f(‖z_i − z̄_i‖, T)`` with the row's actual centred logit norm;

and, with σReparam, the exact ``σ(Ŵ)`` (an SVD) against ``|γ|`` for every linear layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import MarkovLanguage
from ..ensemble import Adam, fit
from ..metrics import attention_entropy
from ..metrics.curves import first_index
from ..models import GPT, GPTConfig, lm_loss
from ..theory.attention import entropy_lower_bound

DTYPE = torch.float64  # the bound is checked to float64 round-off, and the model is tiny


@dataclass
class EntropyResult:
    """One switch setting trained at every learning rate of a grid (the ensemble axis).

    Arrays indexed ``[record, member, layer, head]`` hold one value per recorded step (every step,
    before its update, and after the last) on the probe batch:
    ``entropy`` (mean over rows with ≥ 2 keys), ``min_entropy`` (smallest row), ``sigma`` (the head's
    ``‖W_Q^h W_K^hᵀ‖₂/√d_h``), ``sigma_x`` (largest ``‖XXᵀ‖₂`` over the probe sequences),
    ``margin`` (smallest ``Ent − f(σσ_x^{prefix}, i+1)`` over rows), ``largest_bound`` (largest value
    the theorem's bound took over rows), ``logit_margin`` (smallest ``Ent − f(‖z − z̄‖, i+1)``),
    ``logit_ratio`` (largest ``‖z_i‖ / (σ σ_x^{prefix})``, ≤ 1 by the theorem's proof) and
    ``last_entropy``/``last_bound`` (smallest over the probe sequences of the last row's entropy and of
    its bound ``f(σσ_x, T)``, the theorem for the whole sequence: the first never below the second),
    ``probe_error`` (largest difference between the model's probabilities and the ones recomputed
    from the captured inputs: 0 up to round-off if we read what the model used).
    ``gamma_ratio``: ``σ(Ŵ)/|γ|`` by SVD, ``[record, member, linear]`` (σReparam only, else empty);
    ``spectral_gap``: ``σ₂(W)/σ₁(W)`` and ``relative_change``: ``‖W_t − W_{t−1}‖₂/‖W_t‖₂`` of the raw
    weights, same shape: what sets how far one power-iteration step per training step lags.
    ``loss``: training loss before each step and after the last, ``[step, member]``.
    ``scatter``: a sample of rows ``(entropy, centred logit norm, keys)`` for the scatter figure.
    """

    sigma_reparam: bool
    lrs: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    entropy: np.ndarray
    min_entropy: np.ndarray
    sigma: np.ndarray
    sigma_x: np.ndarray
    margin: np.ndarray
    largest_bound: np.ndarray
    logit_margin: np.ndarray
    logit_ratio: np.ndarray
    probe_error: np.ndarray
    last_entropy: np.ndarray
    last_bound: np.ndarray
    gamma_ratio: np.ndarray
    spectral_gap: np.ndarray
    relative_change: np.ndarray
    scatter: np.ndarray
    diverged_at: np.ndarray
    initial_entropy_max: float

    @property
    def label(self) -> str:
        return "σReparam" if self.sigma_reparam else "baseline"


def head_query_key(model: GPT, layer: int) -> Tensor:
    """Each head's query-key matrix as the model applies it: ``W_Q^h W_K^hᵀ / √d_h``, ``(E, H, d, d)``.

    The logit of query ``x_i`` and key ``x_j`` (rows) is ``x_i M x_jᵀ`` with this ``M``; the weights
    are the effective ones (``γ/σ(W)·W`` under σReparam).
    """
    attention = model.blocks[layer].attention
    h, hd = attention.heads, attention.head_dim
    wq = attention.query.effective_weight()  # (E, d, d): x @ W
    wk = attention.key.effective_weight()
    e, d, _ = wq.shape
    wq = wq.view(e, d, h, hd).permute(0, 2, 1, 3)  # (E, H, d, hd)
    wk = wk.view(e, d, h, hd).permute(0, 2, 1, 3)
    return wq @ wk.transpose(-1, -2) / math.sqrt(hd)


def prefix_sigma_x(x: Tensor) -> Tensor:
    """``‖X_{≤i} X_{≤i}ᵀ‖₂`` for every prefix of every sequence: ``x`` ``(..., T, d)`` → ``(..., T)``.

    The top eigenvalue of the Gram matrix's leading ``(i+1) × (i+1)`` block (the rest zeroed, which
    leaves the top eigenvalue unchanged since the Gram matrix is positive semi-definite).
    """
    t = x.shape[-2]
    gram = x @ x.transpose(-1, -2)
    idx = torch.arange(t, device=x.device)
    keep = (idx.view(t, 1, 1) >= idx.view(1, t, 1)) & (idx.view(t, 1, 1) >= idx.view(1, 1, t))  # (prefix, T, T)
    blocks = gram.unsqueeze(-3) * keep.to(gram.dtype)
    return torch.linalg.eigvalsh(blocks)[..., -1].clamp_min(0)


@torch.no_grad()
def bound_probe(model: GPT, tokens: Tensor) -> dict[str, Tensor]:
    """Theorem 3.1 checked on every row of every head for one batch; reductions per (member, layer, head).

    Captures the input of every attention layer with a forward hook, recomputes the logits from it
    and the effective weights, and compares the model's own attention probabilities with them.
    """
    inputs: list[Tensor] = []
    hooks = [b.attention.register_forward_hook(lambda m, args, out: inputs.append(args[0]))
             for b in model.blocks]
    try:
        _, probes = model(tokens, probe=True)
    finally:
        for hk in hooks:
            hk.remove()
    t = tokens.shape[-1]
    keys = torch.arange(1, t + 1, device=tokens.device, dtype=DTYPE)  # row i sees i + 1 keys
    causal = torch.ones(t, t, dtype=torch.bool, device=tokens.device).tril()
    out: dict[str, list[Tensor]] = {k: [] for k in (
        "entropy", "min_entropy", "sigma", "sigma_x", "margin", "largest_bound", "logit_margin",
        "logit_ratio", "probe_error", "last_entropy", "last_bound")}
    rows: list[Tensor] = []
    for layer, (x, probs) in enumerate(zip(inputs, probes.attention)):
        m = head_query_key(model, layer)  # (E, H, d, d)
        sigma = torch.linalg.matrix_norm(m, ord=2)  # (E, H)
        sx = prefix_sigma_x(x)  # (E, B, T)
        logits = torch.einsum("ebid,ehdk,ebjk->ebhij", x, m, x)
        logits = logits.masked_fill(~causal, -math.inf)
        ent_model = attention_entropy(probs)  # (E, B, H, T)
        recomputed = torch.softmax(logits, dim=-1)
        probe_error = (recomputed - probs).abs().flatten(1).amax(1)
        ent = attention_entropy(recomputed)
        radius = sigma[:, None, :, None] * sx[:, :, None, :]  # (E, B, H, T): σ_h · σ_x of row i's prefix
        bound = torch.from_numpy(entropy_lower_bound(radius.cpu().numpy(), keys.cpu().numpy())).to(ent)
        z = logits.masked_fill(~causal, 0.0)
        mean = z.sum(-1, keepdim=True) / keys.view(t, 1)
        centred = ((z - mean).masked_fill(~causal, 0.0) ** 2).sum(-1).sqrt()  # (E, B, H, T)
        raw_norm = (z**2).sum(-1).sqrt()
        lemma = torch.from_numpy(entropy_lower_bound(centred.cpu().numpy(), keys.cpu().numpy())).to(ent)
        many = keys > 1  # rows with one key have entropy 0 = bound: nothing to check
        ent_m, bound_m = ent[..., many], bound[..., many]
        out["entropy"].append(ent_model[..., many].mean((1, 3)))
        out["min_entropy"].append(ent_m.amin((1, 3)))
        out["sigma"].append(sigma)
        out["sigma_x"].append(sx[..., -1].amax(1))
        out["margin"].append((ent_m - bound_m).amin((1, 3)))
        out["largest_bound"].append(bound_m.amax((1, 3)))
        out["logit_margin"].append((ent_m - lemma[..., many]).amin((1, 3)))
        out["logit_ratio"].append((raw_norm / radius.clamp_min(1e-300))[..., many].amax((1, 3)))
        out["probe_error"].append(probe_error.view(-1, 1).expand_as(sigma))
        out["last_entropy"].append(ent[..., -1].amin(1))  # the row that sees the whole sequence
        out["last_bound"].append(bound[..., -1].amin(1))
        rows.append(torch.stack([ent_m[:, :2].flatten(), centred[..., many][:, :2].flatten(),
                                 keys[many].expand_as(ent_m[:, :2]).flatten()], -1))
    result = {k: torch.stack(v, 1) for k, v in out.items()}  # (E, L, H)
    result["scatter"] = torch.cat(rows)
    return result


@torch.no_grad()
def reparam_spectra(model: GPT, previous: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """For every σReparam linear layer, ``(E, linears)`` each: ``σ(Ŵ)/|γ|``, ``σ₂(W)/σ₁(W)`` and ``‖W − W_prev‖₂/‖W‖₂``.

    ``σ(Ŵ)`` is the exact spectral norm (an SVD) of the weight the layer applies, ``γ/σ̂(W)·W`` with
    the power-iteration estimate ``σ̂``; the ratio is ``σ(W)/σ̂(W) ≥ 1``, and 1 only if the estimate
    has caught up. The other two say why it may not have: one power step shrinks the estimate's
    error by ``(σ₂/σ₁)²``, while the optimizer moves ``W`` by the relative amount in the third.
    ``previous`` are the raw weights at the previous probe (same order as ``model.linears()``).
    Without σReparam all three are ``(E, 0)``.
    """
    layers = [m for m in model.linears() if m.sigma_reparam]
    if not layers:
        empty = torch.zeros(model.config.members, 0, dtype=DTYPE)
        return empty, empty, empty
    ratio, gap, change = [], [], []
    for lin, w0 in zip(layers, previous):
        ratio.append(torch.linalg.matrix_norm(lin.effective_weight(), ord=2) / lin.gamma.abs())
        s = torch.linalg.svdvals(lin.weight)
        gap.append(s[:, 1] / s[:, 0])
        change.append(torch.linalg.matrix_norm(lin.weight - w0, ord=2) / s[:, 0])
    return torch.stack(ratio, 1), torch.stack(gap, 1), torch.stack(change, 1)


def train_lr_grid(
    language: MarkovLanguage,
    lrs: Sequence[float],
    *,
    sigma_reparam: bool,
    steps: int,
    width: int,
    layers: int,
    heads: int,
    batch: int,
    length: int,
    probe_batch: int,
    scatter_every: int = 10,
    power_iterations: int = 1,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> EntropyResult:
    """Train one post-LN GPT per learning rate (Adam, no warm-up), all at once, probing every step.

    ``generator`` draws the probe batch, the training minibatches (a fresh batch per step, shared
    by all members) and then the initial weights (shared by all members), in that order, so that
    the two switch settings trained with equally seeded generators see the same data. A member
    whose loss turns non-finite is frozen (``diverged_at``). ``power_iterations``: σReparam's
    power-iteration steps per training step (the paper, like spectral normalisation, uses 1).
    """
    if power_iterations < 1:
        raise ValueError(f"power_iterations must be >= 1 (the paper uses 1), got {power_iterations}")
    if steps < 1 or batch < 1 or probe_batch < 1:
        raise ValueError(f"steps, batch and probe_batch must be >= 1, got {steps}, {batch}, {probe_batch}")
    rates = torch.as_tensor(list(lrs), dtype=DTYPE)
    if rates.dim() != 1 or len(rates) < 1 or not bool((rates > 0).all()):
        raise ValueError(f"lrs must be a non-empty list of positive learning rates, got {list(lrs)}")
    device = torch.device(device)
    config = GPTConfig(vocab_size=language.vocab_size, context=length, layers=layers, heads=heads, width=width,
                       norm="post", sigma_reparam=sigma_reparam, members=len(rates), dtype=DTYPE,
                       power_iterations=power_iterations)
    probe = language.sample(probe_batch, length, generator).to(device)
    data = language.sample(batch * (steps + 1), length + 1, generator).view(steps + 1, batch, length + 1).to(device)
    model = GPT(config, generator).share_init().to(device)  # after the data: both settings see the same batches
    optimizer = Adam(model.parameters(), rates.to(device))
    records: list[dict[str, Tensor]] = []
    scatter: list[Tensor] = []
    ratios: list[Tensor] = []
    gaps: list[Tensor] = []
    changes: list[Tensor] = []
    previous = [m.weight.detach().clone() for m in model.linears() if m.sigma_reparam]

    def loss() -> Tensor:
        x = data[len(records)]
        per_member, _ = lm_loss(model(x[:, :-1]), x[:, 1:])
        # probe after the training forward: its power-iteration step has refreshed σ(W), so the
        # weights probed are exactly those this step applies (a no-grad forward does not iterate)
        probed = bound_probe(model, probe)
        rows = probed.pop("scatter")
        if len(records) % scatter_every == 0:
            scatter.append(rows.cpu())
        records.append({k: v.cpu() for k, v in probed.items()})
        for out, value in zip((ratios, gaps, changes), reparam_spectra(model, previous)):
            out.append(value.cpu())
        for w0, m in zip(previous, [m for m in model.linears() if m.sigma_reparam]):
            w0.copy_(m.weight.detach())
        return per_member

    history = fit(optimizer, loss, steps, on_divergence="mask")
    stacked = {k: torch.stack([r[k] for r in records]).numpy() for k in records[0]}
    return EntropyResult(
        sigma_reparam=sigma_reparam,
        lrs=np.asarray(list(lrs), float),
        steps=np.arange(len(records)),
        loss=history.loss.numpy(),
        scatter=torch.cat(scatter).numpy(),
        gamma_ratio=torch.stack(ratios).numpy(),
        spectral_gap=torch.stack(gaps).numpy(),
        relative_change=torch.stack(changes).numpy(),
        diverged_at=history.diverged_at.numpy(),
        initial_entropy_max=float(np.log(np.arange(2, length + 1)).mean()),
        **stacked,
    )


def mean_entropy(run: EntropyResult) -> np.ndarray:
    """Attention entropy averaged over layers and heads, ``(record, member)``."""
    return run.entropy.mean(axis=(2, 3))


def collapse_step(run: EntropyResult, fraction: float = 0.5) -> np.ndarray:
    """First step at which a member's mean attention entropy is below ``fraction`` of its initial value."""
    h = mean_entropy(run)
    return first_index(h < fraction * h[0])


def divergence_step(run: EntropyResult) -> np.ndarray:
    """First step at which a member's training loss is above its initial loss (the loss went the wrong way)."""
    return first_index(run.loss > run.loss[0])


def final_loss(run: EntropyResult, window: int) -> np.ndarray:
    """Training loss averaged over the last ``window`` steps, per member (fresh batches: an unbiased estimate)."""
    return run.loss[-window:].mean(axis=0)


def summary(runs: Sequence[EntropyResult], window: int, entropy_rate: float, unigram: float) -> pd.DataFrame:
    """One row per (setting, learning rate): final loss against the floor and the context-free level, entropy."""
    rows = []
    for r in runs:
        h = mean_entropy(r)
        tc, td = collapse_step(r), divergence_step(r)
        for e, lr in enumerate(r.lrs):
            rows.append({
                "setting": r.label,
                "lr": lr,
                "final_loss": final_loss(r, window)[e],
                "loss_floor": entropy_rate,
                "context-free loss H(π)": unigram,
                "entropy_start": h[0, e],
                "entropy_end": h[-1, e],
                "end_over_start": h[-1, e] / h[0, e],
                "step_entropy_halved": tc[e],
                "step_loss_above_start": td[e],
            })
    return pd.DataFrame(rows)
