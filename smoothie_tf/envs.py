"""Environments: `make_env` for any Gymnasium task with a Box action space, and the paper's
synthetic task `SmoothieBandit-v0` (registered on import).

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

BANDIT_ID = "SmoothieBandit-v0"
# (height h, centre c, width w): a local optimum at 0, where the policy starts, and the global one.
DEFAULT_BUMPS = ((0.5, 0.0, 0.3), (1.0, 1.5, 0.3))


class EnvError(ValueError):
    """An environment the project cannot train on (unknown id, discrete or unbounded actions)."""


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
