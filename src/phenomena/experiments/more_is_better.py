"""Chapter *more-is-better*: random-feature ridge regression over samples, features and ridge.

Three experiments, each with its independent draws (``members``) on a batch axis:

* :func:`rf_grid` — Gaussian random features on a :class:`~phenomena.data.powerlaw.PowerLawTask`:
  every ``(n, k)`` of a grid, every ridge of a path, exact test risk (no test set), next to the RF
  eigenframework's prediction. Models are nested: one draw of the largest inputs and weights per
  seed, smaller ``n`` and ``k`` are its leading rows, so a scan compares like with like.
* :func:`krr_fitting` — kernel ridge regression (the ``k → ∞`` limit) on a power-law task with many
  modes, on a fine ridge path, for the train/test ratio at the optimal ridge. The Gram matrices are
  accumulated over chunks of modes, so ``10⁵`` modes never sit in memory at once.
* :func:`digits_grid` — ReLU random features on scikit-learn's digits, the whole data set being the
  population: training points are drawn from it, the test risk is the mean over all of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.powerlaw import PowerLawTask
from ..models.random_features import (
    gaussian_features,
    gaussian_weights,
    kernel_ridge_path,
    relu_features,
    ridge_path,
)
from ..theory import eigenframework


@dataclass(frozen=True)
class GridResult:
    """Measured and predicted risks on an ``(n, k)`` grid and a ridge path.

    Arrays are indexed ``[case, seed, n, k, ridge]`` (measured) and ``[case, n, k, ridge]``
    (theory); ``cases`` names them (one per label-noise level of the power-law grid).
    """

    cases: list[str]
    n_trains: np.ndarray
    widths: np.ndarray
    ridges: np.ndarray
    test: np.ndarray
    train: np.ndarray
    theory_test: np.ndarray | None = None
    theory_train: np.ndarray | None = None

    @property
    def members(self) -> int:
        return int(self.test.shape[1])

    def mean_test(self) -> np.ndarray:
        """Seed-mean test risk ``[case, n, k, ridge]``."""
        return self.test.mean(1)

    def optimal(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """At each ``(case, n, k)``, the ridge index minimising the seed-mean test risk, and there:
        the seed-mean test risk, its standard error over members, and the seed-mean train risk."""
        idx = self.mean_test().argmin(-1)  # (case, n, k)
        pick = np.take_along_axis(self.test, idx[:, None, :, :, None], -1)[..., 0]  # (case, seed, n, k)
        train = np.take_along_axis(self.train, idx[:, None, :, :, None], -1)[..., 0]
        se = pick.std(1, ddof=1) / np.sqrt(self.members) if self.members > 1 else np.zeros_like(pick[:, 0])
        return idx, pick.mean(1), se, train.mean(1)


def monotone_violation(best: np.ndarray, se: np.ndarray) -> float:
    """Largest rise of ``best`` along either grid axis, in units of the larger point's standard error.

    ``best`` and ``se`` are ``[n, k]`` arrays of the optimal-ridge risk and its seed standard error;
    a step to more samples (down the ``n`` axis) or more features (along ``k``) should not raise the
    risk. Returns ``max(rise/SE)`` over all steps (negative when every step lowers the risk).
    """
    worst = -np.inf
    for axis in (0, 1):
        rise = np.diff(best, axis=axis)
        scale = np.maximum(np.delete(se, 0, axis=axis), np.delete(se, -1, axis=axis))
        scale = np.where(scale > 0, scale, np.finfo(float).tiny)
        worst = max(worst, float((rise / scale).max()))
    return worst


def framework_error(result: GridResult, *, min_size: int = 128, threshold_octaves: float = 1.0) -> tuple[float, np.ndarray]:
    """Worst relative error of the theory against the expected test risk, beyond the mean's sampling error.

    At each point the mean over draws ``m`` estimates the expected risk with standard error ``se``;
    the error counted is ``(|m − theory| − 2·se)/theory`` (negative when the theory lies within two
    standard errors). Only points with ``n, k ≥ min_size`` count (the framework is a large-size
    limit), and only points at least ``threshold_octaves`` octaves from the interpolation threshold
    ``k = n``, where at small ridge the risk does not concentrate at these sizes (see
    :func:`threshold_spread`). Returns the worst error and the per-``(case, n, k)`` worst plain
    relative error ``|m/theory − 1|`` over ridges (all points, for display).
    """
    if result.theory_test is None:
        raise ValueError("the grid was run with theory=False; rerun it with the theory")
    if result.members < 2:
        raise ValueError("the sampling error needs at least 2 members")
    mean = result.mean_test()
    se = result.test.std(1, ddof=1) / np.sqrt(result.members)
    excess = ((np.abs(mean - result.theory_test) - 2 * se) / result.theory_test).max(-1)  # (case, n, k)
    plain = np.abs(mean / result.theory_test - 1).max(-1)
    n, k = np.meshgrid(result.n_trains, result.widths, indexing="ij")
    keep = (n >= min_size) & (k >= min_size) & (np.abs(np.log2(k / n)) >= threshold_octaves)
    if not keep.any():
        raise ValueError(f"no grid point has n, k >= {min_size} and k/n at least {threshold_octaves} octave(s) from 1")
    return float(excess[:, keep].max()), plain


def threshold_spread(result: GridResult) -> np.ndarray:
    """Per-member ratio measured/theory at the smallest ridge on every grid point with ``k = n``: ``[case, member, point]``."""
    if result.theory_test is None:
        raise ValueError("the grid was run with theory=False; rerun it with the theory")
    pairs = [(a, b) for a, n in enumerate(result.n_trains) for b, k in enumerate(result.widths) if n == k]
    out = np.empty((len(result.cases), result.members, len(pairs)))
    for j, (a, b) in enumerate(pairs):
        out[:, :, j] = result.test[:, :, a, b, 0] / result.theory_test[:, None, a, b, 0]
    return out


def theory_optimum(task: PowerLawTask, noises: list[float], n_trains: list[int], widths: list[float]) -> np.ndarray:
    """The eigenframework's optimal-ridge test risk ``[case, n, k]`` (golden search; ``k = inf`` is KRR)."""
    out = np.empty((len(noises), len(n_trains), len(widths)))
    for c, sig in enumerate(noises):
        for a, n in enumerate(n_trains):
            for b, k in enumerate(widths):
                out[c, a, b] = eigenframework.optimal_ridge(task.eigenvalues, task.coefficients, n, k, sig)[1]
    return out


