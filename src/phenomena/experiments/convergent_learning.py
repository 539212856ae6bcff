"""Chapter convergent-learning: do CNNs trained from different seeds learn the same units?

Li, Yosinski, Clune, Lipson & Hopcroft (2015) trained four AlexNets that differ only in their
seed and compared them unit by unit. Here ``members`` small CNNs on scikit-learn's digits
(:class:`phenomena.models.digits_cnn.DigitsCNN`) train as one model by Adam on the same minibatches;
then every pair of members is compared layer by layer on all 1,797 images:

* one-to-one bipartite matching of ``|corr|`` (:mod:`phenomena.metrics.similarity`) against the
  rotation null of :mod:`phenomena.theory.similarity` (Haar, at the live width, and on the target
  net's own unit covariance), with linear CKA (:func:`phenomena.metrics.geometry.linear_cka`), which
  is blind to the basis, alongside;
* held-out R² of a dense ridge map, of the one-to-one matched map, and of a LASSO map with at most
  ``max_nonzero`` inputs per target unit.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from phenomena import ensemble
from phenomena.data.digits import DigitsSplit
from phenomena.metrics import similarity as sim
from phenomena.metrics.geometry import linear_cka
from phenomena.models.digits_cnn import LAYERS, DigitsCNN, DigitsCNNConfig
from phenomena.theory.similarity import HAAR_NULL, covariance_matching_null, haar_matching_null

PIXELS: tuple[str, ...] = ("standardized", "intensity")
"""Input conventions: per-pixel z-scores (:func:`phenomena.data.digits.load_digits_split`) or raw ink in [0, 1]."""


def with_pixels(split: DigitsSplit, pixels: str) -> DigitsSplit:
    """``split`` with its images in the convention ``pixels``.

    ``"standardized"`` keeps the per-pixel z-scores of the book's digits. ``"intensity"`` undoes
    them to the raw ink (0–16) divided by 16: every position then has the same scale, as a
    convolution assumes, and every pixel is non-negative.
    """
    if pixels not in PIXELS:
        raise ValueError(f"unknown pixels {pixels!r}; valid ones are: {', '.join(PIXELS)}")
    if pixels == "standardized":
        return split
    raw = lambda x: (x * split.std + split.mean) / 16.0  # noqa: E731
    return dataclasses.replace(split, x_train=raw(split.x_train), x_test=raw(split.x_test))


def train_members(
    split: DigitsSplit,
    *,
    members: int,
    steps: int,
    lr: float,
    batch: int,
    init_generator: torch.Generator,
    batch_generator: torch.Generator,
    **config,
) -> tuple[DigitsCNN, np.ndarray, np.ndarray]:
    """Train ``members`` CNNs that differ only in their initial weights: Adam, cross-entropy, the same
    minibatches (``batch`` training images drawn with replacement per step) for every member.

    Returns the model, the per-member test accuracy ``(members,)`` and the loss ``(steps + 1, members)``.
    Sharing the minibatches leaves the seed of the weights as the only difference, as in the paper.
    """
    if members < 2:
        raise ValueError(f"need at least 2 members to compare, got {members}")
    x, y = split.x_train, split.y_train
    model = DigitsCNN(DigitsCNNConfig(members=members, dtype=x.dtype, **config), generator=init_generator).to(x.device)
    opt = ensemble.Adam(list(model.parameters()), lr=lr)
    n = x.shape[0]

    def loss() -> torch.Tensor:
        idx = torch.randint(0, n, (batch,), generator=batch_generator).to(x.device)
        out = model(x[idx])
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y[idx].repeat(members), reduction="none").view(
            members, batch).mean(1)

    hist = ensemble.fit(opt, loss, steps)
    with torch.no_grad():
        acc = (model(split.x_test).argmax(-1) == split.y_test).to(torch.float64).mean(1)
    return model, acc.cpu().numpy(), hist.loss.numpy()


def haar_null_at(width: int, *, samples: int, generator: torch.Generator) -> float:
    """The Haar rotation null at ``width`` (tabulated where available, else by Monte-Carlo)."""
    if width in HAAR_NULL:
        return HAAR_NULL[width][0]
    return haar_matching_null(width, samples, generator=generator).mean


@dataclass
class ConvergentResult:
    """What :func:`compare_members` measured; one row per (pair, layer) in ``matching`` and ``maps``."""

    matching: pd.DataFrame
    maps: pd.DataFrame
    example_corr: dict[str, np.ndarray]
    """Layer → ``|corr|`` of the first pair, rows and columns in matched order (matched pairs on the diagonal)."""
    example_matched: dict[str, np.ndarray]
    """Layer → matched ``|corr|`` of every unit of the first pair."""


def compare_members(
    acts: dict[str, torch.Tensor],
    *,
    null_samples: int,
    null_generator: torch.Generator,
    map_layers: tuple[str, ...] = ("conv2",),
    max_nonzero: int = 4,
    sparse: bool = True,
    folds: int = 5,
    ridge: float = 1e-3,
) -> ConvergentResult:
    """Compare every pair of members on every layer of ``acts`` (:meth:`DigitsCNN.activations`).

    Matching runs on all layers; the ridge, matched and LASSO maps (from the pair's first member
    to its second, held out by ``folds``-fold over images) on ``map_layers`` only, the costly part;
    ``sparse=False`` skips the LASSO map (its columns are then NaN).
    """
    members = next(iter(acts.values())).shape[0]
    rows, map_rows = [], []
    example_corr, example_matched = {}, {}
    for a, b in itertools.combinations(range(members), 2):
        for layer in LAYERS:
            xa, groups = sim.channel_rows(acts[layer][a])
            xb, _ = sim.channel_rows(acts[layer][b])
            uc = sim.unit_correlation(xa, xb)
            match = sim.bipartite_matching(uc.corr)
            live = int(min(uc.corr.shape))
            cov = np.cov(xb[:, uc.alive_b].T)
            rows.append({
                "a": a, "b": b, "layer": layer, "width": xa.shape[1], "live": live,
                "dead_a": uc.dead_a, "dead_b": uc.dead_b,
                "matched": match.mean, "semi_matched": sim.semi_matching(uc.corr).mean,
                "haar_null": haar_null_at(live, samples=null_samples, generator=null_generator),
                "covariance_null": covariance_matching_null(cov, null_samples, generator=null_generator).mean,
                "cka": float(linear_cka(torch.as_tensor(xa), torch.as_tensor(xb))),
            })
            if (a, b) == (0, 1):
                order_r, order_c = match.rows[np.argsort(-match.values)], match.cols[np.argsort(-match.values)]
                example_corr[layer] = np.abs(uc.corr[np.ix_(order_r, order_c)])
                example_matched[layer] = np.sort(match.values)[::-1]
            if layer in map_layers:
                targets, sources = sim.match_of_targets(uc, match)
                dense = sim.ridge_map(xa, xb[:, targets], alpha=ridge, folds=folds, groups=groups)
                one = sim.matched_map(xa, xb[:, targets], sources, folds=folds, groups=groups)
                sparse_fit = (sim.lasso_map(xa, xb[:, targets], max_nonzero=max_nonzero, folds=folds, groups=groups)
                              if sparse else None)
                map_rows.append({
                    "a": a, "b": b, "layer": layer,
                    "ridge_r2": dense.mean_r2, "matched_r2": one.mean_r2,
                    "lasso_r2": sparse_fit.mean_r2 if sparse_fit else np.nan,
                    "ridge_mse": dense.mean_mse, "matched_mse": one.mean_mse,
                    "lasso_mse": sparse_fit.mean_mse if sparse_fit else np.nan,
                    "lasso_nonzero": float(sparse_fit.nonzero.mean()) if sparse_fit else np.nan,
                })
    return ConvergentResult(pd.DataFrame(rows), pd.DataFrame(map_rows), example_corr, example_matched)
