"""Many small models trained as one: stacked parameters, per-member hyper-parameters, one step for all.

Learning-dynamics experiments train dozens of tiny models (seeds, learning rates, widths). One
by one, Python overhead dominates; stacked along a leading *ensemble axis* they run as a few
batched matmuls. Two ways to get the axis:

* natively batched models (:class:`phenomena.models.MLP`, :class:`phenomena.models.DeepLinearNetwork`)
  hold ``(members, ...)`` parameters and compute all members with batched matmuls;
* :class:`VmapEnsemble` stacks the parameters of any list of identical ``nn.Module`` instances
  (``torch.func.stack_module_state``) and runs them with ``vmap``.

The optimizers here (:class:`SGD`, :class:`Adam`, with ``decoupled=True`` for AdamW) take
per-member hyper-parameters as ``(members,)`` tensors and reproduce ``torch.optim.SGD`` /
``Adam`` / ``AdamW`` member by member, so that a member's trajectory is that of the model
trained alone (tests pin this to float tolerance on CPU). A member whose loss turns non-finite
is frozen and reported (:func:`fit` with ``on_divergence="mask"``), never allowed to poison the
others: members share no parameters, and frozen members take no step.

Where the CPU time goes, and what the engine does about it (``benchmarks/ensemble.py``): the
models are too small for FLOPs to dominate, so the cost is interpreter and autograd overhead and
memory traffic. A ReLU :class:`~phenomena.models.MLP` runs forward and backward as one autograd
node with in-place activations; :func:`fit` reads the ``alive`` mask once per check and, while
every member is alive, lets :class:`SGD` update all tensors in one ``_foreach`` call without the
masking that protects frozen members; and :func:`phenomena.setup` keeps freed memory in the heap
(:mod:`phenomena.runtime`), since fresh multi-MB activations otherwise page-fault at every step.
``fit(..., compile=True)`` goes further where steps are many and small: each whole step (loss,
gradient, update) runs as one ``torch.compile`` graph, with an eager fallback.
"""

from __future__ import annotations

import contextlib
import copy
import math
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state


