"""Evaluation of a trained policy: from a run's checkpoint, or from its exported SavedModel.

Both paths act through the same graph, `mean_action_function(policy)`, so a deterministic
evaluation of an exported policy and of the checkpoint it came from give the same returns on
the same seed. Episode `i` of an evaluation with seed `n` resets the environment with
`episode_seed(n, i)`; a stochastic evaluation draws all its acting noise from `n` as well, and
resets the exploration noise (DDPG's OU state) at each episode start.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from smoothie_tf import hparams as hparams_lib
from smoothie_tf import video
from smoothie_tf.agents import make_agent, mean_action_function
from smoothie_tf.checkpoints import CheckpointDirectory, CheckpointError
from smoothie_tf.envs import make_env
from smoothie_tf.networks import unbatched_policy


class EvaluationError(ValueError):
    """The run, checkpoint or SavedModel cannot be evaluated as asked (bad input)."""


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of evaluation episode `episode` under evaluation seed `seed`."""
    return int(np.random.SeedSequence([seed, 3, episode]).generate_state(1)[0])


class Actor:
    """A policy to evaluate: `actor(observation [S]) -> action [d]`; `run_episodes` calls
    `actor.reset()` at each episode start, after the environment's reset."""

    def __init__(self, act: Callable[[np.ndarray], np.ndarray], reset: Callable[[], None] | None = None):
        self._act = act
        self._reset = reset

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return self._act(observation)

    def reset(self) -> None:
        if self._reset is not None:
            self._reset()


@dataclasses.dataclass
class EpisodeResults:
    returns: list[float]
    lengths: list[int]
    videos: list[str]

    def summary(self) -> dict:
        return {
            "episodes": len(self.returns),
            "mean_return": float(np.mean(self.returns)),
            "std_return": float(np.std(self.returns)),
            "min_return": float(np.min(self.returns)),
            "max_return": float(np.max(self.returns)),
            "mean_length": float(np.mean(self.lengths)),
            "returns": list(self.returns),
            "lengths": self.lengths,
            "videos": self.videos,
        }


def run_episodes(
    env_id: str,
    act: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    seed: int,
    video_dir: str | pathlib.Path | None = None,
    on_episode: Callable[[int, float, int], None] | None = None,
    env_kwargs: dict | None = None,
) -> EpisodeResults:
    """`episodes` episodes of `act` (observation [S] -> action [d]; an `Actor` is reset at each
    episode start); with `video_dir`, one MP4 per episode (`episode_000.mp4`, ...), rendered
    offscreen by `smoothie_tf.video`. `env_kwargs` go to `gymnasium.make` (a run's are in its
    hparams.json: `read_run`)."""
    if episodes < 1:
        raise EvaluationError(f"episodes must be >= 1, got {episodes}")
    env_kwargs = dict(env_kwargs or {})
    env = make_env(env_id, **env_kwargs)
    results = EpisodeResults([], [], [])
    recorded = []
    try:
        for i in range(episodes):
            seed_i = episode_seed(seed, i)
            observation, _ = env.reset(seed=seed_i)
            if isinstance(act, Actor):
                act.reset()
            total, actions, done = 0.0, [], False
            while not done:
                action = act(observation)
                observation, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                actions.append([float(x) for x in np.asarray(action).reshape(-1)])
                done = terminated or truncated
            results.returns.append(total)
            results.lengths.append(len(actions))
            if video_dir is not None:
                path = pathlib.Path(video_dir) / f"episode_{i:03d}.mp4"
                recorded.append({"seed": seed_i, "actions": actions, "path": str(path)})
                results.videos.append(str(path))
            if on_episode is not None:
                on_episode(i, total, len(actions))
    finally:
        env.close()
    if recorded:
        video.render_episodes(env_id, recorded, env_kwargs=env_kwargs)
    return results


# --- from a run directory ------------------------------------------------------------------


