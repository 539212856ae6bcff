"""The ensemble engine: every member trains exactly as it would alone (CPU, float64 tolerance)."""

import copy

import pytest
import torch
from torch import nn

from phenomena import ensemble
from phenomena.ensemble import DivergenceError
from phenomena.models import MLP, MLPConfig

DT = torch.float64


def data(n=32, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=DT), torch.randn(n, 1, generator=g, dtype=DT)


def small(gen: torch.Generator) -> nn.Module:
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)).to(DT)


def mse(pred, y):
    return (pred - y).pow(2).mean(dim=tuple(range(1, pred.dim())))


def reference(model, make_opt, x, y, steps):
    opt = make_opt(model.parameters())
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return losses, model


CASES = [
    ("sgd", lambda p, lr: ensemble.SGD(p, lr), lambda p, lr: torch.optim.SGD(p, lr=lr)),
    ("momentum+wd", lambda p, lr: ensemble.SGD(p, lr, momentum=0.9, weight_decay=1e-2),
     lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=1e-2)),
    ("nesterov", lambda p, lr: ensemble.SGD(p, lr, momentum=0.8, nesterov=True),
     lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.8, nesterov=True)),
    ("adam", lambda p, lr: ensemble.Adam(p, lr, weight_decay=1e-3),
     lambda p, lr: torch.optim.Adam(p, lr=lr, weight_decay=1e-3)),
    ("adamw", lambda p, lr: ensemble.AdamW(p, lr, weight_decay=0.1),
     lambda p, lr: torch.optim.AdamW(p, lr=lr, weight_decay=0.1)),
]


@pytest.mark.parametrize("name, ours, theirs", CASES, ids=[c[0] for c in CASES])
def test_vmap_member_matches_torch_optim_alone(name, ours, theirs):
    x, y = data()
    members = ensemble.from_seeds(small, [0, 1, 2])
    lrs = torch.tensor([0.01, 0.03, 0.05], dtype=DT)
    ens = ensemble.VmapEnsemble(copy.deepcopy(members))
    opt = ours(ens.parameters(), lrs)
    hist = ensemble.fit(opt, lambda: mse(ens(x), y), steps=25)
    for e in range(3):
        lr_e = lrs[e].item()
        ref_losses, ref_model = reference(copy.deepcopy(members[e]), lambda p, lr=lr_e: theirs(p, lr), x, y, 25)
        assert torch.allclose(hist.loss[:25, e], torch.tensor(ref_losses, dtype=DT), rtol=1e-10, atol=1e-12)
        trained = ens.member(e, members[e])
        for a, b in zip(trained.parameters(), ref_model.parameters()):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_native_mlp_member_matches_torch_optim_adam():
    x, y = data()
    cfg = MLPConfig([5, 16, 1], activation="tanh", members=2, dtype=DT)
    net = MLP(cfg, generator=torch.Generator().manual_seed(3))
    w0 = [w[1].detach().clone() for w in net.weights]
    opt = ensemble.Adam(net.parameters(), torch.tensor([1e-3, 1e-2], dtype=DT))
    ensemble.fit(opt, lambda: mse(net(x), y), steps=20)
    # the same member as a plain module trained by torch.optim.Adam
    params = [nn.Parameter(w.clone()) for w in w0]
    ref = torch.optim.Adam(params, lr=1e-2)
    for _ in range(20):
        ref.zero_grad()
        h = torch.tanh(x @ params[0].T)
        ((h @ params[1].T - y).pow(2).mean()).backward()
        ref.step()
    assert torch.allclose(net.weights[0][1], params[0], rtol=1e-9, atol=1e-12)


