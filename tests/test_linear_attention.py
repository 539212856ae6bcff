import numpy as np
import pytest
import torch

from phenomena.data import ICLTasks
from phenomena.models import LinearAttentionConfig, LinearSelfAttention
from phenomena.theory import one_step_gd_prediction


def _batch(cov="isotropic", n=20, batch=64, seed=0):
    return ICLTasks(d=5, n=n, noise=0.1, covariance=cov).sample(batch, torch.Generator().manual_seed(seed))


def test_gd_construction_predicts_one_step_gd_exactly():
    """Weights set to the GD construction give x_qᵀΓ(1/n)Σy_i x_i for any Γ, to float64 precision."""
    b = _batch("anisotropic")
    gamma = torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = LinearSelfAttention.from_preconditioner(gamma)
    pred = model.predict(b.tokens)
    for e in range(3):
        direct = torch.einsum("bi,ij,bj->b", b.x_query, gamma[e], (b.x * b.y[..., None]).mean(1))
        torch.testing.assert_close(pred[e], direct, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.preconditioner(), gamma)
    assert model.gd_residual(b.tokens).abs().max() < 1e-12


def test_predict_is_the_last_entry_of_the_full_forward_pass():
    b = _batch()
    model = LinearSelfAttention(LinearAttentionConfig(members=2, init_scale=0.5), generator=torch.Generator().manual_seed(0))
    out = model(b.tokens)
    assert out.shape == (2, 64, 21, 6)
    torch.testing.assert_close(out[..., -1, -1], model.predict(b.tokens), rtol=1e-10, atol=1e-10)


def test_preconditioner_is_the_part_odd_in_the_labels():
    """Flipping every context label flips exactly the GD part x_qᵀΓg of a random layer's prediction."""
    b = _batch(seed=3)
    model = LinearSelfAttention(LinearAttentionConfig(members=3, init_scale=0.7), generator=torch.Generator().manual_seed(2))
    flipped = b.tokens.clone()
    flipped[:, :-1, -1] *= -1
    odd = (model.predict(b.tokens) - model.predict(flipped)) / 2
    gd = one_step_gd_prediction(b.x[None], b.y[None], b.x_query[None], model.preconditioner()[:, None])
    torch.testing.assert_close(odd, gd, rtol=1e-10, atol=1e-10)
    # a random layer is not GD: the even part is of the same size
    assert model.gd_residual(b.tokens).abs().mean() > 0.1 * odd.abs().mean()


def test_zero_couplings_leaves_one_step_gd():
    b = _batch(seed=4)
    model = LinearSelfAttention(LinearAttentionConfig(members=3, init_scale=0.7), generator=torch.Generator().manual_seed(2))
    model.zero_couplings(torch.tensor([True, False, True]))
    res = model.gd_residual(b.tokens).abs().amax(1)
    assert res[0] < 1e-12 and res[2] < 1e-12 and res[1] > 1e-3
    gd = LinearSelfAttention(LinearAttentionConfig(init="gd"), generator=torch.Generator().manual_seed(0))
    assert gd.gd_residual(b.tokens).abs().max() < 1e-12


def test_members_are_independent():
    b = _batch()
    big = LinearSelfAttention(LinearAttentionConfig(members=3), generator=torch.Generator().manual_seed(5))
    one = LinearSelfAttention(LinearAttentionConfig(members=1))
    with torch.no_grad():
        one.value.copy_(big.value[1:2])
        one.key_query.copy_(big.key_query[1:2])
    torch.testing.assert_close(one.predict(b.tokens)[0], big.predict(b.tokens)[1])
    assert big.loss(b.tokens, b.y_query).shape == (3,)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="valid inits"):
        LinearAttentionConfig(init="xavier")
    with pytest.raises(ValueError, match="d must"):
        LinearAttentionConfig(d=0)
    with pytest.raises(ValueError, match="members must"):
        LinearAttentionConfig(members=0)
    with pytest.raises(ValueError, match="gamma must"):
        LinearSelfAttention.from_preconditioner(torch.zeros(2, 3))


def test_short_training_learns_the_optimal_step():
    """A few hundred Adam steps on fresh isotropic tasks bring Γ near n/(n+1+d+σ²)·I."""
    from phenomena.experiments.icl_linear_regression import train_layer

    tasks = ICLTasks(d=5, n=20, noise=0.1)
    trained = train_layer(tasks, members=2, steps=300, batch=512, lr=0.01, init_scale=0.1,
                          generator=torch.Generator().manual_seed(0))
    target = 20 / (20 + 1 + 5 + 0.1)
    assert np.allclose(np.trace(trained.gamma, axis1=1, axis2=2) / 5, target, rtol=0.05)
    assert trained.loss.shape == (301, 2)
