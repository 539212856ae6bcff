import math

import pytest
import torch

from phenomena.metrics import active_neurons, fourier_power, neuron_fourier_power, top_frequency_fraction


def wave(p: int, k: int, phase: float = 0.0) -> torch.Tensor:
    x = torch.arange(p, dtype=torch.float64)
    return torch.cos(2 * math.pi * k * x / p + phase)


def test_pure_cosine_has_all_power_at_its_frequency():
    p, k = 23, 5
    power = fourier_power(wave(p, k, phase=0.7) + 3.0)  # the constant offset is left out
    assert power.shape == (11,)
    assert int(power.argmax()) + 1 == k
    fraction, top = top_frequency_fraction(power)
    assert float(fraction) == pytest.approx(1.0, abs=1e-12) and int(top) == k


def test_parseval():
    v = torch.randn(31, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert float(fourier_power(v).sum()) == pytest.approx(31 * float(((v - v.mean()) ** 2).sum()), rel=1e-10)


def test_neuron_spectrum_adds_the_operands():
    p = 13
    w = torch.stack([torch.cat([wave(p, 2), 0.5 * wave(p, 2, 1.0)]), torch.cat([wave(p, 3), wave(p, 6)])])
    power = neuron_fourier_power(w, p)
    assert power.shape == (2, 6)
    fraction, top = top_frequency_fraction(power)
    assert torch.allclose(fraction[0], torch.tensor(1.0, dtype=torch.float64)) and int(top[0]) == 2
    assert float(fraction[1]) == pytest.approx(0.5)  # two equal waves at k = 3 and k = 6


def test_white_noise_is_not_sparse():
    power = fourier_power(torch.randn(400, 97, generator=torch.Generator().manual_seed(1)))
    fraction, _ = top_frequency_fraction(power)
    assert float(fraction.median()) < 0.15  # a pure wave has 1; the mean power share is 2/(p-1) ≈ 0.02


def test_active_neurons_and_errors():
    assert active_neurons(torch.tensor([[1.0, 0.05, 0.5]])).tolist() == [[True, False, True]]
    with pytest.raises(ValueError, match="odd length"):
        fourier_power(torch.zeros(10))
    with pytest.raises(ValueError, match="multiple of p"):
        neuron_fourier_power(torch.zeros(3, 20), 7)
