"""The Ornstein–Uhlenbeck noise against its formulas (mean reversion, variance, autocorrelation), one
process per member: per-member parameters and resets, a member's path a function of its own seed, and
exact continuation after restoring the state variables."""

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
    noise.state.assign(x0[None])  # the member axis of a single process: [1, d]
    path = run(noise, 10)
    assert path.shape == (10, 3)
    expected = np.stack([(0.8 ** (t + 1)) * x0 for t in range(10)])
    np.testing.assert_allclose(path, expected, rtol=1e-5)


def test_mean_reversion_and_growing_variance_match_the_formulas():
    theta, sigma, x0, steps = 0.15, 0.3, 2.0, 12
    noise = OrnsteinUhlenbeckNoise(PROCESSES, damping=theta, stddev=sigma, seed=1)
    noise.state.assign(tf.fill([1, PROCESSES], x0))
    path = run(noise, steps)
    for t in range(steps):  # after t + 1 steps
        decay = (1 - theta) ** (t + 1)
        mean = decay * x0
        variance = sigma**2 * (1 - decay**2) / (1 - (1 - theta) ** 2)
        standard_error = np.sqrt(variance / PROCESSES)
        assert abs(path[t].mean() - mean) < 4 * standard_error
        assert path[t].var() == pytest.approx(variance, rel=4 * np.sqrt(2 / PROCESSES))


def test_each_member_reverts_with_its_own_damping_and_stddev():
    """Three members with their own θ and σ, from x_0 = 2: member k's mean (1 − θ_k)^t·x_0 and variance
    σ_k²(1 − (1 − θ_k)^2t)/(1 − (1 − θ_k)²) after t steps (4 standard errors)."""
    thetas, sigmas, x0, steps = [0.05, 0.3, 1.0], [0.5, 0.1, 0.2], 2.0, 6
    noise = OrnsteinUhlenbeckNoise(PROCESSES, thetas, sigmas, seed=[4, 5, 6], members=3)
    noise.state.assign(tf.fill([3, PROCESSES], x0))
    path = run(noise, steps)
    assert path.shape == (steps, 3, PROCESSES)
    for k, (theta, sigma) in enumerate(zip(thetas, sigmas, strict=True)):
        for t in range(steps):
            decay = (1 - theta) ** (t + 1)
            variance = sigma**2 * (1 - decay**2) / (1 - (1 - theta) ** 2)
            assert abs(path[t, k].mean() - decay * x0) < 4 * np.sqrt(variance / PROCESSES)
            assert path[t, k].var() == pytest.approx(variance, rel=4 * np.sqrt(2 / PROCESSES))


def test_stationary_variance_and_autocorrelation():
    theta, sigma = 0.15, 0.2
    noise = OrnsteinUhlenbeckNoise(PROCESSES, damping=theta, stddev=sigma, seed=2)
    path = run(noise, 120)  # (1 − θ)^(2·100) ≈ 1e-14: x_0 = 0 is forgotten by step 100
    stationary = ou_stationary_variance(theta, sigma)
    assert stationary == pytest.approx(sigma**2 / (1 - (1 - theta) ** 2))
    assert isinstance(noise.stationary_variance, float)
    assert noise.stationary_variance == pytest.approx(stationary)
    tolerance = 4 * np.sqrt(2 / PROCESSES)
    assert path[100:].var(axis=1).mean() == pytest.approx(stationary, rel=tolerance)
    # x_{t+1} = (1 − θ)x_t + σε_t: the lag-1 correlation at stationarity is 1 − θ.
    correlation = np.mean(path[100:-1] * path[101:]) / np.mean(path[100:] ** 2)
    assert correlation == pytest.approx(1 - theta, abs=4 / np.sqrt(PROCESSES))


def test_stationary_variance_per_member_and_broadcast_parameters():
    noise = OrnsteinUhlenbeckNoise(2, [0.1, 0.5], 0.3, seed=[1, 2], members=2)
    np.testing.assert_allclose(noise.damping, [0.1, 0.5])
    np.testing.assert_allclose(noise.stddev, [0.3, 0.3])  # a float is every member's
    np.testing.assert_allclose(noise.stationary_variance, [0.09 / (1 - 0.81), 0.09 / (1 - 0.25)])


def test_reset_returns_to_zero_and_the_first_step_has_variance_sigma_squared():
    noise = OrnsteinUhlenbeckNoise(PROCESSES, damping=0.1, stddev=0.5, seed=3)
    run(noise, 20)
    noise.reset()
    np.testing.assert_array_equal(noise.state.numpy(), 0.0)
    first = noise().numpy()
    assert first.var() == pytest.approx(0.25, rel=4 * np.sqrt(2 / PROCESSES))


