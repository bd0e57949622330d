"""Environments: `make_env` for any Gymnasium task with a Box action space, the paper's
synthetic task `SmoothieBandit-v0`, and the linear-quadratic task `SmoothieLQR-v0` (both
registered on import; `smoothie_tf.lqr` has the latter's closed forms).

`make_env` casts observations to float32, the learner's dtype (MuJoCo's are float64).

Restoring an environment's randomness (exact resume): a Gymnasium env keeps its RNG in
`env.unwrapped.np_random`, and `env.reset(seed=n)` re-creates it from n. So seed every
episode's reset with a number derived from (run seed, episode index); to bring the env back
mid-episode, reset it with that episode's seed and step the episode's stored actions again
(MuJoCo's simulation is deterministic on one machine). `env.action_space.seed(n)` seeds
`action_space.sample()` separately.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from smoothie_tf.lqr import checked_matrices

BANDIT_ID = "SmoothieBandit-v0"
LQR_ID = "SmoothieLQR-v0"
# (height h, centre c, width w): a local optimum at 0, where the policy starts, and the global one.
DEFAULT_BUMPS = ((0.5, 0.0, 0.3), (1.0, 1.5, 0.3))


class EnvError(ValueError):
    """An environment the project cannot train on (unknown id, discrete or unbounded actions,
    bad arguments)."""


def bump_reward(a, bumps: Sequence[tuple[float, float, float]] = DEFAULT_BUMPS) -> np.ndarray:
    """The synthetic task's reward r(a) = Σ_k h_k·exp(−(a − c_k)² / (2 w_k²)), elementwise over a."""
    a = np.asarray(a, dtype=np.float64)
    return sum(h * np.exp(-((a - c) ** 2) / (2 * w**2)) for h, c, w in bumps)


def smoothed_reward(a, variance, bumps: Sequence[tuple[float, float, float]] = DEFAULT_BUMPS) -> np.ndarray:
    """The smoothed reward E_{ã~N(a, v)} r(ã), elementwise over a (v = `variance`), in closed
    form: a bump convolved with N(0, v) is h·w/sqrt(w² + v)·exp(−(a − c)² / (2(w² + v))). This is
    Q̃ of the one-step task, so Smoothie's critic should learn it."""
    a = np.asarray(a, dtype=np.float64)
    return sum(
        h * w / np.sqrt(w**2 + variance) * np.exp(-((a - c) ** 2) / (2 * (w**2 + variance)))
        for h, c, w in bumps
    )


class SmoothieBandit(gym.Env):
    """The paper's synthetic task: one state (observation [1.0]), actions in [−2, 2] (clipped),
    episodes of one step (terminated after it), reward `bump_reward(a, bumps)`.

    `bumps`: (h, c, w) triples, w > 0; by default a local optimum at 0, where a policy with
    mean 0 starts, and the global one at 1.5. Pass others with gymnasium.make(..., bumps=...).
    """

    metadata = {"render_modes": []}

    def __init__(self, bumps: Sequence[Sequence[float]] = DEFAULT_BUMPS):
        try:
            self.bumps = tuple((float(h), float(c), float(w)) for h, c, w in bumps)
        except (TypeError, ValueError) as error:
            raise ValueError(f"bumps must be (h, c, w) triples of numbers, got {bumps!r}") from error
        if not self.bumps or not all(w > 0 and np.isfinite([h, c, w]).all() for h, c, w in self.bumps):
            raise ValueError(f"bumps need at least one finite (h, c, w) with w > 0, got {bumps!r}")
        # Any box holding 1.0 will do; Gymnasium's checker warns about a degenerate [1, 1] one.
        self.observation_space = gym.spaces.Box(0.0, 2.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        return np.ones(1, dtype=np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(1), -2.0, 2.0)
        reward = float(bump_reward(action[0], self.bumps))
        return np.ones(1, dtype=np.float32), reward, True, False, {}


if BANDIT_ID not in gym.registry:
    gym.register(id=BANDIT_ID, entry_point=SmoothieBandit)


# The linear-quadratic task's defaults (state dimension 3, action dimension 2). A has the
# eigenvalues 1 (an integrator, state 0) and 0.9 ± 0.3i (|λ| ≈ 0.949, a damped oscillation of
# states 1 and 2), so ρ(A) = 1: the uncontrolled state drifts like a random walk, yet the
# discounted problem is well posed at K = 0 for every discount, since sqrt(γ)·ρ(A) < 1 iff
# γ < 1/ρ(A)² = 1. The actions drive the oscillator only (B = [0; I]); the integrator is
# reached through A's coupling 0.2, so the task is controllable but not trivially so.
LQR_DEFAULTS = {
    "A": ((1.0, 0.2, 0.0), (0.0, 0.9, 0.3), (0.0, -0.3, 0.9)),
    "B": ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)),
    "Q": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "R": ((1.0, 0.2), (0.2, 0.6)),
    "W": ((0.01, 0.0, 0.0), (0.0, 0.01, 0.0), (0.0, 0.0, 0.01)),
    "initial_covariance": ((0.25, 0.0, 0.0), (0.0, 0.25, 0.0), (0.0, 0.0, 0.25)),
}
# |a_i| ≤ 5. With the defaults the optimal policy's actions on visited states stay below half of
# it for discounts up to 0.995 (about 1.5 at most over 2000 episodes; tests/test_envs.py checks).
LQR_ACTION_BOUND = 5.0
LQR_EPISODE_STEPS = 200


