"""Evaluation of a trained policy: from a run's checkpoint, or from its exported SavedModel.

Both paths act through the same graph, `mean_action_function(policy)`, so a deterministic
evaluation of an exported policy and of the checkpoint it came from give the same returns on
the same seed. Episode `i` of an evaluation with seed `n` resets the environment with
`episode_seed(n, i)`; a stochastic evaluation draws all its acting noise from `n` as well, and
resets the exploration noise (DDPG's OU state) at each episode start.

An evaluation is refused before its first episode (`check_env`) when the policy's observation or
action size is not the environment's, or when videos are asked of an environment that cannot
render frames or of a directory that cannot be written.
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
from smoothie_tf.startup import output_dir_problem


class EvaluationError(ValueError):
    """The run, checkpoint or SavedModel cannot be evaluated as asked (bad input)."""


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of evaluation episode `episode` under evaluation seed `seed`."""
    return int(np.random.SeedSequence([seed, 3, episode]).generate_state(1)[0])


class Actor:
    """A policy to evaluate: `actor(observation [S]) -> action [d]`; `run_episodes` calls
    `actor.reset()` at each episode start, after the environment's reset, and refuses an
    environment whose sizes are not `observation_dim` (S) and `action_dim` (d) when they are known."""

    def __init__(
        self,
        act: Callable[[np.ndarray], np.ndarray],
        reset: Callable[[], None] | None = None,
        observation_dim: int | None = None,
        action_dim: int | None = None,
    ):
        self._act = act
        self._reset = reset
        self.observation_dim = observation_dim
        self.action_dim = action_dim

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


def _check_sizes(env, env_id: str, act) -> None:
    """Raises EvaluationError when the Actor `act` has known sizes that are not those of `env`."""
    observation_dim = getattr(act, "observation_dim", None)
    action_dim = getattr(act, "action_dim", None)
    env_observation = int(np.prod(env.observation_space.shape))
    env_action = int(np.prod(env.action_space.shape))
    if (observation_dim not in (None, env_observation)) or (action_dim not in (None, env_action)):
        raise EvaluationError(
            f"the policy maps observations of shape ({observation_dim},) to actions of shape "
            f"({action_dim},), but {env_id} has observations of shape {env.observation_space.shape} "
            f"and actions of shape {env.action_space.shape}"
        )


def _check_video(env_id: str, env_kwargs: dict, video_dir: str | pathlib.Path) -> None:
    problem = output_dir_problem(video_dir) or video.render_problem(env_id, env_kwargs)
    if problem is not None:
        raise EvaluationError(problem)


def check_env(
    env_id: str,
    act: Callable[[np.ndarray], np.ndarray],
    env_kwargs: dict | None = None,
    video_dir: str | pathlib.Path | None = None,
) -> None:
    """Raises EvaluationError (EnvError for an environment that cannot be made) when `run_episodes`
    with these arguments would be refused: an `Actor` whose known observation or action size is
    not the environment's; with `video_dir`, a directory that cannot be made or written, or an
    environment that cannot render rgb_array frames (`video.render_problem`). Renders nothing."""
    env_kwargs = dict(env_kwargs or {})
    env = make_env(env_id, **env_kwargs)
    try:
        _check_sizes(env, env_id, act)
    finally:
        env.close()
    if video_dir is not None:
        _check_video(env_id, env_kwargs, video_dir)


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
    hparams.json: `read_run`). Raises EvaluationError before the first episode where `check_env`
    does."""
    if episodes < 1:
        raise EvaluationError(f"episodes must be >= 1, got {episodes}")
    env_kwargs = dict(env_kwargs or {})
    env = make_env(env_id, **env_kwargs)
    results = EpisodeResults([], [], [])
    recorded = []
    try:
        _check_sizes(env, env_id, act)
        if video_dir is not None:
            _check_video(env_id, env_kwargs, video_dir)
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


def find_checkpoint(logdir: str | pathlib.Path, checkpoint: str | pathlib.Path | None = None) -> pathlib.Path:
    """The directory of `checkpoint` of the run in `logdir`: the name of one of its checkpoints
    (`ckpt-0000004000`, in `<logdir>/checkpoints`), or a checkpoint directory's path; the latest
    checkpoint when `checkpoint` is None."""
    checkpoints = CheckpointDirectory(pathlib.Path(logdir) / "checkpoints")
    if checkpoint is None:
        path = checkpoints.latest()
        if path is None:
            raise EvaluationError(f"{logdir} has no checkpoint yet")
        return path
    by_name = {path.name: path for path in checkpoints.all()}
    if str(checkpoint) in by_name:
        return by_name[str(checkpoint)]
    path = pathlib.Path(checkpoint)
    if not path.is_dir():
        names = ", ".join(by_name) or "none yet"
        raise EvaluationError(
            f"checkpoint {checkpoint} does not exist: give a checkpoint's full path, or the "
            f"name of one in {checkpoints.directory} ({names})"
        )
    return path


def load_agent(logdir: str | pathlib.Path, checkpoint: str | pathlib.Path | None = None):
    """(agent, env id, step, checkpoint path): the run's agent restored from `checkpoint` (a name
    or a path: `find_checkpoint`), or from the latest checkpoint of `logdir`."""
    env_id, hp, seed, env_kwargs = read_run(logdir)
    checkpoints = CheckpointDirectory(pathlib.Path(logdir) / "checkpoints")
    path = find_checkpoint(logdir, checkpoint)
    state = checkpoints.read_state(path)
    env = make_env(env_id, **env_kwargs)
    try:
        observation_dim = int(np.prod(env.observation_space.shape))
        agent = make_agent(hp, observation_dim, env.action_space, seed)
    finally:
        env.close()
    model = checkpoints.read_model(path)  # a damaged one is a CheckpointError of its own
    try:
        agent.load_member_states([model])
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
    sizes = {"observation_dim": agent.observation_dim, "action_dim": agent.action_dim}
    if stochastic:
        agent.reseed_acting(acting_seed(seed))
        return Actor(
            lambda observation: agent.act(observation, deterministic=False), agent.reset_noise, **sizes
        )
    mean_action = mean_action_function(unbatched_policy(agent.policy, 0), agent.observation_dim)
    return Actor(
        lambda observation: mean_action(np.asarray(observation, np.float32)[None])[0].numpy(), **sizes
    )


def _signature_sizes(function) -> tuple[int | None, int | None]:
    """(observation size, action size) of an exported `mean_action` ([N, S] -> [N, d]), None
    where its signature leaves one open."""
    try:
        concrete = function.get_concrete_function()
        observations = tf.TensorShape(concrete.structured_input_signature[0][0].shape)
        actions = tf.TensorShape(concrete.structured_outputs.shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None, None
    return tuple(shape[-1] if shape.rank == 2 else None for shape in (observations, actions))


def saved_model_actor(
    directory: str | pathlib.Path,
) -> tuple[Actor, str | None, int | None, dict]:
    """(act, env id, training step, env keyword arguments) of an exported policy, run with
    TensorFlow alone; the env id and step are None, the keyword arguments {}, for a SavedModel
    that does not record them. `act` is an `Actor` with the sizes of the exported signature."""
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

    observation_dim, action_dim = _signature_sizes(module.mean_action)
    return Actor(act, observation_dim=observation_dim, action_dim=action_dim), env_id, step, env_kwargs
