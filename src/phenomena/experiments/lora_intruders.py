"""The lora-intruders experiment: pretrain an MLP on digits, fine-tune it on a shifted task by full
fine-tuning and by LoRA, and compare the spectra of the fine-tuned weights (Shuttleworth et al. 2024);
and its continual-learning experiment (:func:`continual_learning`): a small GPT pretrained on one Markov
language and fine-tuned on several others in sequence, LoRA merged after each.

Task A (pretraining) is scikit-learn's digits as they are; task B (fine-tuning) is the same digits
mirrored left-right and shifted down by one pixel, with the same labels. The pretrained network
scores near chance on task B, and the first layers' features must change to solve it (a new read-out
alone cannot undo a mirror), so the fine-tune has to move the hidden weights. Every seed is one
member of a batched ensemble: the pretraining, each fine-tuning method and every measurement run
on all seeds at once.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from ..data.digits import N_CLASSES, DigitsSplit, load_digits_split
from ..data.markov import MarkovLanguage, markov_language
from ..ensemble import Adam, fit
from ..metrics import spectral
from ..models.gpt import GPT, GPTConfig, lm_loss
from ..models.lora import LoRAConfig, LoRAGPT, LoRAMLP, adapter_parameters, gpt_weights
from ..models.mlp import MLP, MLPConfig


def mirror_shift(x: Tensor) -> Tensor:
    """Digits ``(n, 64)`` mirrored left-right and shifted down by one pixel (the top row becomes 0,
    the mean pixel after standardising): task B's inputs."""
    if x.dim() != 2 or x.shape[1] != 64:
        raise ValueError(f"x must be (n, 64) flattened 8×8 digits, got {tuple(x.shape)}")
    im = x.reshape(-1, 8, 8).flip(-1)
    im = torch.cat([torch.zeros_like(im[:, :1]), im[:, :-1]], dim=1)
    return im.reshape(-1, 64)


@dataclass(frozen=True)
class Tasks:
    """Task A and task B on one digits split: same images, same labels, task B's images transformed."""

    x_a: Tensor
    x_b: Tensor
    y: Tensor
    x_a_test: Tensor
    x_b_test: Tensor
    y_test: Tensor


def make_tasks(digits: DigitsSplit) -> Tasks:
    return Tasks(digits.x_train, mirror_shift(digits.x_train), digits.y_train,
                 digits.x_test, mirror_shift(digits.x_test), digits.y_test)


def load_tasks(generator: torch.Generator, device: torch.device | str | None = None) -> Tasks:
    return make_tasks(load_digits_split(generator=generator, dtype=torch.float32, device=device))


@dataclass(frozen=True)
class Method:
    """A fine-tuning method: full fine-tuning (``rank=None``) or LoRA of rank ``rank`` with ``alpha``."""

    name: str
    lr: float
    rank: int | None = None
    alpha: float = 0.0
    rank_stabilized: bool = False

    @property
    def is_lora(self) -> bool:
        return self.rank is not None

    @property
    def scaling(self) -> float:
        return LoRAConfig(self.rank, self.alpha, self.rank_stabilized).scaling if self.is_lora else 1.0