def test_divergent_member_is_masked_and_reported_not_poisoning_others():
    x, y = data()
    members = ensemble.from_seeds(small, [0, 1])
    ens = ensemble.VmapEnsemble(copy.deepcopy(members))
    opt = ensemble.Adam(ens.parameters(), torch.tensor([1e-2, 1e6], dtype=DT))
    blow_up = torch.tensor([1.0, float("inf")], dtype=DT)  # member 1's loss is infinite from step 0
    hist = ensemble.fit(opt, lambda: mse(ens(x), y) * blow_up, steps=10, on_divergence="mask")
    assert hist.diverged.tolist() == [False, True] and hist.diverged_at.tolist() == [-1, 0]
    ref_losses, _ = reference(copy.deepcopy(members[0]), lambda p: torch.optim.Adam(p, lr=1e-2), x, y, 10)
    assert torch.allclose(hist.loss[:10, 0], torch.tensor(ref_losses, dtype=DT), rtol=1e-10)
    ens2 = ensemble.VmapEnsemble(copy.deepcopy(members))
    with pytest.raises(DivergenceError, match=r"became inf at step 0 \(member 1\)"):
        ensemble.fit(ensemble.SGD(ens2.parameters(), 0.1), lambda: mse(ens2(x), y) * blow_up, steps=3)


def test_per_member_hyperparameters_validate():
    net = MLP(MLPConfig([3, 4, 1], members=3))
    with pytest.raises(ValueError, match="one value per member"):
        ensemble.SGD(net.parameters(), [0.1, 0.2])
    with pytest.raises(ValueError, match="non-negative"):
        ensemble.Adam(net.parameters(), 0.1, weight_decay=[-1.0, 0, 0])
    with pytest.raises(ValueError, match="ensemble axis"):
        ensemble.SGD([nn.Parameter(torch.zeros(3, 2)), nn.Parameter(torch.zeros(2))], 0.1)


def test_scale_members_and_from_seeds():
    net = MLP(MLPConfig([3, 4, 1], members=2), generator=torch.Generator().manual_seed(0))
    before = net.weights[0].detach().clone()
    ensemble.scale_members(net, [1.0, 3.0])
    assert torch.allclose(net.weights[0][1], 3 * before[1]) and torch.allclose(net.weights[0][0], before[0])
    a, b = ensemble.from_seeds(small, [5, 5])
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_compiled_falls_back_when_compilation_fails():
    def fn(x):
        return x + 1

    broken = ensemble.compiled(fn, backend="no-such-backend")
    assert broken(torch.tensor(1.0)).item() == 2.0
    assert broken.fallback_reason() is not None
    assert ensemble.compiled(fn, enabled=False) is fn


def _relu_net(members: int = 3, seed: int = 3) -> MLP:
    """A float64 ReLU MLP ensemble with biases: the one-node path of ``MLP`` that the engine's tests train."""
    return MLP(MLPConfig([5, 16, 16, 1], bias=True, members=members, dtype=DT),
               generator=torch.Generator().manual_seed(seed))


def test_sgd_member_dying_mid_run_is_frozen_while_the_other_matches_torch_sgd():
    # member 1's loss turns infinite at the 6th evaluation. Until then the step takes the all-alive
    # fast path; afterwards the masked one, which must keep member 1's weights finite and frozen
    # (its gradients are NaN: 0 * inf) and leave member 0 on torch.optim.SGD's trajectory.
    x, y = data()
    net = _relu_net(members=2)
    start = [p.detach().clone() for p in net.parameters()]
    calls = []

    def loss():
        calls.append(None)
        blow_up = torch.tensor([1.0, float("inf") if len(calls) > 5 else 1.0], dtype=DT)
        return (net(x) - y).pow(2).mean(dim=(1, 2)) * blow_up

    opt = ensemble.SGD(net.parameters(), 0.05)
    hist = ensemble.fit(opt, loss, steps=40, on_divergence="mask",
                        record={"w": lambda: net.weights[1][1].clone()})
    assert hist.diverged.tolist() == [False, True] and hist.diverged_at[1] == 5
    frozen = hist.recorded["w"][5:]
    assert bool(torch.isfinite(frozen).all()) and bool((frozen == frozen[0]).all())
    solo = [p[0].clone().requires_grad_(True) for p in start]
    ref = torch.optim.SGD(solo, lr=0.05)
    for _ in range(40):
        ref.zero_grad()
        w1, w2, w3, b1, b2, b3 = solo  # MLP.parameters(): the weights, then the biases
        h = torch.relu(torch.relu(x @ w1.T + b1) @ w2.T + b2)
        ((h @ w3.T + b3 - y).pow(2).mean()).backward()
        ref.step()
    for ours, theirs in zip(net.parameters(), solo):
        assert torch.allclose(ours[0], theirs, rtol=1e-10, atol=1e-12)


