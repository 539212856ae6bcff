"""The small GPT ensemble, the Markov-chain language and attention entropy: what the stability chapters rely on."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from phenomena.data import markov_language
from phenomena.metrics import attention_entropy
from phenomena.models import GPT, GPTConfig, lm_loss


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tokens(batch: int = 4, t: int = 8, vocab: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(vocab, (batch, t), generator=gen(seed))


@pytest.mark.parametrize("switches", [dict(), dict(norm="post"), dict(qk_layernorm=True), dict(sigma_reparam=True)])
def test_members_are_independent_models(switches: dict) -> None:
    """Member e of an ensemble computes what a one-member GPT with member e's parameters computes."""
    cfg = dict(vocab_size=16, context=8, layers=2, heads=2, width=16, dtype=torch.float64, **switches)
    many = GPT(GPTConfig(members=3, **cfg), gen()).eval()
    one = GPT(GPTConfig(members=1, **cfg), gen(5)).eval()
    with torch.no_grad():
        for (_name, p_one), (_, p_many) in zip(one.state_dict().items(), many.state_dict().items()):
            p_one.copy_(p_many[1:2])
    x = tokens()
    assert torch.allclose(many(x)[1], one(x)[0], atol=1e-12)


def test_probes_are_causal_distributions_and_report_the_largest_logit() -> None:
    model = GPT(GPTConfig(vocab_size=16, context=8, heads=2, width=16, members=2, dtype=torch.float64), gen())
    x = tokens()
    logits, probes = model(x, probe=True)
    assert logits.shape == (2, 4, 8, 16) and probes.max_logit.shape == (2, 2, 2)
    a = probes.attention[0]
    assert a.shape == (2, 4, 2, 8, 8)
    assert torch.allclose(a.sum(-1), torch.ones(2, 4, 2, 8, dtype=torch.float64))
    assert float(a.triu(1).abs().max()) == 0.0  # no query sees a later key
    # recompute layer 0's logits by hand from the same weights
    block = model.blocks[0]
    h = block.norm1(model.token_embedding[torch.arange(2).view(-1, 1, 1), x.expand(2, -1, -1)]
                    + model.position_embedding[:, None, :8])
    q = block.attention._split(block.attention.query(h))
    k = block.attention._split(block.attention.key(h))
    raw = (q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(~torch.ones(8, 8, dtype=torch.bool).tril(), -math.inf)
    assert torch.allclose(probes.max_logit[:, 0], raw.amax(dim=(1, 3, 4)))
    assert torch.allclose(a, torch.softmax(raw, -1))


def test_qk_layernorm_bounds_the_attention_logits() -> None:
    """With unit gains, |q·k|/√d_h ≤ ‖q‖‖k‖/√d_h = √d_h: huge query weights cannot blow the logits up."""
    model = GPT(GPTConfig(vocab_size=16, context=8, heads=2, width=16, qk_layernorm=True), gen())
    free = GPT(GPTConfig(vocab_size=16, context=8, heads=2, width=16), gen())
    with torch.no_grad():
        for m in (model, free):
            m.blocks[0].attention.query.weight.mul_(1000)
    bounded = model(tokens(), probe=True)[1].max_logit[:, 0]
    assert float(bounded.max()) <= math.sqrt(8) * (1 + 1e-4)
    assert float(free(tokens(), probe=True)[1].max_logit[:, 0].max()) > 100


def test_sigma_reparam_sets_the_spectral_norm_to_gamma() -> None:
    """Ŵ = γ/σ(W)·W has spectral norm |γ| once the power iteration has converged (Zhai et al.).

    Training steps refine u, v by one power-iteration step each (the paper's recipe); how well
    that tracks a moving W is the chapter's measurement, not pinned here.
    """
    model = GPT(GPTConfig(vocab_size=16, context=8, width=16, sigma_reparam=True, members=2), gen())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    lang = markov_language(16, 3, generator=gen(2))
    u_before = model.linears()[0].u.clone()
    for _ in range(10):
        x = lang.sample(8, 9, gen(3))
        loss, _ = lm_loss(model(x[:, :-1]), x[:, 1:])
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    assert not torch.equal(model.linears()[0].u, u_before)  # training forwards refine the singular vectors
    for layer in model.linears():
        layer.power_iterate(500)
        sigma = torch.linalg.matrix_norm(layer.effective_weight().detach(), ord=2)
        assert torch.allclose(sigma, layer.gamma.detach().abs(), rtol=1e-4)
    assert any(float((layer.gamma.detach() - 1).abs().max()) > 1e-2 for layer in model.linears())  # γ is trained


def test_lm_loss_is_cross_entropy_plus_z_loss() -> None:
    logits = torch.randn(2, 3, 5, 7, generator=gen(), dtype=torch.float64)
    y = torch.randint(7, (3, 5), generator=gen(1))
    ce = torch.stack([F.cross_entropy(logits[e].reshape(-1, 7), y.reshape(-1)) for e in range(2)])
    loss, log_z = lm_loss(logits, y)
    assert torch.allclose(loss, ce)
    lz = torch.logsumexp(logits, -1)
    assert torch.allclose(log_z, lz.flatten(1).mean(1))
    assert torch.allclose(lm_loss(logits, y, z_loss=1e-2)[0], ce + 1e-2 * (lz**2).flatten(1).mean(1))
    with pytest.raises(ValueError, match="z_loss"):
        lm_loss(logits, y, z_loss=-1.0)


def test_gpt_rejects_bad_configs_and_inputs() -> None:
    with pytest.raises(ValueError, match="multiple of heads"):
        GPTConfig(width=10, heads=3)
    with pytest.raises(ValueError, match="unknown norm"):
        GPTConfig(norm="sandwich")
    with pytest.raises(ValueError, match="layers"):
        GPTConfig(layers=0)
    model = GPT(GPTConfig(vocab_size=16, context=8, width=16, members=2), gen())
    with pytest.raises(ValueError, match="context"):
        model(tokens(t=9))
    with pytest.raises(ValueError, match="idx must be"):
        model(torch.zeros(3, 4, 8, dtype=torch.long))


def test_markov_language_is_a_sparse_stochastic_chain_with_its_stationary_law() -> None:
    lang = markov_language(20, 3, generator=gen(4))
    p = lang.transition
    assert torch.allclose(p.sum(1), torch.ones(20, dtype=torch.float64))
    assert ((p > 0).sum(1) == 3).all()
    assert torch.allclose(lang.stationary @ p, lang.stationary, atol=1e-12)
    assert markov_language(12, 1, generator=gen()).entropy_rate == pytest.approx(0.0, abs=1e-12)
    assert 0 < lang.entropy_rate <= math.log(3) + 1e-12  # at most log(successors) nats per token


def test_entropy_rate_is_the_true_models_cross_entropy_on_samples() -> None:
    """The loss floor is attained by the chain itself: its mean log-loss on samples → the entropy rate."""
    lang = markov_language(16, 4, generator=gen(5))
    x = lang.sample(4000, 20, gen(6))
    nll = -lang.transition[x[:, :-1], x[:, 1:]].log()
    se = float(nll.std()) / math.sqrt(nll.numel() / 20)  # rows are correlated along time; be conservative
    assert float(nll.mean()) == pytest.approx(lang.entropy_rate, abs=4 * se)
    first = torch.bincount(x[:, 0], minlength=16).double() / 4000
    assert float((first - lang.stationary).abs().max()) < 0.03  # sequences start from π (4000 draws: SE ≤ 0.008)


def test_markov_language_is_seeded_and_checks_its_arguments() -> None:
    a, b = markov_language(10, 2, generator=gen(7)), markov_language(10, 2, generator=gen(7))
    assert torch.equal(a.transition, b.transition)
    assert torch.equal(a.sample(3, 5, gen(1)), b.sample(3, 5, gen(1)))
    with pytest.raises(ValueError, match="successors"):
        markov_language(10, 11, generator=gen())
    with pytest.raises(ValueError, match="vocab_size"):
        markov_language(1, 1, generator=gen())


def test_attention_entropy_of_uniform_and_one_hot_rows() -> None:
    probs = torch.zeros(2, 3, 4, dtype=torch.float64)
    probs[0] = 0.25
    probs[1, :, 2] = 1.0
    h = attention_entropy(probs)
    assert h.shape == (2, 3)
    assert torch.allclose(h[0], torch.full((3,), math.log(4), dtype=torch.float64))
    assert torch.allclose(h[1], torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating-point"):
        attention_entropy(torch.ones(3, dtype=torch.long))


def test_share_init_gives_every_member_the_same_weights_and_power_vectors() -> None:
    model = GPT(GPTConfig(vocab_size=16, context=8, width=16, sigma_reparam=True, members=3), gen()).share_init(1)
    for t in list(model.parameters()) + list(model.buffers()):
        assert torch.equal(t[0], t[1]) and torch.equal(t[2], t[1])
    out = model.eval()(tokens())
    assert torch.equal(out[0], out[2])
    with pytest.raises(ValueError, match="member"):
        model.share_init(3)
