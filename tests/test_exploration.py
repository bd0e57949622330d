"""The Ornstein–Uhlenbeck noise against its formulas: mean reversion, variance, autocorrelation."""

import numpy as np
import pytest
import tensorflow as tf

from smoothie_tf.exploration import OrnsteinUhlenbeckNoise, ou_stationary_variance

# Many independent dimensions are many independent processes: ensemble statistics in one run.
PROCESSES = 20_000


def run(noise: OrnsteinUhlenbeckNoise, steps: int) -> np.ndarray:
    return np.stack([noise().numpy() for _ in range(steps)])


def test_without_noise_the_state_decays_geometrically():
    noise = OrnsteinUhlenbeckNoise(3, damping=0.2, stddev=0.0, seed=0)
    x0 = np.array([1.0, -2.0, 0.5], np.float32)
    noise.state.assign(x0)
    path = run(noise, 10)
    expected = np.stack([(0.8 ** (t + 1)) * x0 for t in range(10)])
    np.testing.assert_allclose(path, expected, rtol=1e-5)


def test_mean_reversion_and_growing_variance_match_the_formulas():
    theta, sigma, x0, steps = 0.15, 0.3, 2.0, 12
    noise = OrnsteinUhlenbeckNoise(PROCESSES, damping=theta, stddev=sigma, seed=1)
    noise.state.assign(tf.fill([PROCESSES], x0))
    path = run(noise, steps)
    for t in range(steps):  # after t + 1 steps
        decay = (1 - theta) ** (t + 1)
        mean = decay * x0
        variance = sigma**2 * (1 - decay**2) / (1 - (1 - theta) ** 2)
        standard_error = np.sqrt(variance / PROCESSES)
        assert abs(path[t].mean() - mean) < 4 * standard_error
        assert path[t].var() == pytest.approx(variance, rel=4 * np.sqrt(2 / PROCESSES))


def test_stationary_variance_and_autocorrelation():
    theta, sigma = 0.15, 0.2
    noise = OrnsteinUhlenbeckNoise(PROCESSES, damping=theta, stddev=sigma, seed=2)
    path = run(noise, 120)  # (1 − θ)^(2·100) ≈ 1e-14: x_0 = 0 is forgotten by step 100
    stationary = ou_stationary_variance(theta, sigma)
    assert stationary == pytest.approx(sigma**2 / (1 - (1 - theta) ** 2))
    assert noise.stationary_variance == pytest.approx(stationary)
    tolerance = 4 * np.sqrt(2 / PROCESSES)
    assert path[100:].var(axis=1).mean() == pytest.approx(stationary, rel=tolerance)
    # x_{t+1} = (1 − θ)x_t + σε_t: the lag-1 correlation at stationarity is 1 − θ.
    correlation = np.mean(path[100:-1] * path[101:]) / np.mean(path[100:] ** 2)
    assert correlation == pytest.approx(1 - theta, abs=4 / np.sqrt(PROCESSES))


def test_reset_returns_to_zero_and_the_first_step_has_variance_sigma_squared():
    noise = OrnsteinUhlenbeckNoise(PROCESSES, damping=0.1, stddev=0.5, seed=3)
    run(noise, 20)
    noise.reset()
    np.testing.assert_array_equal(noise.state.numpy(), 0.0)
    first = noise().numpy()
    assert first.var() == pytest.approx(0.25, rel=4 * np.sqrt(2 / PROCESSES))


def test_checkpoint_continues_the_same_sequence(tmp_path):
    noise = OrnsteinUhlenbeckNoise(4, damping=0.3, stddev=0.5, seed=4)
    run(noise, 5)
    path = tf.train.Checkpoint(noise=noise).write(str(tmp_path / "ou"))
    expected = run(noise, 5)
    fresh = OrnsteinUhlenbeckNoise(4, damping=0.3, stddev=0.5, seed=99)
    tf.train.Checkpoint(noise=fresh).read(path).assert_consumed()
    np.testing.assert_array_equal(run(fresh, 5), expected)


@pytest.mark.parametrize("damping, stddev", [(0.0, 0.2), (1.5, 0.2), (0.1, -1.0)])
def test_rejects_parameters_without_a_stationary_process(damping, stddev):
    with pytest.raises(ValueError, match="OU"):
        OrnsteinUhlenbeckNoise(2, damping=damping, stddev=stddev, seed=0)