def rf_grid(
    task: PowerLawTask,
    noises: list[float],
    n_trains: list[int],
    widths: list[int],
    ridges: np.ndarray,
    *,
    members: int,
    generator: torch.Generator,
    theory: bool = True,
) -> GridResult:
    """Gaussian RF regression on ``task`` for every ``(n, k, ridge)``, one label-noise level per case.

    Every noise level reuses the same inputs, weights and Gram eigendecomposition (only the labels
    differ: clean labels plus ``√σ²`` times one shared noise draw). The exact test risk of the
    read-out ``w`` is ``Σ_i (√λ_i (Fᵀw)_i − v_i)² + σ²`` with ``F = W/√k``.
    """
    n_, k_ = sorted(int(n) for n in n_trains), sorted(int(k) for k in widths)
    clean = PowerLawTask(task.modes, task.alpha, task.beta, 0.0, task.eigenvalues, task.coefficients)
    s, y0 = clean.sample(n_[-1], generator, batch=(members,), whitened=True)
    eps = torch.randn(y0.shape, generator=generator, dtype=torch.float64, device=generator.device)
    weights = gaussian_weights(k_[-1], task.modes, generator, batch=(members,))
    dev = generator.device
    sqrt_lam = torch.as_tensor(np.sqrt(task.eigenvalues), device=dev)
    v = torch.as_tensor(task.coefficients, device=dev)
    x = s * sqrt_lam
    feats = gaussian_features(x, weights) * k_[-1] ** 0.5  # unscaled: x Wᵀ, (members, n_max, k_max)
    labels = torch.stack([y0 + float(sig) ** 0.5 * eps for sig in noises], 1)  # (members, cases, n_max)
    shape = (len(noises), members, len(n_), len(k_), len(ridges))
    test, train = np.empty(shape), np.empty(shape)
    for a, n in enumerate(n_):
        for b, k in enumerate(k_):
            path = ridge_path(feats[:, :n, :k] / k**0.5, labels[:, :, :n], ridges)
            coef = (path.weights @ weights[:, None, :k, :]) / k**0.5 * sqrt_lam  # (members, cases, R, modes)
            risk = (coef - v).pow(2).sum(-1) + torch.as_tensor(noises, dtype=torch.float64, device=dev)[:, None]
            test[:, :, a, b] = risk.transpose(0, 1).cpu().numpy()
            train[:, :, a, b] = path.train_mse.transpose(0, 1).cpu().numpy()
    result = GridResult([f"noise {sig:g}" for sig in noises], np.array(n_), np.array(k_), np.asarray(ridges),
                        test, train)
    if not theory:
        return result
    tt, tr = np.empty((len(noises), len(n_), len(k_), len(ridges))), None
    tr = np.empty_like(tt)
    nn, kk, dd = np.meshgrid(n_, k_, ridges, indexing="ij")
    for c, sig in enumerate(noises):
        tt[c], tr[c] = eigenframework.rf_risk(task.eigenvalues, task.coefficients, nn, kk, dd, sig)
    return GridResult(result.cases, result.n_trains, result.widths, result.ridges, test, train, tt, tr)