def per_member_ce(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy per member: ``(members, n, classes)`` logits, ``(n,)`` labels → ``(members,)``."""
    e, n, c = logits.shape
    return F.cross_entropy(logits.reshape(e * n, c), y.repeat(e), reduction="none").view(e, n).mean(1)


def _minibatch_loss(model: torch.nn.Module, x: Tensor, y: Tensor, batch: int, generator: torch.Generator):
    def loss() -> Tensor:
        idx = torch.randint(0, len(y), (batch,), generator=generator, device=generator.device).to(y.device)
        return per_member_ce(model(x[idx]), y[idx])
    return loss


def pretrain(tasks: Tasks, *, members: int, width: int, steps: int, lr: float, batch: int,
             init_generator: torch.Generator, batch_generator: torch.Generator, init_scale: float = 1.0,
             spectrum_decay: float = 0.0) -> MLP:
    """A ReLU MLP ``64 → width → width → 10`` per member, trained by Adam on task A (minibatches)."""
    device = tasks.x_a.device
    net = MLP(MLPConfig([tasks.x_a.shape[1], width, width, N_CLASSES], members=members, init_scale=init_scale),
              generator=init_generator)
    if spectrum_decay:
        with torch.no_grad():
            for w in list(net.weights)[:-1]:
                w.copy_(power_law_matrix(w.shape, spectrum_decay, float(w.pow(2).mean().sqrt()), init_generator))
    net.to(device)
    fit(Adam(net.parameters(), lr), _minibatch_loss(net, tasks.x_a, tasks.y, batch, batch_generator), steps)
    return net


def power_law_matrix(shape: Sequence[int], decay: float, std: float, generator: torch.Generator) -> Tensor:
    """``(members, out, in)`` matrices ``U diag(s) Vᵀ`` with Haar-random ``U, V`` and ``s_i ∝ i^(−decay)``, scaled to
    the Frobenius norm of i.i.d. entries of standard deviation ``std``.

    Why: trained weight matrices have heavy-tailed spectra whose top singular values are well apart, whereas a
    freshly initialised Gaussian matrix has a Marchenko–Pastur bulk whose top values nearly coincide, so that
    any update rotates their singular vectors into each other. Starting from a decaying spectrum gives the
    pretrained network the separated top spectrum on which "a new singular vector" is well defined.
    """
    e, out_dim, in_dim = (int(v) for v in shape)
    p = min(out_dim, in_dim)
    u, _ = torch.linalg.qr(torch.randn(e, out_dim, p, generator=generator))
    v, _ = torch.linalg.qr(torch.randn(e, in_dim, p, generator=generator))
    s = torch.arange(1, p + 1, dtype=torch.float32) ** (-float(decay))
    s = s * (std * math.sqrt(out_dim * in_dim) / s.norm())
    return (u * s) @ v.transpose(1, 2)


def run_with(net: MLP, weights: Sequence[Tensor], x: Tensor) -> Tensor:
    """``net``'s output with its weights replaced by ``weights`` (no copy of the network)."""
    return functional_call(net, {f"weights.{i}": w for i, w in enumerate(weights)}, (x,))


def with_head(weights: Sequence[Tensor], base: Sequence[Tensor]) -> list[Tensor]:
    """The fine-tuned hidden weights under the *pretrained* read-out: the network that task A is scored with.

    Why: in the paper the pretraining loss is read through the pretrained language-model head, which
    fine-tuning a classifier never touches; forgetting is what fine-tuning did to the shared layers.
    Scoring task A through the retrained task-B read-out would instead measure the new head.
    """
    return [*weights[:-1], base[-1]]


@torch.no_grad()
def evaluate(net: MLP, weights: Sequence[Tensor], x: Tensor, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-member cross-entropy and accuracy of ``net`` with ``weights`` on ``(x, y)``."""
    out = run_with(net, weights, x)
    return per_member_ce(out, y).cpu().numpy(), (out.argmax(-1) == y).double().mean(1).cpu().numpy()


def finetune(net: MLP, tasks: Tasks, method: Method, *, steps: int, batch: int, adapter_generator: torch.Generator,
             batch_generator: torch.Generator) -> list[Tensor]:
    """Fine-tune a copy of ``net`` on task B; returns the fine-tuned (merged) weights, detached.

    Full fine-tuning trains every weight. LoRA adapts every hidden linear (``W₁``, ``W₂``) and trains
    the read-out densely, as the official script does with its classifier head.
    """
    if method.is_lora:
        model = LoRAMLP(net, LoRAConfig(method.rank, method.alpha, method.rank_stabilized), generator=adapter_generator)
    else:
        model = copy.deepcopy(net)
    params = [p for p in model.parameters() if p.requires_grad]
    fit(Adam(params, method.lr), _minibatch_loss(model, tasks.x_b, tasks.y, batch, batch_generator), steps)
    if method.is_lora:
        return model.merged_weights()
    return [w.detach().clone() for w in model.weights]


@dataclass
class MethodResult:
    """One method's fine-tuned weights and measurements, per member."""

    method: Method
    weights: list[Tensor]
    acc_b: np.ndarray
    loss_a: np.ndarray
    acc_a: np.ndarray
    max_cos: np.ndarray  # (members, adapted layers, k)
    intruders: np.ndarray  # (members, adapted layers)
    update_ratio: np.ndarray  # (members, adapted layers): σ₁(W − W₀) / σ_k(W₀)

    @property
    def total_intruders(self) -> np.ndarray:
        return self.intruders.sum(1)


@dataclass
class LoRAIntrudersResult:
    """Everything the chapter reads: the pretrained weights, each method's result, the spectra's gaps."""

    base: list[Tensor]
    pre_loss_a: np.ndarray
    pre_acc_a: np.ndarray
    pre_acc_b: np.ndarray
    results: dict[str, MethodResult]
    gaps: np.ndarray  # (members, adapted layers, k): σ_i/σ_{i+1} of the pretrained top k + 1
    layers: tuple[int, ...] = (0, 1)
    k: int = spectral.K_TOP
    epsilon: float = spectral.EPSILON
    net: MLP | None = field(default=None, repr=False)

    def table(self) -> pd.DataFrame:
        rows = []
        for name, r in self.results.items():
            for e in range(len(r.acc_b)):
                row = dict(method=name, member=e, acc_b=r.acc_b[e], acc_a=r.acc_a[e], loss_a=r.loss_a[e],
                           intruders=int(r.total_intruders[e]))
                for j, layer in enumerate(self.layers):
                    row[f"intruders_w{layer + 1}"] = int(r.intruders[e, j])
                    row[f"update_ratio_w{layer + 1}"] = r.update_ratio[e, j]
                rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        t = self.table()
        return t.groupby("method", sort=False)[["acc_b", "acc_a", "loss_a", "intruders"]].mean()


def spectra(base: Sequence[Tensor], tuned: Sequence[Tensor], layers: Sequence[int], k: int, epsilon: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Max |cos| of the top ``k`` tuned singular vectors, intruder counts and ``σ₁(ΔW)/σ_k(W₀)`` per layer."""
    cos, counts, ratio = [], [], []
    for i in layers:
        c = spectral.max_cosines(tuned[i], base[i], k)
        cos.append(c.cpu().numpy())
        counts.append((c < epsilon).sum(-1).cpu().numpy())
        d = (tuned[i] - base[i]).double()
        ratio.append((torch.linalg.matrix_norm(d, 2) / torch.linalg.svdvals(base[i].double())[..., k - 1]).cpu().numpy())
    return np.stack(cos, 1), np.stack(counts, 1), np.stack(ratio, 1)


def run(tasks: Tasks, methods: Sequence[Method], *, members: int, width: int, pretrain_steps: int, pretrain_lr: float,
        steps: int, batch: int, generators: Sequence[torch.Generator], k: int = spectral.K_TOP,
        epsilon: float = spectral.EPSILON, init_scale: float = 1.0, spectrum_decay: float = 0.0) -> LoRAIntrudersResult:
    """Pretrain, fine-tune with every method from the same pretrained members, and measure.

    ``generators``: (init, pretraining batches, adapters, fine-tuning batches). Every method sees
    the same fine-tuning minibatches (the batch generator is re-seeded from one draw per method).
    """
    g_init, g_pre, g_adapt, g_ft = generators
    net = pretrain(tasks, members=members, width=width, steps=pretrain_steps, lr=pretrain_lr, batch=batch,
                   init_generator=g_init, batch_generator=g_pre, init_scale=init_scale,
                   spectrum_decay=spectrum_decay)
    base = [w.detach().clone() for w in net.weights]
    layers = tuple(range(len(base) - 1))
    pre_loss_a, pre_acc_a = evaluate(net, base, tasks.x_a_test, tasks.y_test)
    _, pre_acc_b = evaluate(net, base, tasks.x_b_test, tasks.y_test)
    ft_seed = int(torch.randint(0, 2**62, (1,), generator=g_ft))
    adapt_seed = int(torch.randint(0, 2**62, (1,), generator=g_adapt))
    results: dict[str, MethodResult] = {}
    for method in methods:
        gb = torch.Generator(device=g_ft.device).manual_seed(ft_seed)
        ga = torch.Generator(device=g_adapt.device).manual_seed(adapt_seed)
        tuned = finetune(net, tasks, method, steps=steps, batch=batch, adapter_generator=ga, batch_generator=gb)
        _, acc_b = evaluate(net, tuned, tasks.x_b_test, tasks.y_test)
        loss_a, acc_a = evaluate(net, with_head(tuned, base), tasks.x_a_test, tasks.y_test)
        cos, counts, ratio = spectra(base, tuned, layers, k, epsilon)
        results[method.name] = MethodResult(method, tuned, acc_b, loss_a, acc_a, cos, counts, ratio)
    gaps = np.stack([spectral.singular_gaps(base[i], k + 1).cpu().numpy() for i in layers], 1)
    return LoRAIntrudersResult(base=base, pre_loss_a=pre_loss_a, pre_acc_a=pre_acc_a, pre_acc_b=pre_acc_b,
                               results=results, gaps=gaps, layers=layers, k=k, epsilon=epsilon, net=net)


@dataclass
class Intervention:
    """Task-A loss and task-B accuracy after scaling every intruder's singular value by each factor."""

    factors: np.ndarray
    loss_a: np.ndarray  # (factors, members)
    acc_b: np.ndarray  # (factors, members)
    has_intruder: np.ndarray  # (members,)

    def forgetting_cut(self, res: LoRAIntrudersResult, factor: float) -> np.ndarray:
        """``1 − (L_A(scaled) − L_A(pre)) / (L_A(tuned) − L_A(pre))`` per member: the share of the task-A
        loss increase that scaling the intruders by ``factor`` takes back."""
        i = int(np.argmin(np.abs(self.factors - factor)))
        j = int(np.argmin(np.abs(self.factors - 1.0)))
        return 1.0 - (self.loss_a[i] - res.pre_loss_a) / (self.loss_a[j] - res.pre_loss_a)

    def acc_drop(self, factor: float) -> np.ndarray:
        i = int(np.argmin(np.abs(self.factors - factor)))
        j = int(np.argmin(np.abs(self.factors - 1.0)))
        return self.acc_b[j] - self.acc_b[i]


@torch.no_grad()
def intervene(res: LoRAIntrudersResult, tasks: Tasks, method: str, factors: Sequence[float]) -> Intervention:
    """Scale the singular values of every intruder dimension of ``method``'s adapted matrices by each factor.

    The intruders are the ones the official count found (top ``k``, ``max |cos| < ε``); the singular
    vectors stay, only their singular values change (``metrics.spectral.scale_singular_values``).
    """
    r = res.results[method]
    assert res.net is not None
    fs = np.asarray(sorted(set(float(f) for f in factors) | {1.0}))
    loss_a, acc_b = [], []
    for f in fs:
        w = list(r.weights)
        for j, i in enumerate(res.layers):
            mask = torch.as_tensor(r.max_cos[:, j] < res.epsilon, device=w[i].device)
            w[i] = spectral.scale_singular_values(w[i], mask, f)
        la, _ = evaluate(res.net, with_head(w, res.base), tasks.x_a_test, tasks.y_test)
        _, ab = evaluate(res.net, w, tasks.x_b_test, tasks.y_test)
        loss_a.append(la)
        acc_b.append(ab)
    return Intervention(fs, np.stack(loss_a), np.stack(acc_b), r.total_intruders > 0)


# ----------------------------------------------------------------------------- continual learning
GAP_SKIP = 1.02
"""A pretrained matrix whose top-11 singular values have a ratio σ_i/σ_(i+1) below this is not counted:
its top singular vectors are ill-defined, so even a full fine-tune could show false intruders."""


@dataclass(frozen=True)
class TokenRange:
    """A Markov language written with its own block of a larger vocabulary: token ``s`` of ``language`` is id
    ``offset + s`` among ``vocab_size`` ids. Its entropy rate is the language's."""

    language: MarkovLanguage
    offset: int
    vocab_size: int

    @property
    def entropy_rate(self) -> float:
        return self.language.entropy_rate

    def sample(self, batch: int, length: int, generator: torch.Generator) -> Tensor:
        return self.language.sample(batch, length, generator) + self.offset


def markov_tasks(tasks: int, *, vocab_size: int, successors: int, generator: torch.Generator,
                 task_vocab: int | None = None, concentration: float = 1.0) -> list[TokenRange]:
    """``tasks + 1`` independent random Markov languages: language 0 is pretrained on, languages 1 … ``tasks``
    are fine-tuned on in sequence.

    ``task_vocab = None``: all share one vocabulary of ``vocab_size`` tokens, so every new language
    contradicts the old ones token by token. ``task_vocab = n``: language 0 uses tokens ``0 … vocab_size − 1``
    and each fine-tuning language its own block of ``n`` further tokens (a new domain with its own words),
    so a network could learn every language at once and forgetting is collateral damage, not a
    contradiction: the situation of a pretrained model fine-tuned on new tasks.
    """
    if not isinstance(tasks, int) or tasks < 1:
        raise ValueError(f"tasks must be an integer >= 1 (fine-tuning languages after the pretraining one), got {tasks!r}")
    if task_vocab is not None and (not isinstance(task_vocab, int) or task_vocab < successors):
        raise ValueError(f"task_vocab must be an integer >= successors ({successors}), or None to share one vocabulary; "
                         f"got {task_vocab!r}")
    sizes = [vocab_size] + [vocab_size if task_vocab is None else task_vocab] * tasks
    offsets = [0] * (tasks + 1) if task_vocab is None else [0] + [vocab_size + i * task_vocab for i in range(tasks)]
    total = vocab_size if task_vocab is None else vocab_size + tasks * task_vocab
    return [TokenRange(markov_language(v, successors, generator=generator, concentration=concentration), o, total)
            for v, o in zip(sizes, offsets)]


def _lm_batches(language: TokenRange, members: int, batch: int, seq_len: int, generator: torch.Generator,
                device: torch.device) -> Callable[[], Tensor]:
    """Fresh ``(members, batch, seq_len + 1)`` token ids per call: every member trains on its own sequences."""
    def draw() -> Tensor:
        return language.sample(members * batch, seq_len + 1, generator).view(members, batch, seq_len + 1).to(device)
    return draw


def _lm_objective(model: torch.nn.Module, draw: Callable[[], Tensor]) -> Callable[[], Tensor]:
    def loss() -> Tensor:
        idx = draw()
        return lm_loss(model(idx[..., :-1]), idx[..., 1:])[0]
    return loss


def pretrain_gpt(language: TokenRange, config: GPTConfig, *, steps: int, lr: float, batch: int,
                 init_generator: torch.Generator, batch_generator: torch.Generator, spectrum_decay: float = 0.0,
                 device: torch.device | str = "cpu") -> GPT:
    """A GPT ensemble (one member per seed) pretrained by Adam on ``language``.

    With ``spectrum_decay > 0`` every linear in the blocks starts as :func:`power_law_matrix` (same
    Frobenius norm as the Gaussian init), for the reason given there: a separated top spectrum, on
    which "a new top singular vector" is well defined.
    """
    net = GPT(config, init_generator)
    if spectrum_decay:
        with torch.no_grad():
            for w in gpt_weights(net).values():  # (members, out, in) views of the stored (members, in, out)
                std = float(w.pow(2).mean().sqrt())
                w.copy_(power_law_matrix(w.shape, spectrum_decay, std, init_generator).to(w.dtype))
    net.to(device)
    draw = _lm_batches(language, config.members, batch, config.context, batch_generator, torch.device(device))
    fit(Adam(net.parameters(), lr), _lm_objective(net, draw), steps)
    return net


@torch.no_grad()
def lm_losses(model: torch.nn.Module, held_out: Sequence[Tensor]) -> np.ndarray:
    """Per-member next-token loss (nats per token) on each held-out token set: ``(languages, members)``."""
    return np.stack([lm_loss(model(x[:, :-1]), x[:, 1:])[0].cpu().numpy() for x in held_out])


@dataclass
class ContinualResult:
    """The continual-learning run: per checkpoint (0 = pretrained, t = after fine-tuning on language t), method,
    member and adapted matrix, the intruder count against the pretrained matrix and the losses.

    ``losses[method]``: ``(checkpoints, languages, members)`` held-out loss of every language at every checkpoint.
    ``intruders[method]``: ``(checkpoints, members, matrices)``. ``gaps``: ``(members, matrices)`` smallest
    ``σ_i/σ_(i+1)`` of the pretrained top 11; a matrix below ``gap_skip`` is not counted. ``base`` and
    ``final[method]``: the pretrained and the last fine-tuned adapted matrices, ``(members, out, in)`` by name.
    """

    methods: list[Method]
    matrices: tuple[str, ...]
    losses: dict[str, np.ndarray]
    intruders: dict[str, np.ndarray]
    update_ratio: dict[str, np.ndarray]
    gaps: np.ndarray
    entropy_rates: np.ndarray
    base: dict[str, Tensor] = field(repr=False)
    final: dict[str, dict[str, Tensor]] = field(repr=False)
    k: int = spectral.K_TOP
    epsilon: float = spectral.EPSILON
    gap_skip: float = GAP_SKIP

    @property
    def counted(self) -> np.ndarray:
        """``(members, matrices)``: which pretrained matrices have well-separated top singular values."""
        return self.gaps >= self.gap_skip

    def table(self) -> pd.DataFrame:
        """One row per checkpoint × method × member × adapted matrix (tidy)."""
        rows = []
        for m in self.methods:
            loss, count, ratio = self.losses[m.name], self.intruders[m.name], self.update_ratio[m.name]
            for t in range(loss.shape[0]):
                for e in range(loss.shape[2]):
                    previous = float(loss[t, 1:t, e].mean()) if t >= 2 else math.nan
                    for j, name in enumerate(self.matrices):
                        rows.append(dict(task=t, method=m.name, member=e, matrix=name, intruders=int(count[t, e, j]),
                                         counted=bool(self.counted[e, j]), min_gap=float(self.gaps[e, j]),
                                         update_ratio=float(ratio[t, e, j]), pretrain_loss=float(loss[t, 0, e]),
                                         task_loss=float(loss[t, t, e]), previous_loss=previous))
        return pd.DataFrame(rows)

    def totals(self) -> pd.DataFrame:
        """One row per checkpoint × method × member: intruders summed over the counted matrices, and the losses."""
        t = self.table()
        t["intruders"] = t["intruders"].where(t["counted"], 0)
        keys = ["task", "method", "member"]
        out = t.groupby(keys, sort=False).agg(intruders=("intruders", "sum"), pretrain_loss=("pretrain_loss", "first"),
                                              task_loss=("task_loss", "first"), previous_loss=("previous_loss", "first"))
        return out.reset_index()

    def total(self, method: str) -> np.ndarray:
        """``(checkpoints, members)``: intruders summed over the counted matrices."""
        return (self.intruders[method] * self.counted[None]).sum(-1)


def continual_learning(languages: Sequence[TokenRange], methods: Sequence[Method], *, members: int, width: int,
                       layers: int, heads: int, seq_len: int, pretrain_steps: int, pretrain_lr: float, steps: int,
                       batch: int, generators: Sequence[torch.Generator], n_eval: int = 256,
                       spectrum_decay: float = 0.0, k: int = spectral.K_TOP, epsilon: float = spectral.EPSILON,
                       targets: tuple[str, ...] = ("attn", "mlp"), train_head: bool = False,
                       train_embeddings: bool = False, device: torch.device | str = "cpu") -> ContinualResult:
    """Pretrain a GPT ensemble on ``languages[0]``, then fine-tune it on ``languages[1:]`` in sequence by each method.

    Full fine-tuning trains every parameter at each task. LoRA puts a fresh adapter on every linear of
    ``targets`` at each task (LayerNorms frozen; embeddings and head trained densely only with ``train_embeddings``
    and ``train_head``: frozen is ``LoRAGPT``'s default), trains it,
    and merges it into the weights before the next task, as one does in practice to keep one model.
    After every task the adapted matrices are compared with the *pretrained* ones (official count:
    top ``k``, ``max |cos| < epsilon``), and every language is scored on a fixed held-out sample.

    ``generators``: (languages' held-out samples, init, pretraining batches, adapters, fine-tuning
    batches). Every method sees the same fine-tuning minibatches and, for LoRA, the same adapter draws.
    """
    if len(languages) < 2:
        raise ValueError("continual learning needs a pretraining language and at least one fine-tuning language")
    g_eval, g_init, g_pre, g_adapt, g_ft = generators
    device = torch.device(device)
    config = GPTConfig(vocab_size=languages[0].vocab_size, context=seq_len, layers=layers, heads=heads, width=width,
                       members=members)
    held_out = [lang.sample(n_eval, seq_len + 1, g_eval).to(device) for lang in languages]
    net = pretrain_gpt(languages[0], config, steps=pretrain_steps, lr=pretrain_lr, batch=batch, init_generator=g_init,
                       batch_generator=g_pre, spectrum_decay=spectrum_decay, device=device)
    lora_config = LoRAConfig(1, 1.0, targets=targets)
    names = lora_config.adapted_linears(layers)
    base = {n: w.detach().clone() for n, w in gpt_weights(net, names).items()}
    gaps = np.stack([spectral.singular_gaps(base[n], k + 1).amin(-1).cpu().numpy() for n in names], 1)
    sigma_k = {n: torch.linalg.svdvals(w.double())[..., k - 1] for n, w in base.items()}
    ft_seed = int(torch.randint(0, 2**62, (1,), generator=g_ft))
    adapt_seed = int(torch.randint(0, 2**62, (1,), generator=g_adapt))
    pre_losses = lm_losses(net, held_out)

    @torch.no_grad()
    def measure(model: GPT) -> tuple[np.ndarray, np.ndarray]:
        tuned = gpt_weights(model, names)
        counts = [spectral.intruder_count(tuned[n], base[n], k, epsilon).cpu().numpy() for n in names]
        ratio = [(torch.linalg.matrix_norm((tuned[n] - base[n]).double(), 2) / sigma_k[n]).cpu().numpy() for n in names]
        return np.stack(counts, 1), np.stack(ratio, 1)

    losses, intruders, ratios, final = {}, {}, {}, {}
    zero = np.zeros((members, len(names)))
    for method in methods:
        gb = torch.Generator().manual_seed(ft_seed)
        ga = torch.Generator().manual_seed(adapt_seed)
        current = copy.deepcopy(net)
        lo, co, ra = [pre_losses], [zero.astype(np.int64)], [zero]
        for language in languages[1:]:
            draw = _lm_batches(language, members, batch, seq_len, gb, device)
            if method.is_lora:
                cfg = LoRAConfig(method.rank, method.alpha, method.rank_stabilized, targets=targets,
                                 train_head=train_head, train_embeddings=train_embeddings)
                model = LoRAGPT(current, cfg, generator=ga)
                fit(Adam(adapter_parameters(model), method.lr), _lm_objective(model, draw), steps)
                model.merge()
                current = model.base
            else:
                for p in current.parameters():
                    p.requires_grad_(True)
                fit(Adam(current.parameters(), method.lr), _lm_objective(current, draw), steps)
            lo.append(lm_losses(current, held_out))
            c, r = measure(current)
            co.append(c)
            ra.append(r)
        losses[method.name], intruders[method.name], ratios[method.name] = np.stack(lo), np.stack(co), np.stack(ra)
        final[method.name] = {n: w.detach().clone() for n, w in gpt_weights(current, names).items()}
    rates = np.array([lang.entropy_rate for lang in languages])
    return ContinualResult(methods=list(methods), matrices=names, losses=losses, intruders=intruders,
                           update_ratio=ratios, gaps=gaps, entropy_rates=rates, base=base, final=final, k=k,
                           epsilon=epsilon)
