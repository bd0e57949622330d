"""Environments: make_env's refusals, and the synthetic and linear-quadratic tasks against their
definitions."""

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


def replay_restores_the_episode(env_id: str, actions: np.ndarray, between=lambda: None):
    """The resume recipe of the module docstring: an episode reset with seed 7 and stepped with
    `actions`, and a fresh env (as a fresh process would build) reset with the same seed and
    replaying the first 25 actions, after `between()`, go on identically. Returns that env."""
    straight = make_env(env_id, seed=3)
    straight.reset(seed=7)
    path = [straight.step(a)[:2] for a in actions]
    between()
    restored = make_env(env_id)
    restored.reset(seed=7)
    for a in actions[:25]:
        restored.step(a)
    for a, (observation, reward) in zip(actions[25:], path[25:], strict=True):
        again, again_reward, *_ = restored.step(a)
        np.testing.assert_array_equal(again, observation)
        assert again_reward == reward
    return restored


def test_a_seeded_reset_and_replayed_actions_restore_an_episode_exactly():
    """The resume recipe of the module docstring: reset(seed=...) then the same actions."""
    actions = np.random.default_rng(0).uniform(-1, 1, size=(40, 3)).astype(np.float32)
    replay_restores_the_episode("Hopper-v4", actions)
    # Unseeded resets continue the RNG a seeded one started: the same seed, the same sequence.
    a, b = make_env("Hopper-v4", seed=5), make_env("Hopper-v4", seed=5)
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])
    assert not np.array_equal(a.reset()[0], make_env("Hopper-v4", seed=6).reset()[0])


def test_lqr_is_registered_with_its_default_matrices_and_passes_gymnasiums_checker():
    env = make_env(envs.LQR_ID, seed=0)
    task = env.unwrapped
    assert isinstance(task, envs.LinearQuadraticEnv)
    for name, default in envs.LQR_DEFAULTS.items():
        matrix = getattr(task, name)
        assert matrix.dtype == np.float64
        np.testing.assert_array_equal(matrix, np.array(default))
    # make_env takes the unbounded float32 observation Box as it is.
    assert env.observation_space == gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
    assert env.action_space == gym.spaces.Box(-5.0, 5.0, shape=(2,), dtype=np.float32)
    assert env.spec.max_episode_steps == 200
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(envs.LQR_ID).unwrapped)
    expected = ("symmetric and normalized", "minimum value is -infinity", "maximum value is infinity")
    assert [str(w.message) for w in caught if not any(text in str(w.message) for text in expected)] == []
    # A has the integrator eigenvalue 1 and 0.9 ± 0.3i; B has full column rank.
    np.testing.assert_allclose(np.sort_complex(np.linalg.eigvals(task.A)), [0.9 - 0.3j, 0.9 + 0.3j, 1.0])
    assert np.linalg.matrix_rank(task.B) == 2


def test_lqr_step_is_the_linear_dynamics_and_the_quadratic_cost():
    # Without dynamics noise the next state is exactly A s + B a; matrices come as nested lists.
    A = [[0.5, 0.1], [0.0, 0.8]]
    B = [[1.0], [0.5]]
    env = make_env(
        envs.LQR_ID,
        A=A,
        B=B,
        Q=[[2.0, 0.0], [0.0, 1.0]],
        R=[[3.0]],
        W=[[0.0, 0.0], [0.0, 0.0]],
        initial_covariance=[[1.0, 0.0], [0.0, 1.0]],
        action_bound=2.0,
    )
    observation, _ = env.reset(seed=0)
    assert env.observation_space.shape == (2,) and env.action_space.shape == (1,)
    for action in [0.7, -1.5, 3.0]:  # the last is clipped to the bound 2
        s = env.unwrapped.state.copy()
        np.testing.assert_array_equal(observation, s.astype(np.float32))
        observation, reward, terminated, truncated, _ = env.step(np.array([action], np.float32))
        a = np.clip(np.float64(np.float32(action)), -2.0, 2.0)  # the action as the env receives it
        assert reward == pytest.approx(-(2 * s[0] ** 2 + s[1] ** 2 + 3 * a**2), rel=1e-12)
        np.testing.assert_allclose(env.unwrapped.state, np.array(A) @ s + np.array(B)[:, 0] * a, rtol=1e-12)
        assert not terminated and not truncated


def test_lqr_initial_states_and_dynamics_noise_have_the_given_covariances():
    """Over 4000 draws each, the sample covariances of s0 and of w = s' − As − Ba are within
    5 standard errors of Σ0 and W."""
    W = [[0.02, 0.01, 0.0], [0.01, 0.03, 0.0], [0.0, 0.0, 0.0]]  # singular: W need only be PSD
    initial_covariance = [[0.5, -0.2, 0.0], [-0.2, 1.0, 0.0], [0.0, 0.0, 0.1]]
    env = gym.make(envs.LQR_ID, W=W, initial_covariance=initial_covariance).unwrapped
    initial, noise = [], []
    env.reset(seed=0)
    for _ in range(4000):
        env.reset()
        initial.append(env.state.copy())
    for _ in range(4000):
        s, a = env.state.copy(), np.array([0.3, -0.2])
        env.step(a)
        noise.append(env.state - env.A @ s - env.B @ a)
    for samples, covariance in [(np.array(initial), initial_covariance), (np.array(noise), W)]:
        products = samples[:, :, None] * samples[:, None, :]
        mean = products.mean(axis=0)
        standard_error = products.std(axis=0, ddof=1) / np.sqrt(len(samples))
        assert np.all(np.abs(mean - np.array(covariance)) <= 5 * standard_error + 1e-15), (mean, covariance)
    assert np.abs(np.array(noise)[:, 2]).max() < 1e-15  # no noise where W has none