def read_run(logdir: str | pathlib.Path) -> tuple[str, hparams_lib.HParams, int, dict]:
    """(env id, hparams, seed, env keyword arguments) of the run in `logdir`, from its
    hparams.json; the keyword arguments are {} for a run recorded without them."""
    path = pathlib.Path(logdir) / "hparams.json"
    if not path.is_file():
        raise EvaluationError(f"{logdir} is not a run directory: it has no hparams.json")
    try:
        record = json.loads(path.read_text())
        env_kwargs = record.get("env_kwargs", {})
        if not isinstance(env_kwargs, dict):
            raise TypeError(f"env_kwargs must be a JSON object, got {env_kwargs!r}")
        return record["env"], hparams_lib.from_dict(record["hparams"]), int(record["seed"]), env_kwargs
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, hparams_lib.HParamsError) as error:
        raise EvaluationError(f"{path} cannot be read: {error}") from error


def load_agent(logdir: str | pathlib.Path, checkpoint: str | pathlib.Path | None = None):
    """(agent, env id, step, checkpoint path): the run's agent restored from `checkpoint`, or
    from the latest checkpoint of `logdir`."""
    env_id, hp, seed, env_kwargs = read_run(logdir)
    checkpoints = CheckpointDirectory(pathlib.Path(logdir) / "checkpoints")
    path = pathlib.Path(checkpoint) if checkpoint is not None else checkpoints.latest()
    if path is None:
        raise EvaluationError(f"{logdir} has no checkpoint yet")
    if not path.is_dir():
        raise EvaluationError(f"checkpoint {path} does not exist")
    state = checkpoints.read_state(path)
    env = make_env(env_id, **env_kwargs)
    try:
        observation_dim = int(np.prod(env.observation_space.shape))
        agent = make_agent(hp, observation_dim, env.action_space, seed)
    finally:
        env.close()
    try:
        agent.load_member_states([checkpoints.read_model(path)])
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path} does not fit the run's agent: {error}") from error
    return agent, env_id, int(state["step"]), path


def acting_seed(seed: int) -> int:
    """The seed of all acting noise of a stochastic evaluation with seed `seed`."""
    return int(np.random.SeedSequence([seed, 4]).generate_state(1)[0])


def checkpoint_actor(agent, stochastic: bool, seed: int) -> Actor:
    """The agent's action for one observation: the mean (as exported), or its exploration
    behaviour with all its acting noise reseeded from `seed` now and its exploration noise reset
    at each episode start (`Actor.reset`)."""
    if stochastic:
        agent.reseed_acting(acting_seed(seed))
        return Actor(lambda observation: agent.act(observation, deterministic=False), agent.reset_noise)
    mean_action = mean_action_function(unbatched_policy(agent.policy, 0), agent.observation_dim)
    return Actor(lambda observation: mean_action(np.asarray(observation, np.float32)[None])[0].numpy())


def saved_model_actor(
    directory: str | pathlib.Path,
) -> tuple[Callable[[np.ndarray], np.ndarray], str | None, int | None, dict]:
    """(act, env id, training step, env keyword arguments) of an exported policy, run with
    TensorFlow alone; the env id and step are None, the keyword arguments {}, for a SavedModel
    that does not record them."""
    try:
        module = tf.saved_model.load(str(directory))
        module.mean_action  # noqa: B018  (fails here if it is not an exported policy)
    except (OSError, ValueError, AttributeError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EvaluationError(f"{directory} is not an exported policy: {reason}") from error
    env_id = module.env_id.numpy().decode() if hasattr(module, "env_id") else None
    step = int(module.step.numpy()) if hasattr(module, "step") else None
    env_kwargs = json.loads(module.env_kwargs.numpy().decode()) if hasattr(module, "env_kwargs") else {}

    def act(observation: np.ndarray, module=module) -> np.ndarray:  # keeps the variables alive
        return module.mean_action(np.asarray(observation, np.float32)[None])[0].numpy()

    return act, env_id, step, env_kwargs
