"""Per-example gradients: the MLP outer-product route against torch.func vmap(grad); coherence statistics."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from phenomena.metrics import gradients as gr
from phenomena.models import MLP, MLPConfig
from phenomena.theory import coherence as th


def _setup(parameterization="standard", bias=False, members=2, n=9):
    gen = torch.Generator().manual_seed(0)
    model = MLP(MLPConfig([5, 7, 6, 4], members=members, parameterization=parameterization, bias=bias,
                          dtype=torch.float64), generator=gen)
    x = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (members, n), generator=gen)
    return model, x, y


def _vmap_grads(model, x, y, member):
    """Per-example gradients of one member, flattened in the order weights then biases, via vmap(grad)."""
    params = {k: v.detach()[member : member + 1] for k, v in model.named_parameters()}
    single = MLP(MLPConfig(model.config.widths, members=1, parameterization=model.config.parameterization,
                           bias=model.config.bias, dtype=torch.float64))

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(single, p, (xi[None],))[0], yi[None])

    chunks = list(gr.per_example_grads(loss, params, x, y[member], chunk=4))
    return torch.cat(chunks), params


@pytest.mark.parametrize("parameterization,bias", [("standard", False), ("mup", False), ("ntk", True)])
def test_outer_product_route_matches_vmap(parameterization, bias):
    model, x, y = _setup(parameterization, bias)
    fast = gr.MLPGradients.of(model, x, y)
    for e in range(2):
        g, params = _vmap_grads(model, x, y, e)
        names = list(params)
        assert torch.allclose(fast.sq_norms()[e], (g * g).sum(1))
        assert torch.allclose(fast.gram()[e], g @ g.T)
        # the per-example gradients themselves, weight by weight (names are weights.0.., then biases.0..)
        offsets, start = {}, 0
        for k in names:
            size = params[k].numel()
            offsets[k] = (start, start + size)
            start += size
        per_example = fast.group_means(torch.arange(x.shape[0]), x.shape[0])
        for layer, pe in enumerate(per_example):
            a, b = offsets[f"weights.{layer}"]
            assert torch.allclose(pe[e].reshape(x.shape[0], -1), g[:, a:b])
        total = torch.cat([t[e].flatten() for t in fast.total()] + [t[e] for t in fast.total_bias()])
        order = [f"weights.{i}" for i in range(3)] + ([f"biases.{i}" for i in range(3)] if bias else [])
        ref = torch.cat([g[:, offsets[k][0] : offsets[k][1]].sum(0) for k in order])
        assert torch.allclose(total, ref)
        stats = gr.coherence_stats([g])
        assert torch.allclose(fast.stats().m_coherence[e], stats.m_coherence)
        assert float(stats.alpha) == pytest.approx(th.alpha_of(g.numpy()))


def test_group_means_unequal_groups_and_dot():
    model, x, y = _setup(n=10)
    fast = gr.MLPGradients.of(model, x, y)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    per_example = fast.group_means(torch.arange(10), 10)
    means = fast.group_means(order, 3)
    for layer in range(3):
        for gi, part in enumerate(torch.tensor_split(order, 3)):
            assert torch.allclose(means[layer][:, gi], per_example[layer][:, part].mean(1))
    direction = [torch.randn_like(t) for t in fast.total()]
    dots = fast.dot(direction)
    flat = torch.cat([p.flatten(2) for p in per_example], dim=2)
    d = torch.cat([t.flatten(1) for t in direction], dim=1)
    assert torch.allclose(dots, (flat * d[:, None]).sum(-1))


def test_alpha_from_gram_and_minibatch_monte_carlo():
    g = torch.randn(64, 30, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.3
    gram = g @ g.T
    a = float(gr.alpha_from_gram(gram))
    assert a == pytest.approx(th.alpha_of(g.numpy()))
    est = float(gr.minibatch_alpha_monte_carlo(gram, 16, 20_000, generator=torch.Generator().manual_seed(3)))
    assert est == pytest.approx(float(th.minibatch_alpha(a, 16)), rel=0.02)


def test_chunking_does_not_change_the_answer_and_bad_input():
    model, x, y = _setup()
    g1, _ = _vmap_grads(model, x, y, 0)
    params = {k: v.detach()[:1] for k, v in model.named_parameters()}
    single = MLP(MLPConfig(model.config.widths, members=1, dtype=torch.float64))

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(single, p, (xi[None],))[0], yi[None])

    g2 = torch.cat(list(gr.per_example_grads(loss, params, x, y[0], chunk=100)))
    assert torch.allclose(g1, g2)
    with pytest.raises(ValueError, match="chunk"):
        next(gr.per_example_grads(loss, params, x, y[0], chunk=0))
    with pytest.raises(ValueError, match="targets must be"):
        gr.MLPGradients.of(model, x, y[:, :3])
