"""Environments: `make_env` for any Gymnasium task with a Box action space, and the paper's
synthetic task `SmoothieBandit-v0` (registered on import).

Observations are cast to float32, the learner's dtype. An environment's randomness is
restored by `reset(seed=...)`: the training loop seeds every episode's reset.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

BANDIT_ID = "SmoothieBandit-v0"
# (height h, centre c, width w): a local optimum at 0, where the policy starts, and the global one.
DEFAULT_BUMPS = ((0.5, 0.0, 0.3), (1.0, 1.5, 0.3))


class EnvError(ValueError):
    """An environment the project cannot train on (unknown id, discrete or unbounded actions)."""


def bump_reward(a, bumps: Sequence[tuple[float, float, float]] = DEFAULT_BUMPS):
    """r(a) = Σ_k h_k·exp(−(a − c_k)² / (2 w_k²))."""
    a = np.asarray(a, dtype=np.float64)
    return sum(h * np.exp(-((a - c) ** 2) / (2 * w**2)) for h, c, w in bumps)


def smoothed_reward(a, variance, bumps: Sequence[tuple[float, float, float]] = DEFAULT_BUMPS):
    """E_{ã~N(a, variance)} r(ã) in closed form: a bump convolved with N(0, v) is
    h·w/sqrt(w² + v)·exp(−(a − c)² / (2(w² + v)))."""
    a = np.asarray(a, dtype=np.float64)
    return sum(
        h * w / np.sqrt(w**2 + variance) * np.exp(-((a - c) ** 2) / (2 * (w**2 + variance)))
        for h, c, w in bumps
    )


class SmoothieBandit(gym.Env):
    """One state (observation [1.0]), actions in [−2, 2], one-step episodes, reward `bump_reward`."""

    metadata = {"render_modes": []}

    def __init__(self, bumps: Sequence[Sequence[float]] = DEFAULT_BUMPS):
        self.bumps = tuple((float(h), float(c), float(w)) for h, c, w in bumps)
        if not self.bumps or any(w <= 0 for _, _, w in self.bumps):
            raise ValueError(f"bumps need at least one (h, c, w) with w > 0, got {bumps}")
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


def make_env(env_id: str, seed: int | None = None, **kwargs) -> gym.Env:
    """A Gymnasium environment with float32 observations; refuses non-Box or unbounded actions."""
    if env_id not in gym.registry:
        raise EnvError(f"unknown environment {env_id!r}")
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise EnvError(f"cannot make environment {env_id!r}: {error}") from error
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        env.close()
        raise EnvError(
            f"{env_id} has a {type(space).__name__} action space; smoothie_tf needs a continuous (Box) one"
        )
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        env.close()
        raise EnvError(f"{env_id} has unbounded actions; smoothie_tf needs finite action bounds")
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        env.close()
        raise EnvError(f"{env_id} needs a flat Box observation space, got {env.observation_space}")
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