class LinearQuadraticEnv(gym.Env):
    """The discounted linear-quadratic task: s' = A s + B a + w, w ~ N(0, W); reward
    r = −(sᵀQs + aᵀRa) with s the state before the step and a the action clipped to the Box
    [−action_bound, action_bound]^m; s0 ~ N(0, Σ0). The observation is the state (float32 [n],
    unbounded Box); episodes are never terminated (gymnasium.make truncates them after 200
    steps). s0 and every w come from `self.np_random` alone, so reset(seed=n) and the same
    actions replay an episode exactly.

    Matrices (nested lists or arrays; `LQR_DEFAULTS` otherwise): A [n, n], B [n, m], Q [n, n]
    and W [n, n] symmetric PSD, R [m, m] and initial_covariance Σ0 [n, n] symmetric PD; a bad
    one is a ValueError naming it. They are float64 arrays on the env, as A, B, Q, R, W and
    initial_covariance. `action_bound`: a positive number, or one per action dimension.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        A=LQR_DEFAULTS["A"],
        B=LQR_DEFAULTS["B"],
        Q=LQR_DEFAULTS["Q"],
        R=LQR_DEFAULTS["R"],
        W=LQR_DEFAULTS["W"],
        initial_covariance=LQR_DEFAULTS["initial_covariance"],
        action_bound=LQR_ACTION_BOUND,
    ):
        matrices = checked_matrices(A, B, Q, R, W, initial_covariance)
        for name, matrix in matrices.items():
            matrix.setflags(write=False)
            setattr(self, name, matrix)
        n, m = self.B.shape
        try:
            bound = np.broadcast_to(np.asarray(action_bound, dtype=np.float64), (m,)).copy()
        except (TypeError, ValueError) as error:
            raise ValueError(f"action_bound must be a number or {m} numbers, got {action_bound!r}") from error
        if not np.all(np.isfinite(bound) & (bound > 0)):
            raise ValueError(f"action_bound must be positive and finite, got {action_bound!r}")
        self.action_space = gym.spaces.Box(
            -bound.astype(np.float32), bound.astype(np.float32), dtype=np.float32
        )
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)
        # Square roots for sampling: L Lᵀ = Σ0 (Σ0 is PD), F Fᵀ = W (W may be singular).
        self._initial_factor = np.linalg.cholesky(self.initial_covariance)
        eigenvalues, eigenvectors = np.linalg.eigh(self.W)
        self._noise_factor = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
        self.state: np.ndarray | None = None  # float64 [n]; the observation is its float32 copy

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        self.state = self._initial_factor @ self.np_random.standard_normal(self.A.shape[0])
        return self.state.astype(np.float32), {}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=np.float64).reshape(self.B.shape[1])
        action = np.clip(action, self.action_space.low, self.action_space.high)
        s = self.state
        reward = -float(s @ self.Q @ s + action @ self.R @ action)
        noise = self._noise_factor @ self.np_random.standard_normal(self.A.shape[0])
        self.state = self.A @ s + self.B @ action + noise
        return self.state.astype(np.float32), reward, False, False, {}


if LQR_ID not in gym.registry:
    gym.register(id=LQR_ID, entry_point=LinearQuadraticEnv, max_episode_steps=LQR_EPISODE_STEPS)


def make_env(env_id: str, seed: int | None = None, **kwargs) -> gym.Env:
    """`gymnasium.make(env_id, **kwargs)` with float32 observations [S]; refuses unknown ids,
    non-Box or unbounded actions, and observations that are not a flat Box. With `seed`, the
    env is reset with it and its action space seeded (see the module docstring for resume)."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.UnregisteredEnv as error:
        raise EnvError(f"unknown environment {env_id!r} ({_one_line(error)})") from error
    except (gym.error.Error, ImportError, TypeError, ValueError) as error:
        raise EnvError(f"cannot make environment {env_id!r}: {_one_line(error)}") from error
    space = env.action_space
    problem = None
    if not isinstance(space, gym.spaces.Box):
        problem = f"has a {type(space).__name__} action space; smoothie_tf needs a continuous (Box) one"
    elif not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        problem = "has unbounded actions; smoothie_tf needs finite action bounds"
    elif not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        problem = f"needs a flat Box observation space, got {env.observation_space}"
    if problem is not None:
        env.close()
        raise EnvError(f"{env_id} {problem}")
    if env.observation_space.dtype != np.float32:
        env = gym.wrappers.TransformObservation(
            env,
            lambda observation: np.asarray(observation, dtype=np.float32),
            gym.spaces.Box(
                env.observation_space.low.astype(np.float32),
                env.observation_space.high.astype(np.float32),
                dtype=np.float32,
            ),
        )
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
