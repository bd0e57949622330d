"""Environments: make_env's refusals, and the synthetic task against its definition."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from smoothie_tf import envs
from smoothie_tf.envs import EnvError, make_env


def test_bandit_is_registered_and_passes_gymnasiums_checker():
    env = gym.make(envs.BANDIT_ID)
    check_env(env.unwrapped)
    assert env.action_space.low[0] == -2.0 and env.action_space.high[0] == 2.0


def test_bandit_reward_and_one_step_episodes():
    env = make_env(envs.BANDIT_ID, seed=0)
    observation, _ = env.reset(seed=1)
    np.testing.assert_array_equal(observation, [1.0])
    for a, expected in [(0.0, 0.5 + np.exp(-(1.5**2) / 0.18)), (1.5, 1.0 + 0.5 * np.exp(-(1.5**2) / 0.18))]:
        env.reset()
        observation, reward, terminated, truncated, _ = env.step(np.array([a], np.float32))
        assert reward == pytest.approx(expected, rel=1e-6)
        assert terminated and not truncated
    # the global optimum is the 1.5 bump, the local one at 0
    grid = np.linspace(-2, 2, 4001)
    rewards = envs.bump_reward(grid)
    assert grid[np.argmax(rewards)] == pytest.approx(1.5, abs=1e-2)


def test_bandit_bumps_are_overridable():
    env = gym.make(envs.BANDIT_ID, bumps=[(2.0, -1.0, 0.5)])
    env.reset(seed=0)
    _, reward, *_ = env.step(np.array([-1.0], np.float32))
    assert reward == pytest.approx(2.0)


@pytest.mark.parametrize("variance", [0.01, 0.3, 1.0])
def test_smoothed_reward_matches_numerical_integration(variance):
    for a in (-0.7, 0.0, 0.9, 1.5):
        x = np.linspace(a - 12 * np.sqrt(variance), a + 12 * np.sqrt(variance), 400_001)
        density = np.exp(-((x - a) ** 2) / (2 * variance)) / np.sqrt(2 * np.pi * variance)
        integral = np.trapezoid(envs.bump_reward(x) * density, x)
        assert envs.smoothed_reward(a, variance) == pytest.approx(integral, rel=1e-7)


def test_smoothing_moves_the_optimum_of_the_bandit():
    # With enough variance the smoothed reward has no local optimum near 0: the gradient at 0
    # points toward the global bump. This is what lets Smoothie escape.
    grid = np.linspace(-2, 2, 2001)
    smoothed = envs.smoothed_reward(grid, 0.5)
    assert grid[np.argmax(smoothed)] > 0.8
    assert envs.smoothed_reward(0.01, 0.5) > envs.smoothed_reward(0.0, 0.5)
    assert envs.bump_reward(0.01) < envs.bump_reward(0.0)  # unsmoothed: 0 is a local optimum


def test_make_env_refuses_unknown_and_discrete():
    with pytest.raises(EnvError, match="unknown environment 'NoSuchEnv-v0'"):
        make_env("NoSuchEnv-v0")
    with pytest.raises(EnvError, match="CartPole-v1 has a Discrete action space"):
        make_env("CartPole-v1")


def test_hopper_observations_are_float32_and_seeded_resets_repeat():
    env = make_env("Hopper-v4")
    first, _ = env.reset(seed=11)
    assert first.dtype == np.float32 and first.shape == (11,)
    again, _ = env.reset(seed=11)
    np.testing.assert_array_equal(first, again)
    assert env.action_space.shape == (3,)