def test_lqr_episodes_are_truncated_after_200_steps_and_never_terminated():
    env = make_env(envs.LQR_ID, seed=1)
    for t in range(1, 201):
        *_, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
        assert not terminated and truncated == (t == 200)


def test_lqr_seeded_reset_and_replayed_actions_restore_an_episode_exactly():
    actions = np.random.default_rng(0).uniform(-5, 5, size=(60, 2)).astype(np.float32)
    # The env's randomness is its own np_random, not numpy's global one.
    restored = replay_restores_the_episode(envs.LQR_ID, actions, between=lambda: np.random.seed(123))  # noqa: NPY002
    assert not np.array_equal(make_env(envs.LQR_ID).reset(seed=8)[0], restored.reset(seed=7)[0])


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"A": [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]}, "A must be square"),
        ({"A": [[1.0, 0.0], [0.0, 1.0]]}, "B must have n = 2 rows"),
        ({"B": [[1.0], [0.0], [0.0]]}, r"R must have shape \(1, 1\)"),
        ({"Q": np.eye(2)}, r"Q must have shape \(3, 3\)"),
        ({"W": [[0.01, 0.0, 0.0], [0.0, 0.01, 0.0]]}, r"W must have shape \(3, 3\)"),
        ({"initial_covariance": np.eye(4)}, r"initial_covariance must have shape \(3, 3\)"),
        ({"A": [[np.nan, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]}, "A must be finite"),
        ({"B": [[0.0, 0.0], [np.inf, 0.0], [0.0, 1.0]]}, "B must be finite"),
        ({"Q": [[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]}, "Q must be symmetric"),
        ({"Q": np.diag([1.0, -0.1, 1.0])}, "Q must be positive semidefinite"),
        ({"R": [[1.0, 2.0], [2.0, 1.0]]}, "R must be positive definite"),
        ({"R": [[1.0, 0.0], [0.0, 0.0]]}, "R must be positive definite"),
        ({"W": -0.01 * np.eye(3)}, "W must be positive semidefinite"),
        ({"initial_covariance": np.diag([1.0, 1.0, 0.0])}, "initial_covariance must be positive definite"),
        ({"A": [[1.0, 0.0], [0.0]]}, "A must be a matrix of numbers"),
        ({"R": [1.0, 1.0]}, r"R must be a matrix \(2-D\)"),
        ({"action_bound": 0.0}, "action_bound must be positive and finite"),
        ({"action_bound": [1.0, 2.0, 3.0]}, "action_bound must be a number or 2 numbers"),
    ],
)
def test_lqr_refuses_bad_matrices_naming_them(arguments, message):
    with pytest.raises(ValueError, match=message):
        gym.make(envs.LQR_ID, **arguments)
    with pytest.raises(EnvError, match=f"cannot make environment 'SmoothieLQR-v0': {message}"):
        make_env(envs.LQR_ID, **arguments)


def test_lqr_takes_other_matrices_and_per_dimension_bounds():
    env = make_env(
        envs.LQR_ID,
        A=np.diag([0.5, 0.9]),
        B=[[1.0], [1.0]],
        Q=np.eye(2),
        R=[[0.1]],
        W=0.001 * np.eye(2),
        initial_covariance=np.eye(2),
        action_bound=[0.5],
    )
    assert env.observation_space.shape == (2,) and env.action_space.high.tolist() == [0.5]
    task = env.unwrapped
    np.testing.assert_array_equal(task.A, np.diag([0.5, 0.9]))
    assert task.R.dtype == np.float64 and task.R.tolist() == [[0.1]]
    wide = make_env(envs.LQR_ID, action_bound=[1.0, 2.0])
    assert wide.action_space.low.tolist() == [-1.0, -2.0] and wide.action_space.high.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("discount", [0.9, 0.99, 0.995])
def test_lqr_bounds_hold_the_optimal_policys_actions_with_room_to_spare(discount):
    """K*'s actions over 2000 episodes of 200 steps (the env's dynamics, vectorised) stay below
    half the action bound, so the optimum of the clipped task is the LQR one."""
    from smoothie_tf.lqr import LinearQuadratic

    env = gym.make(envs.LQR_ID)
    task = env.unwrapped
    K = LinearQuadratic.from_env(env, discount).optimal_gain()
    rng = np.random.default_rng(0)
    s = rng.standard_normal((2000, 3)) @ np.linalg.cholesky(task.initial_covariance).T
    largest = 0.0
    for _ in range(200):
        a = s @ K.T
        largest = max(largest, np.abs(a).max())
        s = s @ task.A.T + a @ task.B.T + rng.standard_normal(s.shape) @ np.linalg.cholesky(task.W).T
    assert largest < 0.5 * envs.LQR_ACTION_BOUND
