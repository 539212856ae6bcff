"""Training loops shared by chapters: full-batch gradient descent on an ensemble of models.

Every model here carries a leading ensemble axis (``E`` independent members). Members may have
their own learning rate; the loss of each member is computed separately and summed for one
backward pass (members share no parameters, so each member's gradient is its own).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from .ensemble import History as _History


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


History = _History  # one record type for every training loop (see phenomena.ensemble)


def half_mse(pred: Tensor, target: Tensor) -> Tensor:
    """``½·mean_n ‖y_n − ŷ_n‖²`` per ensemble member: ``(E, N, out)`` → ``(E,)``.

    The sum over output coordinates (not the mean) keeps the gradient equal to Saxe et al.'s
    ``Σ_yx − W Σ_xx`` for whitened inputs.
    """
    return 0.5 * (pred - target).pow(2).sum(-1).mean(-1)


def train_full_batch(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    lr: float | Tensor,
    steps: int,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = half_mse,
    record: dict[str, Callable[[nn.Module], Tensor]] | None = None,
    record_every: int = 1,
    on_divergence: Literal["raise", "mask"] = "raise",
) -> History:
    """Plain gradient descent, ``θ ← θ − lr·∇L``, on every member of an ensemble at once.

    ``lr`` is a float or a ``(members,)`` tensor of per-member rates. ``record`` maps names to
    functions of the model, evaluated (without gradients) every ``record_every`` steps and after
    the last; their values are stacked along a new first axis. With ``on_divergence="raise"``
    a non-finite loss raises :class:`DivergenceError` naming the step; with ``"mask"`` the
    member is frozen from that step on and reported in ``History.diverged_at`` (a learning-rate
    search expects its largest rates to diverge). A thin wrapper over :func:`phenomena.ensemble.fit`,
    run on one CPU thread (:func:`phenomena.run.single_thread`).
    """
    from .ensemble import SGD, fit
    from .run import single_thread

    optimizer = SGD(model.parameters(), lr)
    with single_thread(x.device):  # the book's models are tiny: a second CPU thread only adds spin-waits
        return fit(
            optimizer,
            lambda: loss_fn(model(x), y),
            steps,
            record={k: (lambda fn=fn: fn(model)) for k, fn in (record or {}).items()},
            record_every=record_every,
            on_divergence=on_divergence,
        )


def crossing_time(curve: Tensor, threshold: float | Tensor) -> Tensor:
    """When each column of ``curve`` (steps × members) first falls to ``threshold``; ``inf`` if never.

    The step is refined by interpolating ``log curve`` linearly between the last step above and
    the first step at or below the threshold, so that learning times of a few steps are not
    rounded to whole steps. Non-finite values (a diverged member) never count as crossing.
    """
    c = torch.as_tensor(curve, dtype=torch.float64)
    thr = torch.as_tensor(threshold, dtype=torch.float64).expand(c.shape[1:])
    below = (c <= thr) & torch.isfinite(c)
    hit = below.any(0)
    k = below.to(torch.int8).argmax(0)
    prev = (k - 1).clamp(min=0)
    log_prev = torch.log(c.gather(0, prev.unsqueeze(0)).squeeze(0).clamp_min(1e-300))
    log_k = torch.log(c.gather(0, k.unsqueeze(0)).squeeze(0).clamp_min(1e-300))
    frac = torch.where(
        (k > 0) & (log_prev > log_k), (log_prev - torch.log(thr)) / (log_prev - log_k), torch.zeros_like(log_k)
    )
    t = torch.where(k > 0, prev.to(torch.float64) + frac.clamp(0, 1), torch.zeros_like(frac))
    return torch.where(hit, t, torch.full_like(t, math.inf))
