"""Environments: make_env's refusals, and the synthetic task against its definition."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from smoothie_tf import envs
from smoothie_tf.envs import EnvError, make_env


class SpacesEnv(gym.Env):
    """A do-nothing env with the given spaces, to test make_env's refusals."""

    def __init__(self, action_space, observation_space=None):
        self.action_space = action_space
        self.observation_space = observation_space or gym.spaces.Box(-1.0, 1.0, shape=(2,))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


gym.register("SmoothieTestUnbounded-v0", lambda: SpacesEnv(gym.spaces.Box(-np.inf, np.inf, shape=(2,))))
gym.register(
    "SmoothieTestImage-v0",
    lambda: SpacesEnv(gym.spaces.Box(-1.0, 1.0, shape=(2,)), gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)),
)


@pytest.mark.parametrize("bumps", [None, [(2.0, -1.0, 0.5)]])
def test_bandit_is_registered_and_passes_gymnasiums_checker(bumps):
    env = gym.make(envs.BANDIT_ID) if bumps is None else gym.make(envs.BANDIT_ID, bumps=bumps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    # The one remark: the paper's action range [-2, 2] is not the recommended [-1, 1].
    assert [str(w.message) for w in caught if "symmetric and normalized" not in str(w.message)] == []
    assert env.action_space.low[0] == -2.0 and env.action_space.high[0] == 2.0
    assert env.action_space.shape == (1,) and env.observation_space.dtype == np.float32


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
    _, reward, *_ = env.step(np.array([-0.5], np.float32))
    assert reward == pytest.approx(2.0 * np.exp(-0.5))  # (a − c)² / (2w²) = 0.25 / 0.5
    with pytest.raises(EnvError, match="bumps need at least one finite"):
        make_env(envs.BANDIT_ID, bumps=[(1.0, 0.0, 0.0)])
    with pytest.raises(EnvError, match="triples"):
        make_env(envs.BANDIT_ID, bumps=[(1.0, 0.0)])


def test_bandit_clips_actions_to_its_bounds():
    env = make_env(envs.BANDIT_ID, seed=0)
    _, reward, *_ = env.step(np.array([7.0], np.float32))
    assert reward == pytest.approx(envs.bump_reward(2.0))


@pytest.mark.parametrize("variance", [0.01, 0.3, 1.0])
def test_smoothed_reward_matches_numerical_integration(variance):
    for a in (-0.7, 0.0, 0.9, 1.5):
        x = np.linspace(a - 12 * np.sqrt(variance), a + 12 * np.sqrt(variance), 400_001)
        density = np.exp(-((x - a) ** 2) / (2 * variance)) / np.sqrt(2 * np.pi * variance)
        integral = np.trapezoid(envs.bump_reward(x) * density, x)
        assert envs.smoothed_reward(a, variance) == pytest.approx(integral, rel=1e-7)


def test_smoothed_reward_with_no_variance_is_the_reward():
    a = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(envs.smoothed_reward(a, 0.0), envs.bump_reward(a), rtol=1e-15)


def test_smoothing_moves_the_optimum_of_the_bandit():
    # With enough variance the smoothed reward has no local optimum near 0: the gradient at 0
    # points toward the global bump. This is what lets Smoothie escape.
    grid = np.linspace(-2, 2, 2001)
    smoothed = envs.smoothed_reward(grid, 0.5)
    assert grid[np.argmax(smoothed)] > 0.8
    assert envs.smoothed_reward(0.01, 0.5) > envs.smoothed_reward(0.0, 0.5)
    assert envs.bump_reward(0.01) < envs.bump_reward(0.0)  # unsmoothed: 0 is a local optimum


@pytest.mark.parametrize(
    "env_id, message",
    [
        ("NoSuchEnv-v0", r"unknown environment 'NoSuchEnv-v0' \(Environment `NoSuchEnv` doesn't exist"),
        ("Hopper-v9", r"unknown environment 'Hopper-v9' .*`v4`"),
        (
            "CartPole-v1",
            r"^CartPole-v1 has a Discrete action space; smoothie_tf needs a continuous \(Box\) one$",
        ),
        ("SmoothieTestUnbounded-v0", "has unbounded actions"),
        ("SmoothieTestImage-v0", "needs a flat Box observation space"),
    ],
)
def test_make_env_refuses_what_it_cannot_train_on(env_id, message):
    with pytest.raises(EnvError, match=message) as caught:
        make_env(env_id)
    assert "\n" not in str(caught.value)


def test_make_env_casts_observations_to_float32():
    env = make_env("Hopper-v4")
    first, _ = env.reset(seed=11)
    assert first.dtype == np.float32 and first.shape == (11,) and env.observation_space.dtype == np.float32
    assert env.observation_space.contains(first)
    assert env.action_space.shape == (3,)
    raw, _ = gym.make("Hopper-v4").reset(seed=11)
    assert raw.dtype == np.float64
    np.testing.assert_array_equal(first, raw.astype(np.float32))
    bandit_observation, _ = make_env(envs.BANDIT_ID).reset(seed=0)
    assert bandit_observation.dtype == np.float32 and bandit_observation.tolist() == [1.0]


def test_a_seeded_reset_and_replayed_actions_restore_an_episode_exactly():
    """The resume recipe of the module docstring: reset(seed=...) then the same actions."""
    actions = np.random.default_rng(0).uniform(-1, 1, size=(40, 3)).astype(np.float32)
    straight = make_env("Hopper-v4", seed=3)
    straight.reset(seed=7)
    path = [straight.step(a)[:2] for a in actions]
    restored = make_env("Hopper-v4")  # a fresh process would build a fresh env
    restored.reset(seed=7)
    for a in actions[:25]:
        restored.step(a)
    for a, (observation, reward) in zip(actions[25:], path[25:], strict=True):
        again, again_reward, *_ = restored.step(a)
        np.testing.assert_array_equal(again, observation)
        assert again_reward == reward
    # Unseeded resets continue the RNG a seeded one started: the same seed, the same sequence.
    a, b = make_env("Hopper-v4", seed=5), make_env("Hopper-v4", seed=5)
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])
    assert not np.array_equal(a.reset()[0], make_env("Hopper-v4", seed=6).reset()[0])
