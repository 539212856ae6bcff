import pytest
import torch

from phenomena.data import sphere_points


def test_points_lie_on_the_sphere_of_radius_sqrt_d():
    x = sphere_points(200, 16, torch.Generator().manual_seed(0))
    assert x.shape == (200, 16) and x.dtype == torch.float64
    assert torch.allclose(x.norm(dim=1), torch.full((200,), 4.0, dtype=torch.float64), atol=1e-12)


def test_custom_radius_and_dtype():
    x = sphere_points(10, 3, torch.Generator().manual_seed(0), torch.float32, radius=2.5)
    assert x.dtype == torch.float32
    assert torch.allclose(x.norm(dim=1), torch.full((10,), 2.5), atol=1e-5)


def test_seeded_and_uniform():
    a = sphere_points(4000, 8, torch.Generator().manual_seed(3))
    b = sphere_points(4000, 8, torch.Generator().manual_seed(3))
    c = sphere_points(4000, 8, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # uniform on the sphere of radius √d: mean 0 and second moment E[x xᵀ] = I (isotropy)
    assert a.mean(0).abs().max() < 0.1
    second = a.T @ a / a.shape[0]
    assert torch.allclose(second, torch.eye(8, dtype=torch.float64), atol=0.12)


@pytest.mark.parametrize("kwargs", [{"n": 0, "d": 3}, {"n": 3, "d": 0}, {"n": 3, "d": 3, "radius": -1.0}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        sphere_points(generator=torch.Generator().manual_seed(0), **kwargs)