def test_reset_with_a_mask_resets_only_the_members_whose_episodes_ended():
    noise = OrnsteinUhlenbeckNoise(4, 0.2, 1.0, seed=[1, 2, 3, 4], members=4)
    run(noise, 3)
    before = noise.state.numpy().copy()
    assert np.all(before != 0.0)
    noise.reset(np.array([False, True, False, True]))
    np.testing.assert_array_equal(noise.state.numpy()[[1, 3]], 0.0)
    np.testing.assert_array_equal(noise.state.numpy()[[0, 2]], before[[0, 2]])
    # The same inside a compiled step, with a tensor mask.
    tf.function(lambda mask: noise.reset(mask), jit_compile=True)(tf.constant([True, False, False, False]))
    np.testing.assert_array_equal(noise.state.numpy()[0], 0.0)
    np.testing.assert_array_equal(noise.state.numpy()[2], before[2])
    with pytest.raises(ValueError, match="mask"):
        noise.reset([True, False])


def test_a_members_path_is_its_own_alone_or_in_a_population_and_compiled():
    """Member 2 of a population (its own θ, σ and seed) follows the path of a single process with the
    same θ, σ and seed, resets included: bit for bit in the same mode (eager or compiled); eager
    against compiled up to float32 rounding of x ← (1 − θ)x + σε (XLA fuses it; ε is the same)."""
    paths = {}
    for compiled in (False, True):
        population = OrnsteinUhlenbeckNoise(
            3, [0.1, 0.2, 0.3], [1.0, 0.5, 0.25], seed=[10, 11, 12], members=3
        )
        single = OrnsteinUhlenbeckNoise(3, 0.3, 0.25, seed=12)
        steps = [tf.function(n, jit_compile=True) if compiled else n for n in (population, single)]
        for noise, step in zip((population, single), steps, strict=True):
            path = [step().numpy() for _ in range(5)]
            noise.reset(np.array([False, False, True]) if noise is population else None)
            paths[compiled, noise is population] = np.stack(path + [step().numpy() for _ in range(3)])
        np.testing.assert_array_equal(paths[compiled, True][:, 2], paths[compiled, False])
        assert not np.any(paths[compiled, True][:, 0] == paths[compiled, True][:, 1])  # their own ε
    np.testing.assert_allclose(paths[True, False], paths[False, False], rtol=1e-6, atol=1e-7)
    assert np.mean(np.abs(paths[False, False])) > 0.05


def test_checkpoint_continues_the_same_sequence(tmp_path):
    noise = OrnsteinUhlenbeckNoise(4, damping=0.3, stddev=0.5, seed=4)
    run(noise, 5)
    path = tf.train.Checkpoint(noise=noise).write(str(tmp_path / "ou"))
    expected = run(noise, 5)
    fresh = OrnsteinUhlenbeckNoise(4, damping=0.3, stddev=0.5, seed=99)
    tf.train.Checkpoint(noise=fresh).read(path).assert_consumed()
    np.testing.assert_array_equal(run(fresh, 5), expected)


def test_a_member_restored_from_its_state_slices_continues_exactly():
    population = OrnsteinUhlenbeckNoise(3, [0.1, 0.4], 0.5, seed=[7, 8], members=2, name="ou_noise")
    run(population, 4)
    state = population.state_variables()
    assert set(state) == {"ou_noise/state", "ou_noise/keys", "ou_noise/counters"}
    assert [tuple(v.shape) for v in state.values()] == [(2, 3), (2,), (2,)]
    saved = {name: variable.numpy()[1] for name, variable in state.items()}
    expected = run(population, 4)[:, 1]
    restored = OrnsteinUhlenbeckNoise(3, 0.4, 0.5, seed=0)  # member 1's θ and σ, another seed
    for name, variable in restored.state_variables().items():
        variable[0].assign(saved[name])
    np.testing.assert_array_equal(run(restored, 4), expected)


@pytest.mark.parametrize("damping, stddev", [(0.0, 0.2), (1.5, 0.2), (0.1, -1.0)])
def test_rejects_parameters_without_a_stationary_process(damping, stddev):
    with pytest.raises(ValueError, match="OU"):
        OrnsteinUhlenbeckNoise(2, damping=damping, stddev=stddev, seed=0)
    # Per member: one bad member is enough.
    with pytest.raises(ValueError, match="OU .*member 1"):
        OrnsteinUhlenbeckNoise(2, damping=[0.5, damping], stddev=[0.1, stddev], seed=[0, 1], members=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"damping": [0.1, 0.2], "stddev": 0.1, "seed": [0, 1, 2], "members": 3},  # 2 dampings for 3
        {"damping": 0.1, "stddev": 0.1, "seed": 0, "members": 2},  # one seed for 2 members
        {"damping": 0.1, "stddev": 0.1, "seed": [0, 1]},  # seeds without members
        {"damping": 0.1, "stddev": 0.1, "seed": [0], "members": 0},
    ],
)
def test_rejects_parameters_that_do_not_fit_the_members(kwargs):
    with pytest.raises(ValueError):
        OrnsteinUhlenbeckNoise(2, **kwargs)