def _needs_a_compiler() -> None:
    """torch.compile's CPU backend writes C++: without a compiler it can only fall back, so skip."""
    import shutil

    if not any(shutil.which(cc) for cc in ("c++", "g++", "clang++", "cc")):
        pytest.skip("no C++ compiler on this machine: torch.compile falls back to eager here")


def test_compiled_fit_follows_the_eager_trajectory_and_masks_a_diverged_member():
    _needs_a_compiler()
    # one graph per step (loss, gradient, momentum update); member 2's loss is infinite from the start
    x, y = data()
    blow_up = torch.tensor([1.0, 1.0, float("inf")], dtype=DT)
    lrs = torch.tensor([0.02, 0.05, 0.05], dtype=DT)
    runs = {}
    for compile in (False, True):
        net = _relu_net()
        opt = ensemble.SGD(net.parameters(), lrs, momentum=0.9, weight_decay=1e-3)
        hist = ensemble.fit(opt, lambda net=net: mse(net(x), y) * blow_up, steps=30, on_divergence="mask",
                            compile=compile)
        runs[compile] = hist, [p.detach().clone() for p in net.parameters()]
    (eager, p_eager), (comp, p_comp) = runs[False], runs[True]
    assert comp.compile_fallback is None, comp.compile_fallback
    assert comp.diverged_at.tolist() == eager.diverged_at.tolist() == [-1, -1, 0]
    # float64: the compiler reorders sums, so agreement to rounding, not bit for bit
    assert torch.allclose(comp.loss[:, :2], eager.loss[:, :2], rtol=1e-10, atol=1e-12)
    start = list(_relu_net().parameters())
    for a, b, s in zip(p_comp, p_eager, start):
        assert torch.allclose(a[:2], b[:2], rtol=1e-10, atol=1e-12)
        assert torch.equal(a[2], s[2].detach())  # the diverged member never moved


def test_compiled_fit_raises_on_divergence_and_falls_back_when_the_compiler_fails(monkeypatch):
    x, y = data()
    blow_up = torch.tensor([1.0, float("inf"), 1.0], dtype=DT)
    net = _relu_net()
    with pytest.raises(DivergenceError, match=r"became inf at step 0 \(member 1\)"):
        ensemble.fit(ensemble.SGD(net.parameters(), 0.05), lambda: mse(net(x), y) * blow_up, steps=5, compile=True)

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    runs = []
    for compile in (False, True):
        net = _relu_net()
        hist = ensemble.fit(ensemble.SGD(net.parameters(), 0.05), lambda net=net: mse(net(x), y), steps=10,
                            compile=compile)
        runs.append((hist, list(net.parameters())))
    (eager, p_eager), (fallback, p_fallback) = runs
    assert "no compiler here" in fallback.compile_fallback
    assert torch.allclose(fallback.loss, eager.loss, rtol=1e-12, atol=0)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(p_fallback, p_eager))


def test_compiled_steps_get_one_code_object_per_kind_of_loss():
    # torch.compile's cache and recompile limit are per code object: one shared by every fit would
    # let a process that fits many kinds of loss silently fall back to eager after the eighth
    net = _relu_net()
    opt = ensemble.SGD(net.parameters(), 0.1)
    x, y = data()

    def first():
        return mse(net(x), y)

    def second():
        return 2 * mse(net(x), y)

    code = ensemble._step_function(opt, first).__code__
    assert ensemble._step_function(ensemble.SGD(net.parameters(), 0.2), first).__code__ is code
    assert ensemble._step_function(opt, second).__code__ is not code
    assert ensemble._step_function(ensemble.Adam(net.parameters(), 0.1), first).__code__ is not code