@dataclass(frozen=True)
class FittingResult:
    """KRR on power-law tasks: risks ``[task, seed, ridge]`` at ``n`` samples, and the optimum of the seed mean."""

    names: list[str]
    n: int
    ridges: np.ndarray
    test: np.ndarray
    train: np.ndarray

    def optimum(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per task: the optimal ridge of the seed-mean test risk (refined by a parabola in ``log δ``
        through the best grid point and its neighbours), the seed-mean test and train risk there
        (log-linear interpolation), and their ratio train/test."""
        logd = np.log(self.ridges)
        mt, mr = self.test.mean(1), self.train.mean(1)
        out = np.empty((4, len(self.names)))
        for t in range(len(self.names)):
            lt = np.log(mt[t])
            i = int(lt.argmin())
            x = logd[i]
            if 0 < i < len(logd) - 1:
                y0, y1, y2 = lt[i - 1 : i + 2]
                h = logd[i + 1] - logd[i]
                curv = y0 - 2 * y1 + y2
                if curv > 0:
                    x = logd[i] + 0.5 * h * (y0 - y2) / curv
            test = float(np.exp(np.interp(x, logd, lt)))
            train = float(np.exp(np.interp(x, logd, np.log(mr[t]))))
            out[:, t] = np.exp(x), test, train, train / test
        return out[0], out[1], out[2], out[3]


SQUARED_GRAM_CUTOFF = 1e-12
"""Modes with ``λ_i² < 1e−12 λ_1²`` enter ``K₂ = SΛ²Sᵀ`` through their mean ``Σ λ_i² · I`` only."""


def krr_fitting(
    task: PowerLawTask,
    n: int,
    ridges: np.ndarray,
    *,
    members: int,
    generator: torch.Generator,
    chunk: int = 4096,
) -> FittingResult:
    """Kernel ridge regression at ``n`` samples on ``task``, with the kernel ``Σ λ_i s_i s'_i`` of the task.

    For each chunk of modes the Gram ``K = SΛSᵀ``, the labels ``y = Sv`` and ``b = S(Λv)`` are
    accumulated, and ``K₂ = SΛ²Sᵀ``. With dual coefficients ``a`` the predictor's coefficient on
    mode ``i`` is ``λ_i (Sᵀa)_i``, so the test risk is ``aᵀK₂a − 2aᵀb + ‖v‖² + σ²``. ``K₂`` is summed
    exactly over the modes with ``λ_i² ≥ 10⁻¹² λ_1²`` and replaced by its mean ``(Σ λ_i²) I`` beyond
    (:data:`SQUARED_GRAM_CUTOFF`): for the tasks here that tail is below 10⁻⁸ and changes the risk by
    less than 10⁻⁴ of itself, while summing it would double the cost.
    """
    m = task.modes
    dt, dev = torch.float64, generator.device
    lam_np = task.eigenvalues
    head = int(np.searchsorted(-(lam_np**2), -SQUARED_GRAM_CUTOFF * lam_np[0] ** 2, side="right"))
    gram = torch.zeros(members, n, n, dtype=dt, device=dev)
    gram2 = torch.zeros_like(gram)
    y = torch.zeros(members, n, dtype=dt, device=dev)
    b = torch.zeros_like(y)
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        s = torch.randn(members, n, stop - start, generator=generator, dtype=dt, device=dev)
        lam = torch.as_tensor(lam_np[start:stop], device=dev)
        v = torch.as_tensor(task.coefficients[start:stop], device=dev)
        root = s * lam.sqrt()
        gram += root @ root.transpose(-1, -2)
        if start < head:
            sl = s[..., : head - start] * lam[: head - start]
            gram2 += sl @ sl.transpose(-1, -2)
        y += s @ v
        b += s @ (lam * v)
    gram2 += float((lam_np[head:] ** 2).sum()) * torch.eye(n, dtype=dt, device=dev)
    if task.noise > 0:
        y = y + task.noise**0.5 * torch.randn(y.shape, generator=generator, dtype=dt, device=dev)
    path = kernel_ridge_path(gram, y, ridges)
    vt = path.vecs.transpose(-1, -2)
    proj = vt @ gram2 @ path.vecs  # K₂ in the Gram's eigenbasis
    bb = (vt @ b.unsqueeze(-1)).squeeze(-1).unsqueeze(-2)  # (member, 1, n)
    quad = ((path.coef @ proj) * path.coef).sum(-1)
    norm = float((task.coefficients**2).sum())
    test = quad - 2 * (path.coef * bb).sum(-1) + norm + task.noise
    name = f"alpha={task.alpha:g}, beta={task.beta:g}"
    return FittingResult([name], int(n), np.asarray(ridges), test.cpu().numpy()[None], path.train_mse.cpu().numpy()[None])


def digits_population(target_class: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits, standardised with their own statistics, and the one-vs-rest label ``1[class = c]``."""
    from sklearn.datasets import load_digits

    if not 0 <= int(target_class) <= 9:
        raise ValueError(f"target_class must be a digit 0-9, got {target_class}")
    data = load_digits()
    x = torch.as_tensor(np.asarray(data.data, dtype=np.float64))
    std = x.std(0)
    x = (x - x.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
    y = torch.as_tensor((data.target == int(target_class)).astype(np.float64))
    return x, y


def digits_grid(
    n_trains: list[int],
    widths: list[int],
    ridges: np.ndarray,
    *,
    members: int,
    generator: torch.Generator,
    target_class: int = 0,
) -> GridResult:
    """ReLU RF regression on the digits: ``n`` training draws (with replacement) from the 1797 images,
    test risk = mean squared error over all 1797. Nested in ``n`` and ``k`` like :func:`rf_grid`."""
    x, y = (t.to(generator.device) for t in digits_population(target_class))
    n_, k_ = sorted(int(n) for n in n_trains), sorted(int(k) for k in widths)
    weights = gaussian_weights(k_[-1], x.shape[1], generator, batch=(members,))
    feats = relu_features(x.expand(members, *x.shape), weights) * k_[-1] ** 0.5  # (members, N, k_max)
    idx = torch.randint(0, x.shape[0], (members, n_[-1]), generator=generator, device=generator.device)
    shape = (1, members, len(n_), len(k_), len(ridges))
    test, train = np.empty(shape), np.empty(shape)
    rows = torch.arange(members, device=x.device)[:, None]
    for a, n in enumerate(n_):
        for b, k in enumerate(k_):
            pop = feats[..., :k] / k**0.5
            path = ridge_path(pop[rows, idx[:, :n]], y[idx[:, :n]], ridges)
            pred = path.weights @ pop.transpose(-1, -2)  # (members, R, N)
            test[0, :, a, b] = (pred - y).pow(2).mean(-1).cpu().numpy()
            train[0, :, a, b] = path.train_mse.cpu().numpy()
    return GridResult([f"digits, class {target_class} vs rest"], np.array(n_), np.array(k_), np.asarray(ridges),
                      test, train)
