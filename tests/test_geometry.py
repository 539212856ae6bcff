"""Tests of the nonlinearity-geometry modules: closed form vs Monte-Carlo, metrics vs direct formulas."""

import itertools
import math

import numpy as np
import pytest
import torch

from phenomena.data import geometry as tasks
from phenomena.experiments import nonlinearity_geometry as experiment
from phenomena.metrics import geometry as geom
from phenomena.theory import geometry as theory


# ----------------------------------------------------------------------------- theory
@pytest.mark.parametrize("activation", ["tanh", "relu", "erf", "sigmoid"])
@pytest.mark.parametrize("q", [0.25, 1.0, 3.0])
def test_energy_fraction_matches_monte_carlo(activation, q):
    rng = np.random.default_rng(0)
    z = rng.standard_normal(2_000_000) * math.sqrt(q)
    fp = theory.DERIVATIVES[activation](z)
    mc = fp.mean() ** 2 / (fp**2).mean()
    assert float(theory.interclass_energy_fraction(activation, q)) == pytest.approx(mc, abs=2e-3)


def test_energy_fraction_known_values():
    assert theory.interclass_energy_fraction("relu", [0.1, 1.0, 10.0]) == pytest.approx([0.5] * 3, abs=1e-12)
    assert float(theory.interclass_energy_fraction("tanh", 0.25)) == pytest.approx(0.952, abs=5e-4)
    assert float(theory.interclass_energy_fraction("tanh", 1.0)) == pytest.approx(0.790, abs=5e-4)
    assert float(theory.interclass_energy_fraction("linear", 2.0)) == pytest.approx(1.0)
    assert float(theory.interclass_energy_fraction("tanh", 0.0)) == pytest.approx(1.0)  # sech²(0) = 1


def test_energy_fraction_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown activation"):
        theory.interclass_energy_fraction("swish", 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        theory.interclass_energy_fraction("tanh", -1.0)
    with pytest.raises(ValueError, match="even"):
        theory.interclass_energy_fraction("tanh", 1.0, nodes=7)


# ----------------------------------------------------------------------------- metrics
def _direct_cka(k1, k2):
    n = k1.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    kc, lc = h @ k1 @ h, h @ k2 @ h
    return (kc * lc).sum() / np.linalg.norm(kc) / np.linalg.norm(lc)


def test_kernel_alignment_matches_direct_formula_and_cka():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20, 7, generator=g, dtype=torch.float64)
    y = torch.randn(3, 20, 4, generator=g, dtype=torch.float64)
    ka = geom.kernel_alignment(geom.gram(x), geom.gram(y))
    for e in range(3):
        assert float(ka[e]) == pytest.approx(_direct_cka(geom.gram(x[e]).numpy(), geom.gram(y[e]).numpy()), rel=1e-10)
    assert torch.allclose(geom.linear_cka(x, y), ka, rtol=1e-10)


def test_centred_alignment_ignores_offsets_rotations_and_scale():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    assert float(geom.linear_cka(x, 3.0 * x @ q + 2.0)) == pytest.approx(1.0, rel=1e-12)
    assert float(geom.kernel_alignment(geom.gram(x), geom.gram(x + 3.0), centered=False)) < 0.5


def test_kernel_alignment_rejects_constant_representation():
    with pytest.raises(ValueError, match="undefined"):
        geom.kernel_alignment(torch.ones(4, 4), torch.eye(4))
    with pytest.raises(ValueError, match="same samples"):
        geom.kernel_alignment(torch.eye(4), torch.eye(5))