# ----------------------------------------------------------------------------- divergence
class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss; the message names the step, the value and a fix."""


def assert_finite(loss: Tensor | float, step: int, *, lr: float | None = None, what: str = "loss") -> None:
    """Raise :class:`DivergenceError` if ``loss`` (any shape) holds a NaN or infinity."""
    t = torch.as_tensor(loss)
    if bool(torch.isfinite(t).all()):
        return
    bad = t[~torch.isfinite(t)].flatten()[0].item() if t.dim() else t.item()
    where = ""
    if t.dim():
        idx = (~torch.isfinite(t)).nonzero()[0].tolist()
        where = f" (member {idx[0] if len(idx) == 1 else tuple(idx)})"
    hint = f"lower the learning rate (lr={lr:g})" if lr is not None else "lower the learning rate"
    raise DivergenceError(
        f"training diverged: {what} became {bad} at step {step}{where}; {hint} or the init scale, "
        "or pass on_divergence='mask' to keep the other members of an ensemble going"
    )


# ----------------------------------------------------------------------------- models
class VmapEnsemble(nn.Module):
    """``E`` copies of one architecture, parameters stacked on axis 0 and evaluated with ``vmap``.

    ``forward(x)`` takes a batch shared by all members ``(batch, ...)``, or one batch per member
    ``(members, batch, ...)`` with ``per_member_input=True``, and returns ``(members, batch, ...)``.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        kinds = {type(m) for m in members}
        if len(kinds) != 1:
            raise ValueError(f"members must share one architecture, got {sorted(k.__name__ for k in kinds)}")
        params, buffers = stack_module_state(list(members))
        self.members = len(members)
        self._names = list(params)
        self.stacked = nn.ParameterList(nn.Parameter(params[n].detach().clone()) for n in self._names)
        self._buffer_names = list(buffers)
        for i, n in enumerate(self._buffer_names):
            self.register_buffer(f"_buffer{i}", buffers[n].clone())
        base = copy.deepcopy(members[0]).to("meta")
        object.__setattr__(self, "_base", base)  # not a submodule: its (meta) parameters are not ours

    def _state(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        params = dict(zip(self._names, self.stacked))
        buffers = {n: getattr(self, f"_buffer{i}") for i, n in enumerate(self._buffer_names)}
        return params, buffers

    def forward(self, x: Tensor, *, per_member_input: bool = False) -> Tensor:
        params, buffers = self._state()

        def one(p: dict[str, Tensor], b: dict[str, Tensor], inp: Tensor) -> Tensor:
            return functional_call(self._base, (p, b), (inp,))

        return torch.vmap(one, in_dims=(0, 0, 0 if per_member_input else None))(params, buffers, x)

    def member(self, index: int, template: nn.Module) -> nn.Module:
        """A standalone copy of member ``index``, built on ``template`` (same architecture)."""
        out = copy.deepcopy(template)
        params, buffers = self._state()
        with torch.no_grad():
            for name, value in params.items():
                out.get_parameter(name).copy_(value[index])
            for name, value in buffers.items():
                out.get_buffer(name).copy_(value[index])
        return out


def from_seeds(factory: Callable[[torch.Generator], nn.Module], seeds: Iterable[int]) -> list[nn.Module]:
    """One model per seed, each built alone by ``factory(generator)``: the ensemble's member ``e`` is
    bit-for-bit the model a single run with ``seeds[e]`` would build."""
    return [factory(torch.Generator().manual_seed(int(s))) for s in seeds]


def scale_members(model: nn.Module, init_scale: Tensor | Sequence[float]) -> nn.Module:
    """Multiply every stacked parameter of member ``e`` by ``init_scale[e]`` (per-member init scale)."""
    scale = torch.as_tensor(init_scale)
    with torch.no_grad():
        for p in model.parameters():
            if p.shape[0] != scale.numel():
                raise ValueError(f"parameter of shape {tuple(p.shape)} has no ensemble axis of size {scale.numel()}")
            p.mul_(scale.to(p).view(-1, *([1] * (p.dim() - 1))))
    return model


# ----------------------------------------------------------------------------- optimizers
def _per_member(value: float | Tensor | Sequence[float], members: int, like: Tensor, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        t = t.expand(members)
    if t.shape != (members,):
        raise ValueError(f"{name} must be a number or one value per member ({members}), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative, got {value}")
    return t.clone()


def _view(v: Tensor, p: Tensor) -> Tensor:
    return v.view(-1, *([1] * (p.dim() - 1)))


class EnsembleOptimizer:
    """Base: parameters with a leading ensemble axis, an ``alive`` mask, per-member hyper-parameters."""

    def __init__(self, params: Iterable[Tensor], lr: float | Tensor | Sequence[float]) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("no trainable parameters given")
        self.members = self.params[0].shape[0]
        for p in self.params:
            if p.dim() == 0 or p.shape[0] != self.members:
                raise ValueError(
                    f"every parameter needs the leading ensemble axis of size {self.members}; got shape {tuple(p.shape)}"
                )
        self.lr = _per_member(lr, self.members, self.params[0], "lr")
        self.alive = torch.ones(self.members, dtype=torch.bool, device=self.params[0].device)
        # ``True`` only while the caller has just seen ``alive.all()`` on the host (``fit`` does, at its
        # checks): the step may then skip the masking that protects frozen members. Never a device sync.
        self.all_alive = False
        self.steps = 0

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """Apply one update to every alive member, given the gradients of the summed member losses."""
        raise NotImplementedError


class SGD(EnsembleOptimizer):
    """``torch.optim.SGD`` per member: ``lr``, ``momentum``, ``weight_decay`` (L2, added to the gradient),
    ``dampening`` and ``nesterov`` as in PyTorch; ``lr``/``momentum``/``weight_decay`` may differ per member.

    ``lr`` is read at every step (set ``optimizer.lr`` for a schedule); whether momentum and weight
    decay are on at all is decided once, at construction, to keep host syncs out of the step."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float | Tensor | Sequence[float],
        *,
        momentum: float | Tensor | Sequence[float] = 0.0,
        weight_decay: float | Tensor | Sequence[float] = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        like = self.params[0]
        self.momentum = _per_member(momentum, self.members, like, "momentum")
        self.weight_decay = _per_member(weight_decay, self.members, like, "weight_decay")
        self.dampening, self.nesterov = float(dampening), bool(nesterov)
        self.use_momentum = bool((self.momentum > 0).any())
        self.use_weight_decay = bool((self.weight_decay > 0).any())
        self.buffers: list[Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """One SGD step; ``grads`` (fresh tensors from autograd) are overwritten in place to save copies."""
        if self.all_alive and not (self.use_weight_decay or self.use_momentum):
            # the common case in one call: p ← p − lr·g for every tensor, no member to protect
            torch._foreach_addcmul_(self.params, [_view(self.lr, p) for p in self.params], list(grads), value=-1.0)
            self.steps += 1
            return
        lr = self.lr if self.all_alive else torch.where(self.alive, self.lr, torch.zeros_like(self.lr))
        for i, (p, g) in enumerate(zip(self.params, grads)):
            # a frozen member's gradient may be NaN; its lr is 0, its step must be too
            d = g if self.all_alive else g.nan_to_num_()
            if self.use_weight_decay:
                d = d.add_(_view(self.weight_decay, p) * p)
            if self.use_momentum:
                buf = self.buffers[i]
                if buf is None:
                    buf = d.clone()
                else:
                    buf.mul_(_view(self.momentum, p)).add_(d, alpha=1 - self.dampening)
                self.buffers[i] = buf
                d = d + _view(self.momentum, p) * buf if self.nesterov else buf
            p.addcmul_(_view(lr, p), d, value=-1.0)
        self.steps += 1


class Adam(EnsembleOptimizer):
    """``torch.optim.Adam`` per member, or ``AdamW`` with ``decoupled=True`` (weight decay applied to the
    weights, ``p ← p(1 − lr·wd)``, instead of added to the gradient). Bias-corrected as in PyTorch.

    As in :class:`SGD`, whether weight decay is on at all is decided once, at construction."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float | Tensor | Sequence[float],
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float | Tensor | Sequence[float] = 0.0,
        decoupled: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.eps = float(eps)
        self.weight_decay = _per_member(weight_decay, self.members, self.params[0], "weight_decay")
        self.decoupled = bool(decoupled)
        # decided once, as in SGD: a host read of the device tensor at every step would sync (and
        # break a compiled step's graph)
        self.use_weight_decay = bool((self.weight_decay > 0).any())
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # a member frozen by divergence keeps its own step count, so its bias correction stays its own
        self.member_steps = torch.zeros(self.members, dtype=self.params[0].dtype, device=self.params[0].device)

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        alive = self.alive
        self.member_steps += alive.to(self.member_steps.dtype)
        t = self.member_steps.clamp(min=1)
        bias1 = 1 - self.beta1**t
        bias2 = 1 - self.beta2**t
        lr = torch.where(alive, self.lr, torch.zeros_like(self.lr))
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
            g = torch.nan_to_num(g)
            keep = _view(alive, p)
            if self.decoupled:
                p.mul_(1 - _view(lr * self.weight_decay, p))
            elif self.use_weight_decay:
                g = g + _view(self.weight_decay, p) * p
            m.copy_(torch.where(keep, m * self.beta1 + (1 - self.beta1) * g, m))
            v.copy_(torch.where(keep, v * self.beta2 + (1 - self.beta2) * g * g, v))
            denom = v.sqrt() / _view(bias2.sqrt(), p) + self.eps
            p.sub_(_view(lr / bias1, p) * m / denom)
        self.steps += 1


def AdamW(params: Iterable[Tensor], lr: float | Tensor | Sequence[float], **kwargs) -> Adam:
    """``torch.optim.AdamW`` per member (PyTorch's default ``weight_decay=0.01``)."""
    kwargs.setdefault("weight_decay", 0.01)
    return Adam(params, lr, decoupled=True, **kwargs)


# ----------------------------------------------------------------------------- training loop
@dataclass
class History:
    """What :func:`fit` recorded. ``loss`` is ``(steps + 1, members)``: the loss before each step and after the last."""

    loss: Tensor
    recorded: dict[str, Tensor] = field(default_factory=dict)
    record_steps: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    diverged_at: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    compile_fallback: str | None = None
    """With ``fit(compile=True)``: why the step ran eagerly after all (the compiler's error), else ``None``."""

    @property
    def diverged(self) -> Tensor:
        """``(members,)`` bool: which members produced a non-finite loss (and were frozen from then on)."""
        return self.diverged_at >= 0


def fit(
    optimizer: EnsembleOptimizer,
    loss: Callable[[], Tensor],
    steps: int,
    *,
    record: dict[str, Callable[[], Tensor]] | None = None,
    record_every: int = 1,
    on_divergence: Literal["raise", "mask"] = "raise",
    check_every: int = 1,
    compile: bool = False,
    lr_schedule: Tensor | None = None,
    grad_transform: Callable[[int, Sequence[Tensor]], Sequence[Tensor]] | None = None,
) -> History:
    """Run ``steps`` optimizer steps on all members at once.

    ``loss()`` returns the per-member losses ``(members,)`` for the current parameters (its own
    minibatch logic, if any, lives in the closure). ``record`` maps names to zero-argument
    functions evaluated without gradients every ``record_every`` steps and after the last.

    Divergence: a member whose loss is non-finite is frozen at once (on the device, without a
    host sync) and reported in ``History.diverged_at``. With ``on_divergence="raise"`` the run
    stops with :class:`DivergenceError` naming the step, member and value; the
    check syncs with the device every ``check_every`` steps (raise it on a GPU to avoid a sync per
    step; the reported step is exact either way).

    ``compile=True`` runs each step (the loss, its gradient and the update) as one
    ``torch.compile``d graph (:func:`_step_function`), where the compiler works, else eagerly (the
    reason is kept in ``History.compile_fallback``). It pays where steps are many and small: the
    interpreter and autograd overhead of a step goes, and the element-wise work fuses
    (``benchmarks/ensemble.py``). The first call compiles for several seconds, so short fits
    should stay eager. The trajectory agrees with the eager one to float tolerance, not bit for
    bit (the compiler reorders arithmetic). A member that diverges is masked inside the graph, so
    the other members take the update of the step that found it before ``fit`` raises. The graph
    is specialised to the Python values the loss reads: a loss that reads a Python number changing
    every step (a minibatch counter) recompiles at each new value and, past torch's limit of 8,
    runs eagerly; keep such state in tensors (``torch.randint`` indices, say). Random numbers drawn
    inside the graph come from the compiler's generator: reproducible under ``torch.manual_seed``,
    but another stream than eager PyTorch's, so the same seed draws other minibatches.

    ``lr_schedule`` (``(steps, members)``, or ``(steps,)`` for one schedule shared by all members;
    :mod:`phenomena.schedules` makes them) sets every member's learning rate step by step: row
    ``t`` is written into ``optimizer.lr`` (in place) before step ``t``, so each member follows its
    own schedule and the optimizer keeps the last row's rates afterwards. Without it ``optimizer.lr``
    is left alone, as before.

    ``grad_transform(step, grads)`` (eager steps only) sees the gradients of step ``step`` (0-based,
    counted within this fit) before the optimizer does and returns the gradients the optimizer
    takes, one tensor per parameter with the same shapes: it injects gradient spikes, or records
    gradients, without touching the loss. Without it the optimizer takes autograd's gradients, as
    before.
    """

    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if record_every < 1 or check_every < 1:
        raise ValueError(f"record_every and check_every must be >= 1, got {record_every}, {check_every}")
    if on_divergence not in ("raise", "mask"):
        raise ValueError(f"on_divergence must be 'raise' or 'mask', got {on_divergence!r}")
    if grad_transform is not None and compile:
        raise ValueError("grad_transform runs between autograd and the update, which compile=True fuses into one "
                         "graph; pass compile=False to transform gradients")
    record = record or {}
    params, members = optimizer.params, optimizer.members
    schedule = _check_schedule(lr_schedule, steps, optimizer) if lr_schedule is not None else None
    device, dtype = params[0].device, params[0].dtype
    losses = torch.full((steps + 1, members), math.nan, dtype=dtype, device=device)
    traces: dict[str, list[Tensor]] = {k: [] for k in record}
    rec_steps: list[int] = []
    last = steps

    checked = 0  # rows of `losses` before this one were already checked

    def check(upto: int) -> bool:
        """Raise (mode 'raise') on a non-finite loss in rows not yet checked; report whether every member is dead.

        ``alive`` only ever loses members, each at its first non-finite loss, so one host read of it
        answers both questions; the rows are searched only to name the step in the error.
        """
        nonlocal checked
        everyone = bool(optimizer.alive.all())
        if on_divergence == "raise" and not everyone:
            seen = losses[checked : upto + 1]
            bad_steps = (~torch.isfinite(seen)).any(1).nonzero()
            if len(bad_steps):  # none: the members were frozen by an earlier fit with this optimizer
                bad_step = int(bad_steps[0])
                member = int((~torch.isfinite(seen[bad_step])).nonzero()[0])
                assert_finite(seen[bad_step].cpu(), checked + bad_step, lr=float(optimizer.lr[member]))
        checked = upto + 1
        optimizer.all_alive = everyone
        return not everyone and not bool(optimizer.alive.any())

    compiled_step = compiled(_step_function(optimizer, loss)) if compile and steps > 0 else None
    # the switch that lets the compiler trace the gradient is read when it traces: on for the whole
    # loop (entering it costs about 20 us, too much per step), off again on return
    with _tracing_autograd() if compiled_step is not None else contextlib.nullcontext():
        for step in range(steps + 1):
            if step % record_every == 0 or step == steps:
                with torch.no_grad():
                    for k, fn in record.items():
                        traces[k].append(fn().detach().cpu())
                rec_steps.append(step)
            if schedule is not None and step < steps:
                optimizer.lr.copy_(schedule[step])
            if compiled_step is not None and step < steps:
                optimizer.all_alive = False  # the graph masks on the device: it cannot read the host's check
                per_member = compiled_step()  # the loss at this step's parameters; the update is done
            else:
                per_member = loss()
                _check_loss_shape(per_member, members)
                optimizer.alive &= torch.isfinite(per_member.detach())
            losses[step] = per_member.detach()
            optimizer.all_alive = False  # until a check has looked
            if (step % check_every == 0 or step == steps) and check(step):
                last = step
                break
            if step == steps or compiled_step is not None:
                continue
            total = per_member.sum() if optimizer.all_alive else _alive_total(per_member, optimizer.alive)
            grads = torch.autograd.grad(total, params)
            if grad_transform is not None:
                grads = _transformed(grad_transform(step, grads), grads)
            optimizer.step(grads)
    losses = losses.cpu()
    bad = ~torch.isfinite(losses[: last + 1])
    diverged_at = torch.where(bad.any(0), bad.to(torch.int8).argmax(0), torch.full((members,), -1)).to(torch.long)
    return History(
        loss=losses,
        recorded={k: torch.stack(v) for k, v in traces.items()},
        record_steps=torch.tensor(rec_steps, dtype=torch.long),
        diverged_at=diverged_at,
        compile_fallback=compiled_step.fallback_reason() if compiled_step is not None else None,
    )


def _check_schedule(lr_schedule: Tensor, steps: int, optimizer: EnsembleOptimizer) -> Tensor:
    """``lr_schedule`` as a ``(steps, members)`` tensor on the optimizer's device, or a clear error."""
    sched = torch.as_tensor(lr_schedule, dtype=optimizer.lr.dtype, device=optimizer.lr.device)
    if sched.dim() == 1:
        sched = sched[:, None].expand(-1, optimizer.members)
    if sched.dim() != 2 or sched.shape[0] < steps or sched.shape[1] != optimizer.members:
        raise ValueError(
            f"lr_schedule must be (steps, members) = ({steps}, {optimizer.members}) or (steps,), got shape "
            f"{tuple(sched.shape)}; build it with phenomena.schedules.stack(names, steps, lr)"
        )
    if not bool(torch.isfinite(sched).all()) or bool((sched < 0).any()):
        raise ValueError("lr_schedule must hold finite, non-negative learning rates")
    return sched


def _transformed(new: Sequence[Tensor], old: Sequence[Tensor]) -> Sequence[Tensor]:
    """The gradients a ``grad_transform`` returned, checked against autograd's (count and shapes)."""
    new = list(new) if new is not None else []
    if len(new) != len(old) or any(n.shape != o.shape for n, o in zip(new, old)):
        raise ValueError(
            "grad_transform(step, grads) must return one gradient per parameter with the parameter's shape, got "
            f"{[tuple(n.shape) for n in new]} for {[tuple(o.shape) for o in old]}"
        )
    return new


def _check_loss_shape(per_member: Tensor, members: int) -> None:
    if per_member.shape != (members,):
        raise ValueError(f"loss() must return one loss per member, shape ({members},); got {tuple(per_member.shape)}")


def _alive_total(per_member: Tensor, alive: Tensor) -> Tensor:
    """The sum of the alive members' losses: a frozen member's (non-finite) loss sends no gradient."""
    return torch.where(alive, per_member, torch.zeros_like(per_member)).sum()


def _step_function(optimizer: EnsembleOptimizer, loss: Callable[[], Tensor]) -> Callable[[], Tensor]:
    """One whole training step as a function for ``torch.compile``: the per-member losses at the
    current parameters, the ``alive`` mask updated from them, and the update of the alive members.

    Everything stays on the device: the mask comes from this step's losses, never from a host
    check, so the optimizer's masked path runs (``all_alive`` is ``False``), fused by the compiler.

    ``torch.compile`` keeps its compiled graphs, and its limit of recompilations (8), per code
    object. The function is made anew per :func:`fit`, on one copy of its code per kind of loss
    (the loss's own code) and optimizer: a second fit of the same kind reuses the graph, and a
    process that fits many kinds does not exhaust one shared limit, which would leave the later
    kinds running eagerly without a word.
    """
    params, members = optimizer.params, optimizer.members

    def step() -> Tensor:
        per_member = loss()
        _check_loss_shape(per_member, members)
        optimizer.alive &= torch.isfinite(per_member.detach())
        optimizer.step(torch.autograd.grad(_alive_total(per_member, optimizer.alive), params))
        return per_member.detach()

    kind = (type(optimizer), getattr(loss, "__code__", type(loss)))
    code = _STEP_CODES.setdefault(kind, step.__code__.replace())
    return types.FunctionType(code, step.__globals__, step.__name__, step.__defaults__, step.__closure__)


_STEP_CODES: dict[tuple[type, object], types.CodeType] = {}
"""One copy of the compiled step's code per kind of loss and optimizer (see :func:`_step_function`)."""


def _tracing_autograd():
    """A context in which ``torch.compile`` traces ``torch.autograd.grad`` into the graph instead of
    breaking the graph there (``torch._dynamo.config.trace_autograd_ops``); a no-op where this
    version of PyTorch has no such switch (the step then compiles in pieces, still correct)."""
    config = getattr(getattr(torch, "_dynamo", None), "config", None)
    if config is None or not hasattr(config, "trace_autograd_ops"):
        return contextlib.nullcontext()
    return config.patch(trace_autograd_ops=True)


def compiled(fn: Callable, *, enabled: bool = True, **kwargs) -> Callable:
    """``torch.compile(fn)`` where the compiler works here, else ``fn`` itself (with the reason kept).

    Compilation is tried on first call; any failure (no C++ compiler, unsupported op, an old
    platform) falls back to eager execution, so nothing in the book requires the compiler.
    """
    if not enabled:
        return fn
    state: dict[str, Callable | str | None] = {"impl": None, "why": None}

    def wrapper(*args, **kw):
        impl = state["impl"]
        if impl is None:
            try:
                candidate = torch.compile(fn, **kwargs)
                out = candidate(*args, **kw)
                state["impl"] = candidate
                return out
            except Exception as err:
                state["impl"], state["why"] = fn, f"{type(err).__name__}: {err}"
                return fn(*args, **kw)
        return impl(*args, **kw)  # type: ignore[operator]

    wrapper.fallback_reason = lambda: state["why"]  # type: ignore[attr-defined]
    return wrapper


# ----------------------------------------------------------------------------- SPAM
class SPAM(EnsembleOptimizer):
    """Spike-aware Adam with momentum reset (Huang et al. 2025, arXiv 2501.06842), per member.

    Adam, plus the two mechanisms of the reference implementation (``SPAM.py`` of the authors'
    code), each with its own value per member:

    * **spike-aware clipping**: at step ``t`` (1-based), a coordinate whose gradient satisfies
      ``g² > θ·v`` (``v`` the raw, not bias-corrected, second moment before this step) is replaced by
      ``sign(g)·√(θ·v)``, so one spike can raise ``v`` by at most ``(1 − β₂)·θ·v``. As in the code, it
      acts only from step ``clip_delay`` (the code's ``grad_accu_steps = 20``) on and, with resets,
      only ``clip_delay`` or more steps after the last reset (``v`` is then too young to judge by);
      ``threshold = 0`` switches it off.
    * **momentum reset**: at every step ``t`` that is a multiple of ``reset_interval`` (``ΔT``) both
      moments are zeroed before the update; the step count that drives the bias correction is *not*
      reset, as in the code. ``reset_interval = 0`` never resets.
    * **warm-up after a reset**: for ``c = t mod ΔT < warmup`` steps after each reset the update is
      scaled by ``1 − 0.99·(1 + cos(π c/(warmup + 1)))/2`` (the code's ``CosineDecay(0.99, warmup)``),
      which starts at 0.01 and reaches 1; before the first reset there is none.

    The update is the code's: ``p ← p − lr·s_t·√(1−β₂^t)/(1−β₁^t) · m/(√v + ε)`` with ``s_t`` the
    warm-up factor, then decoupled weight decay ``p ← p − lr·wd·p``. A member with ``threshold = 0``,
    ``reset_interval = 0`` (and ``eps = 0``) is :class:`Adam` exactly, so a grid can hold Adam and SPAM
    members side by side. Defaults are the code's: ``θ = 5000``, ``ΔT = 500`` (``--update_gap``),
    ``warmup = 150`` (``--warmup_epoch``), ``ε = 1e-6``. The paper's sparse-momentum variant
    (``density < 1``) is not implemented.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float | Tensor | Sequence[float],
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float | Tensor | Sequence[float] = 0.0,
        threshold: float | Tensor | Sequence[float] = 5000.0,
        reset_interval: int | Tensor | Sequence[int] = 500,
        warmup: int | Tensor | Sequence[int] = 150,
        clip_delay: int = 20,
    ) -> None:
        super().__init__(params, lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0 or clip_delay < 0:
            raise ValueError(f"eps and clip_delay must be >= 0, got eps={eps}, clip_delay={clip_delay}")
        self.eps, self.clip_delay = float(eps), int(clip_delay)
        like = self.params[0]
        self.weight_decay = _per_member(weight_decay, self.members, like, "weight_decay")
        self.threshold = _per_member(threshold, self.members, like, "threshold")
        self.reset_interval = _per_member(reset_interval, self.members, like, "reset_interval")
        self.warmup = _per_member(warmup, self.members, like, "warmup")
        for name in ("reset_interval", "warmup"):
            v = getattr(self, name)
            if not bool((v == v.round()).all()):
                raise ValueError(f"{name} must be whole numbers of steps, got {v.tolist()}")
        self.use_weight_decay = bool((self.weight_decay > 0).any())
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.member_steps = torch.zeros(self.members, dtype=like.dtype, device=like.device)
        self.clipped = torch.zeros(self.members, dtype=torch.long, device=like.device)
        """How many gradient coordinates each member has clipped so far."""

    def schedule(self) -> tuple[Tensor, Tensor, Tensor]:
        """For the coming step: which members reset, which may clip, and the warm-up factor, each ``(members,)``."""
        t = self.member_steps + 1
        every = self.reset_interval
        resets = every > 0
        since = torch.where(resets, torch.remainder(t, every.clamp(min=1)), t)
        reset = resets & (since == 0)
        clip = (self.threshold > 0) & (t >= self.clip_delay) & (since >= self.clip_delay)
        w = self.warmup
        warming = resets & (t >= every) & (since < w)
        factor = 1 - 0.99 * (1 + torch.cos(math.pi * since / (w + 1))) / 2
        return reset, clip, torch.where(warming, factor, torch.ones_like(factor))

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        alive = self.alive
        reset, clip, warm = self.schedule()
        reset, clip = reset & alive, clip & alive
        self.member_steps += alive.to(self.member_steps.dtype)
        t = self.member_steps.clamp(min=1)
        size = torch.where(alive, self.lr * warm, torch.zeros_like(self.lr))
        size = size * (1 - self.beta2**t).sqrt() / (1 - self.beta1**t)
        decay = torch.where(alive, self.lr * self.weight_decay, torch.zeros_like(self.lr))
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
            g = torch.nan_to_num(g)
            keep = _view(alive, p)
            zero = _view(reset, p)
            m.masked_fill_(zero, 0.0)
            v.masked_fill_(zero, 0.0)
            cap = _view(self.threshold, p) * v
            spike = _view(clip, p) & (g * g > cap)
            self.clipped += spike.flatten(1).sum(1)
            g = torch.where(spike, g.sign() * cap.sqrt(), g)
            m.copy_(torch.where(keep, m * self.beta1 + (1 - self.beta1) * g, m))
            v.copy_(torch.where(keep, v * self.beta2 + (1 - self.beta2) * g * g, v))
            p.sub_(_view(size, p) * m / (v.sqrt() + self.eps))
            if self.use_weight_decay:
                p.sub_(_view(decay, p) * p)
        self.steps += 1


# ----------------------------------------------------------------------------- Muon
NS5_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
"""The quintic Newton-Schulz coefficients ``(a, b, c)`` of Muon (Jordan et al. 2024, ``muon.py``)."""


def newton_schulz(g: Tensor, steps: int = 5, *, coefficients: tuple[float, float, float] = NS5_COEFFICIENTS,
                  eps: float = 1e-7) -> Tensor:
    """Muon's approximate orthogonalisation of every matrix in ``g`` (``(..., m, n)``), in float32.

    ``X = G/(‖G‖_F + eps)`` (so every singular value is in ``[0, 1]``), then ``steps`` times
    ``X ← aX + (bA + cA²)X`` with ``A = XXᵀ`` on the wide orientation (``m ≤ n``; a tall matrix is
    transposed and back). The result is ``U p∘steps(S/‖G‖_F) Vᵀ`` for ``G = USVᵀ`` with
    ``p(x) = ax + bx³ + cx⁵`` (:mod:`phenomena.theory.muon`). Leading axes are a batch: one
    batched matmul orthogonalises a whole ensemble's matrices at once. Float32 instead of Muon's
    bfloat16, so that the output agrees with the closed form to float32 roundoff.
    """
    if g.dim() < 2:
        raise ValueError(f"newton_schulz needs matrices (..., m, n), got shape {tuple(g.shape)}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    a, b, c = (float(v) for v in coefficients)
    x = g.float()
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    if tall:
        x = x.mT
    return x.to(g.dtype)


class Muon(EnsembleOptimizer):
    """Muon (MomentUm Orthogonalized by Newton-Schulz, Jordan et al. 2024) per member, with an
    AdamW for the parameters that are not hidden matrices.

    ``params`` are the hidden weight matrices, each ``(members, m, n)``. Per member and matrix, as
    in Jordan's ``muon.py``: the momentum ``B ← βB + (1−β)G``; the Nesterov update ``U = (1−β)G + βB``
    (or ``B`` with ``nesterov=False``); ``O = NS(U)`` (:func:`newton_schulz`, batched over the members);
    ``W ← W(1 − lr·weight_decay) − lr·√max(1, fan_out/fan_in)·O``. The factor reads the matrix as
    a linear map: ``layout="out_in"`` for ``torch.nn.Linear`` weights ``(out, in)`` (``muon.py``'s
    ``rows/cols``), ``"in_out"`` for the ``x @ W`` weights of :class:`phenomena.models.GPT` and MLPs.

    ``adamw_params`` (embeddings, read-out, gains and biases: Muon is for hidden layers only) get
    :class:`Adam` with decoupled weight decay (``adamw_lr``, ``adamw_betas``, ``adamw_eps``,
    ``adamw_weight_decay``; ``muon.py``'s defaults). ``lr``, ``momentum``, ``weight_decay`` and
    ``adamw_lr`` may differ per member ((members,) tensors); ``optimizer.lr`` is Muon's rate and
    ``optimizer.adamw.lr`` the AdamW one, both read at every step. ``fit`` sees one optimizer over
    ``params + adamw_params``, in that order.

    With ``keep_updates=True`` the last step's NS inputs and outputs (before the factor) stay in
    ``last_inputs`` / ``last_updates``, one ``(members, m, n)`` tensor per matrix: the spectrum of
    what Muon did can then be read without redoing it.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float | Tensor | Sequence[float],
        *,
        momentum: float | Tensor | Sequence[float] = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float | Tensor | Sequence[float] = 0.0,
        layout: Literal["out_in", "in_out"] = "out_in",
        adamw_params: Iterable[Tensor] = (),
        adamw_lr: float | Tensor | Sequence[float] = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
        adamw_weight_decay: float | Tensor | Sequence[float] = 0.0,
        keep_updates: bool = False,
    ) -> None:
        matrices = [p for p in params if p.requires_grad]
        others = [p for p in adamw_params if p.requires_grad]
        for p in matrices:
            if p.dim() != 3:
                raise ValueError(
                    f"Muon takes hidden weight matrices (members, m, n), got shape {tuple(p.shape)}; "
                    "pass embeddings, read-out, gains and biases as adamw_params"
                )
        if layout not in ("out_in", "in_out"):
            raise ValueError(f"layout must be 'out_in' (torch.nn.Linear) or 'in_out' (x @ W), got {layout!r}")
        if not isinstance(ns_steps, int) or ns_steps < 0:
            raise ValueError(f"ns_steps must be an integer >= 0, got {ns_steps!r}")
        super().__init__(matrices, lr)
        self.matrices = self.params
        like = self.params[0]
        self.momentum = _per_member(momentum, self.members, like, "momentum")
        if bool((self.momentum >= 1).any()):
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.weight_decay = _per_member(weight_decay, self.members, like, "weight_decay")
        self.nesterov, self.ns_steps, self.layout = bool(nesterov), ns_steps, layout
        self.buffers = [torch.zeros_like(p) for p in self.matrices]
        self.scales = [math.sqrt(max(1.0, self._fan_out_over_in(p))) for p in self.matrices]
        self.adamw: Adam | None = None
        if others:
            self.adamw = Adam(others, adamw_lr, betas=adamw_betas, eps=adamw_eps,
                              weight_decay=adamw_weight_decay, decoupled=True)
            if self.adamw.members != self.members:
                raise ValueError(f"adamw_params have {self.adamw.members} members, the matrices {self.members}")
        self.params = self.matrices + others
        self.keep_updates = bool(keep_updates)
        self.last_inputs: list[Tensor] = []
        self.last_updates: list[Tensor] = []

    def _fan_out_over_in(self, p: Tensor) -> float:
        rows, cols = p.shape[-2], p.shape[-1]
        return rows / cols if self.layout == "out_in" else cols / rows

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        k = len(self.matrices)
        alive = self.alive
        lr = torch.where(alive, self.lr, torch.zeros_like(self.lr))
        inputs, updates = [], []
        for p, g, buf, scale in zip(self.matrices, grads[:k], self.buffers, self.scales):
            g = torch.nan_to_num(g)
            beta = _view(self.momentum, p)
            buf.copy_(torch.where(_view(alive, p), beta * buf + (1 - beta) * g, buf))
            u = (1 - beta) * g + beta * buf if self.nesterov else buf
            o = newton_schulz(u, self.ns_steps)
            if self.keep_updates:
                inputs.append(u.clone())
                updates.append(o)
            p.mul_(1 - _view(lr * self.weight_decay, p))
            p.sub_(_view(lr * scale, p) * o)
        if self.keep_updates:
            self.last_inputs, self.last_updates = inputs, updates
        if self.adamw is not None:
            self.adamw.alive = alive
            self.adamw.step(grads[k:])
        self.steps += 1
