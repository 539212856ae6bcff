"""Unit-level comparison of two networks' representations (Li, Yosinski, Clune, Lipson & Hopcroft 2015).

Two networks trained from different seeds compute their layer's features in some order and, a
priori, in some basis. Three questions, three tools:

* **Are the units the same?** :func:`unit_correlation` correlates every unit of net A with every
  unit of net B over the same inputs; :func:`bipartite_matching` pairs them one-to-one so that the
  summed ``|corr|`` is largest (the Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``);
  :func:`semi_matching` lets several units of A pick the same unit of B (each takes its best).
* **Is the subspace the same?** :func:`ridge_map` predicts every unit of B from *all* units of A
  with one linear (affine) map; :func:`matched_map` predicts each unit of B from its one matched
  unit of A only. If the dense map explains B and the one-to-one map does not, the layers share a
  subspace but not a basis.
* **How distributed is the code?** :func:`lasso_map` predicts each unit of B from at most ``k``
  units of A, chosen by the LASSO path (exact ``k``-sparse points of the L1 path).

Every map is scored on *held-out* samples (k-fold over groups of samples: all positions of one image
stay in one fold), since with a few thousand images a dense map with tens of inputs per target fits
noise too. Scores are R² = 1 − SSE/SST per target unit on the held-out folds, with SST about the
training folds' mean, pooled over folds.

Dead units (zero variance over the inputs, common with ReLU) have no correlation; they are dropped
and counted (``dead_a``/``dead_b``) rather than turned into NaNs.

Convolutional layers are compared per channel over images × positions, as in the paper:
:func:`channel_rows` flattens ``(images, height, width, channels)`` to ``(images·positions,
channels)`` and returns the image index of every row, the groups of the k-fold split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

DEAD_TOL = 1e-12
"""A unit whose variance over the samples is at most this (relative to the layer's largest) is dead."""


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def channel_rows(acts: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A layer's activations as ``(samples, units)`` rows plus the image index of every row.

    ``(images, units)`` is returned as is (one row per image); ``(images, height, width, channels)``
    becomes ``(images·height·width, channels)``: a channel is one unit seen at every position.
    """
    a = _np(acts)
    if a.ndim == 2:
        return a, np.arange(a.shape[0])
    if a.ndim == 4:
        n, h, w, c = a.shape
        return a.reshape(n * h * w, c), np.repeat(np.arange(n), h * w)
    raise ValueError(f"activations must be (images, units) or (images, height, width, channels), got {a.shape}")


def alive_units(x: np.ndarray) -> np.ndarray:
    """Indices of the units (columns) whose variance is above :data:`DEAD_TOL` times the largest."""
    var = x.var(0)
    top = var.max() if var.size else 0.0
    if top <= 0:
        return np.zeros(0, dtype=int)
    return np.nonzero(var > DEAD_TOL * top)[0]


@dataclass(frozen=True)
class UnitCorrelation:
    """Pearson correlations between the live units of two layers.

    ``corr[i, j]`` correlates unit ``alive_a[i]`` of A with unit ``alive_b[j]`` of B; ``dead_a`` and
    ``dead_b`` count the units left out because they never vary on these inputs.
    """

    corr: np.ndarray
    alive_a: np.ndarray
    alive_b: np.ndarray
    dead_a: int
    dead_b: int


def unit_correlation(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> UnitCorrelation:
    """Correlation of every unit of ``a`` with every unit of ``b``, both ``(samples, units)`` over the same samples.

    Dead units are dropped first (their correlation is 0/0) and counted.
    """
    x, y = _np(a), _np(b)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need two (samples, units) matrices over the same samples, got {x.shape} and {y.shape}")
    if x.shape[0] < 3:
        raise ValueError(f"need at least 3 samples to correlate, got {x.shape[0]}")
    ia, ib = alive_units(x), alive_units(y)
    if ia.size == 0 or ib.size == 0:
        raise ValueError("a layer has no live unit on these inputs (every unit is constant): nothing to correlate")
    xs = x[:, ia] - x[:, ia].mean(0)
    ys = y[:, ib] - y[:, ib].mean(0)
    xs /= np.sqrt((xs * xs).sum(0))
    ys /= np.sqrt((ys * ys).sum(0))
    corr = np.clip(xs.T @ ys, -1.0, 1.0)
    return UnitCorrelation(corr, ia, ib, x.shape[1] - ia.size, y.shape[1] - ib.size)


@dataclass(frozen=True)
class Matching:
    """A pairing of rows (units of A) with columns (units of B) of a correlation matrix.

    ``rows[k]`` is matched with ``cols[k]``; ``values[k] = |corr[rows[k], cols[k]]|``.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.values.mean())


def bipartite_matching(corr: np.ndarray) -> Matching:
    """The one-to-one pairing that maximises the summed ``|corr|`` (``min(rows, cols)`` pairs).

    The sign of a unit is a convention of neither network, so ``|corr|`` is what is matched.
    """
    from scipy.optimize import linear_sum_assignment

    c = np.abs(np.asarray(corr, dtype=np.float64))
    if c.ndim != 2 or c.size == 0:
        raise ValueError(f"corr must be a non-empty (units_a, units_b) matrix, got shape {c.shape}")
    rows, cols = linear_sum_assignment(c, maximize=True)
    return Matching(rows, cols, c[rows, cols])


def semi_matching(corr: np.ndarray) -> Matching:
    """Every unit of A (row) paired with its most correlated unit of B; several may share one."""
    c = np.abs(np.asarray(corr, dtype=np.float64))
    if c.ndim != 2 or c.size == 0:
        raise ValueError(f"corr must be a non-empty (units_a, units_b) matrix, got shape {c.shape}")
    rows = np.arange(c.shape[0])
    cols = c.argmax(1)
    return Matching(rows, cols, c[rows, cols])


def match_of_targets(uc: UnitCorrelation, matching: Matching) -> tuple[np.ndarray, np.ndarray]:
    """For a matching of ``uc.corr`` (rows: A, columns: B): the matched units of B and, for each, its
    unit of A, both as column indices of the original layers (dead units and unmatched units of
    the larger layer left out)."""
    return uc.alive_b[matching.cols], uc.alive_a[matching.rows]


# ----------------------------------------------------------------------------- layer maps
def folds_of(groups: np.ndarray, folds: int, *, seed: int = 0) -> np.ndarray:
    """Fold index of every sample: whole groups (images) assigned to ``folds`` folds at random."""
    g = np.asarray(groups)
    uniq, inv = np.unique(g, return_inverse=True)
    if not 2 <= folds <= uniq.size:
        raise ValueError(f"folds must lie in [2, number of groups = {uniq.size}], got {folds}")
    perm = np.random.default_rng(seed).permutation(uniq.size)
    fold_of_group = np.empty(uniq.size, dtype=int)
    fold_of_group[perm] = np.arange(uniq.size) % folds
    return fold_of_group[inv]


def _check_pair(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need (samples, units) inputs and targets over the same samples, got {x.shape} and {y.shape}")
    g = np.arange(x.shape[0]) if groups is None else np.asarray(groups)
    if g.shape != (x.shape[0],):
        raise ValueError(f"groups must give one group per sample ({x.shape[0]}), got shape {g.shape}")
    return g


@dataclass(frozen=True)
class MapScore:
    """Held-out fit of a layer map: per target unit, R² and the mean squared error of the
    standardised target (so ``mse = 1 − R²`` up to the fold means)."""

    r2: np.ndarray
    mse: np.ndarray
    nonzero: np.ndarray | None = None
    """For sparse maps: the mean number of inputs used per target unit, per unit."""

    @property
    def mean_r2(self) -> float:
        return float(self.r2.mean())

    @property
    def mean_mse(self) -> float:
        return float(self.mse.mean())


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def _score(pred: np.ndarray, y_test: np.ndarray, y_train_mean: np.ndarray, sse: np.ndarray, sst: np.ndarray,
           n: np.ndarray) -> None:
    sse += ((y_test - pred) ** 2).sum(0)
    sst += ((y_test - y_train_mean) ** 2).sum(0)
    n += y_test.shape[0]


def _cross_validate(x, y, groups, folds, seed, fit_predict) -> MapScore:
    x, y = _np(x), _np(y)
    g = _check_pair(x, y, groups)
    iy = alive_units(y)
    if iy.size == 0:
        raise ValueError("the target layer has no live unit: nothing to predict")
    y = y[:, iy]
    fold = folds_of(g, folds, seed=seed)
    d = y.shape[1]
    sse, sst, cnt, nnz = np.zeros(d), np.zeros(d), np.zeros(d), np.zeros(d)
    for f in range(folds):
        tr, te = fold != f, fold == f
        xtr, xte = _standardise(x[tr], x[te])
        ytr, yte = _standardise(y[tr], y[te])
        pred, used = fit_predict(xtr, ytr, xte)
        _score(pred, yte, np.zeros(d), sse, sst, cnt)
        nnz += used
    r2 = 1.0 - sse / sst
    return MapScore(r2=r2, mse=sse / cnt, nonzero=nnz / folds)


def ridge_map(x, y, *, alpha: float = 1e-3, folds: int = 5, groups: np.ndarray | None = None, seed: int = 0) -> MapScore:
    """Held-out fit of one dense affine map from every unit of ``x`` to every unit of ``y``.

    Inputs and targets are standardised on the training folds; ``alpha`` is the ridge penalty
    relative to the number of training samples (``(XᵀX + α·n·I)⁻¹ Xᵀ Y`` on standardised inputs),
    small enough to leave a well-determined map alone and large enough to keep dead or collinear
    inputs from blowing it up.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")

    def fit_predict(xtr, ytr, xte):
        gram = xtr.T @ xtr + alpha * xtr.shape[0] * np.eye(xtr.shape[1])
        w = np.linalg.solve(gram, xtr.T @ ytr)
        return xte @ w, np.full(ytr.shape[1], xtr.shape[1], dtype=float)

    return _cross_validate(x, y, groups, folds, seed, fit_predict)


def matched_map(x, y, match_of_target: np.ndarray, *, folds: int = 5, groups: np.ndarray | None = None,
                seed: int = 0) -> MapScore:
    """Held-out fit of the one-to-one map: target unit ``j`` of ``y`` predicted (affinely) from the
    single unit ``match_of_target[j]`` of ``x``, e.g. its bipartite match.

    ``y`` must already be restricted to its live units and ``match_of_target`` index ``x``'s columns.
    """
    m = np.asarray(match_of_target, dtype=int)
    yy = _np(y)
    if m.shape != (yy.shape[1],):
        raise ValueError(f"match_of_target needs one input unit per target unit ({yy.shape[1]}), got shape {m.shape}")

    def fit_predict(xtr, ytr, xte):
        a, b = xtr[:, m], xte[:, m]
        slope = (a * ytr).sum(0) / np.maximum((a * a).sum(0), 1e-300)
        return b * slope, np.ones(ytr.shape[1])

    return _cross_validate(x, yy, groups, folds, seed, fit_predict)


def lasso_map(x, y, *, max_nonzero: int = 4, folds: int = 5, groups: np.ndarray | None = None,
              seed: int = 0) -> MapScore:
    """Held-out fit of a sparse map: each unit of ``y`` predicted from at most ``max_nonzero`` units of ``x``.

    For every target unit the exact LASSO path is computed (LARS with the lasso modification,
    ``sklearn.linear_model.lars_path_gram``) and the map is taken at the smallest L1 penalty at which at
    most ``max_nonzero`` coefficients are non-zero: the LASSO estimate itself, shrinkage included,
    as the paper's L1-penalised mapping layer. "Smallest" along the path: the last point before the
    path first uses more than ``max_nonzero`` inputs.
    """
    from sklearn.linear_model import lars_path_gram

    if max_nonzero < 1:
        raise ValueError(f"max_nonzero must be >= 1, got {max_nonzero}")

    def fit_predict(xtr, ytr, xte):
        gram = xtr.T @ xtr
        pred = np.zeros((xte.shape[0], ytr.shape[1]))
        used = np.zeros(ytr.shape[1])
        for j in range(ytr.shape[1]):
            xy = xtr.T @ ytr[:, j]
            _, _, coefs = lars_path_gram(Xy=xy, Gram=gram, n_samples=xtr.shape[0], method="lasso",
                                         max_iter=4 * max_nonzero + 8)
            over = np.nonzero((coefs != 0).sum(0) > max_nonzero)[0]
            w = coefs[:, over[0] - 1] if over.size else coefs[:, -1]
            pred[:, j] = xte @ w
            used[j] = (w != 0).sum()
        return pred, used

    return _cross_validate(x, y, groups, folds, seed, fit_predict)