def _cube_reps(linear: bool, samples: int = 5, noise: float = 0.05, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    latents = tasks.cube_conditions(3)
    if linear:  # each latent along its own random direction: perfectly parallel, abstract
        means = latents @ torch.randn(3, 20, generator=g, dtype=torch.float64)
    else:  # a random vector per condition: no abstraction
        means = torch.randn(8, 20, generator=g, dtype=torch.float64) * 2
    cond = torch.arange(8).repeat_interleave(samples)
    reps = means[cond] + noise * torch.randn(len(cond), 20, generator=g, dtype=torch.float64)
    return reps, cond, latents, means


def test_ccgp_and_ps_on_factorised_and_random_codes():
    reps, cond, latents, means = _cube_reps(linear=True)
    assert float(geom.ccgp(reps, cond, latents[:, 0], held_out=1)) == 1.0
    assert float(geom.parallelism_score(means, latents[:, 0])) == pytest.approx(1.0)
    rand_ps = [float(geom.parallelism_score(_cube_reps(linear=False, seed=s)[3], latents[:, 0])) for s in range(10)]
    assert np.mean(rand_ps) < 0.5


def test_parallelism_score_equals_brute_force():
    g = torch.Generator().manual_seed(3)
    means = torch.randn(2, 8, 6, generator=g, dtype=torch.float64)
    dich = tasks.cube_conditions(3)[:, 1]
    pos, neg = [i for i in range(8) if dich[i] > 0], [i for i in range(8) if dich[i] < 0]
    for e in range(2):
        best = -2.0
        for perm in itertools.permutations(neg):
            v = [(means[e, p] - means[e, n]).numpy() for p, n in zip(pos, perm)]
            v = [u / np.linalg.norm(u) for u in v]
            best = max(best, np.mean([v[i] @ v[j] for i, j in itertools.combinations(range(4), 2)]))
        assert float(geom.parallelism_score(means, dich)[e]) == pytest.approx(best, rel=1e-10)


def test_ccgp_holds_out_conditions_not_samples():
    # a code that separates latent 0 only by a context-specific direction: samples of a seen condition are easy,
    # unseen conditions are not, so CCGP must be well below 1 while a sample split would give 1
    g = torch.Generator().manual_seed(4)
    latents = tasks.cube_conditions(3)
    directions = torch.randn(4, 30, generator=g, dtype=torch.float64)
    context = (latents[:, 1] > 0).long() * 2 + (latents[:, 2] > 0).long()
    means = latents[:, :1] * directions[context]
    cond = torch.arange(8).repeat_interleave(6)
    reps = means[cond] + 0.01 * torch.randn(len(cond), 30, generator=g, dtype=torch.float64)
    assert float(geom.ccgp(reps, cond, latents[:, 0], held_out=1)) < 0.9


def test_metrics_reject_bad_dichotomies():
    reps, cond, latents, means = _cube_reps(linear=True)
    with pytest.raises(ValueError, match="halves"):
        geom.parallelism_score(means, torch.tensor([1, 1, 1, 1, 1, -1, -1, -1]))
    with pytest.raises(ValueError, match="held_out"):
        geom.ccgp(reps, cond, latents[:, 0], held_out=4)
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        geom.ccgp(reps, cond, torch.zeros(8))


# ----------------------------------------------------------------------------- data
@pytest.mark.parametrize("alignment", [0.1, 0.3, 0.5, 0.7, 1.0])
def test_cube_task_has_the_prescribed_alignment(alignment):
    t = tasks.latent_cube_task(alignment, generator=torch.Generator().manual_seed(0), noise=0.3)
    measured = geom.kernel_alignment(geom.gram(t.means), geom.gram(t.latents[:, list(t.targets)]))
    assert float(measured) == pytest.approx(alignment, rel=1e-9)
    assert torch.allclose(t.means.norm(dim=1), torch.full((8,), math.sqrt(64.0), dtype=t.means.dtype))
    assert t.x.shape == (8 * 8, 64) and t.y.shape == (64, 2)
    assert torch.equal(t.y, t.latents[t.condition][:, [0, 1]])


def test_cube_weight_inverts_alignment():
    for a in (0.05, 0.4, 0.9):
        assert tasks.cube_alignment(tasks.cube_weight(a, 2, 5), 2, 5) == pytest.approx(a)
    with pytest.raises(ValueError, match="alignment"):
        tasks.cube_weight(0.0, 2, 5)
    with pytest.raises(ValueError, match="targets"):
        tasks.latent_cube_task(0.5, targets=(0, 5), generator=torch.Generator())


def test_unstructured_dichotomy_is_orthogonal_and_balanced():
    d = tasks.unstructured_dichotomy(16, 40, torch.Generator().manual_seed(0))
    assert torch.allclose(d.x @ d.x.T, 40.0 * torch.eye(16, dtype=d.x.dtype), atol=1e-10)
    assert float(d.y.sum()) == 0.0 and set(d.y.flatten().tolist()) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="even"):
        tasks.unstructured_dichotomy(15, 40, torch.Generator())


# ----------------------------------------------------------------------------- experiment
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_first_step_fraction_equals_preactivation_formula(activation):
    # for orthogonal inputs the share is (Σf′)²/(PΣf′²) of the neuron's pre-activations (module theory);
    # with a negligible output the residual is exactly the target
    d = tasks.unstructured_dichotomy(16, 64, torch.Generator().manual_seed(2))
    measured = experiment.first_step_fraction(d.x, d.y, activation, [0.5, 2.0], width=32, output_scale=1e-6, seed=7)
    net = experiment.build(activation, 64, 32, 1, 2, output_scale=1e-6, seed=7,
                           first_layer_scale=torch.tensor([0.5, 2.0]).sqrt())
    z = (net.weights[0].detach().double() @ d.x.T)  # (members, width, P)
    fp = torch.from_numpy(theory.DERIVATIVES[activation](z.numpy()))
    direct = (fp.sum(-1) ** 2 / (16 * fp.pow(2).sum(-1))).mean(-1)
    assert measured == pytest.approx(direct.numpy(), abs=2e-4)
