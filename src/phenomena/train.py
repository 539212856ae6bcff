"""Training loops shared by chapters: full-batch gradient descent on an ensemble of models.

Every model here carries a leading ensemble axis (``E`` independent members). Members may have
their own learning rate; the loss of each member is computed separately and summed for one
backward pass (members share no parameters, so each member's gradient is its own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor, nn

from .ensemble import SGD, History, fit


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
    search expects its largest rates to diverge). A thin wrapper over :func:`phenomena.ensemble.fit`.
    """
    optimizer = SGD(model.parameters(), lr)
    return fit(
        optimizer,
        lambda: loss_fn(model(x), y),
        steps,
        record={k: (lambda fn=fn: fn(model)) for k, fn in (record or {}).items()},
        record_every=record_every,
        on_divergence=on_divergence,
    )
