"""The training run: act, store, update, evaluate, summarise, checkpoint; resumes exactly.

Exact resume: every source of randomness is either a TF generator inside the agent (saved in
its checkpoint), the run's NumPy generator (saved as its bit-generator state), or an
environment reset seeded from (run seed, episode index). The environment is brought back
mid-episode by resetting with that episode's seed and replaying the episode's actions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import signal
import threading
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from smoothie_tf import hparams as hparams_lib
from smoothie_tf.agents import make_agent, mean_action_function
from smoothie_tf.agents.base import FINITE
from smoothie_tf.checkpoints import CheckpointDirectory, CheckpointError
from smoothie_tf.envs import make_env
from smoothie_tf.replay import ReplayBuffer
from smoothie_tf.summaries import EVAL_RETURN, Summaries

SUMMARY_INTERVAL = 1000  # env steps between train-step summaries


class RunConfigError(ValueError):
    """The logdir belongs to a different run (other hparams, env or seed)."""


class NonFiniteLossError(RuntimeError):
    """A train step produced a NaN or infinite loss, or left NaN or infinite weights."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was saved first."""


def episode_seed(run_seed: int, episode: int) -> int:
    """The reset seed of training episode `episode`."""
    return int(np.random.SeedSequence([run_seed, 0, episode]).generate_state(1)[0])


def eval_seed(run_seed: int, evaluation: int, episode: int) -> int:
    """The reset seed of episode `episode` of evaluation number `evaluation`."""
    return int(np.random.SeedSequence([run_seed, 1, evaluation, episode]).generate_state(1)[0])


def resolved_config(hp: hparams_lib.HParams, env_id: str, seed: int, env_kwargs: dict | None = None) -> dict:
    """What identifies a run: its hparams, env (with the keyword arguments it is made with) and
    seed (compared when a logdir is reused)."""
    return {
        "hparams": dataclasses.asdict(hp),
        "env": env_id,
        "env_kwargs": dict(env_kwargs or {}),
        "seed": seed,
    }


def package_versions() -> dict:
    import gymnasium
    import mujoco

    import smoothie_tf

    return {
        "smoothie_tf": smoothie_tf.__version__,
        "tensorflow": tf.__version__,
        "gymnasium": gymnasium.__version__,
        "mujoco": mujoco.__version__,
        "numpy": np.__version__,
    }


def check_logdir(logdir: pathlib.Path, config: dict) -> bool:
    """True when logdir holds this run already (resume); raises RunConfigError if another run."""
    saved = logdir / "hparams.json"
    if not saved.exists():
        if (logdir / "checkpoints").exists():
            raise RunConfigError(f"{logdir} has checkpoints but no hparams.json; refusing to reuse it")
        return False
    try:
        previous = json.loads(saved.read_text())
    except json.JSONDecodeError as error:
        raise RunConfigError(f"{saved} is not valid JSON: {error}") from error
    # A run recorded before env keyword arguments existed was made without any.
    previous = {key: previous.get(key, {} if key == "env_kwargs" else None) for key in config}
    if previous != config:
        diffs = _differences(previous, config)
        raise RunConfigError(f"{logdir} holds a different run ({diffs}); choose another --logdir")
    return True


def _differences(old: dict, new: dict, prefix: str = "") -> str:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _differences(a, b, f"{prefix}{key}.")
            if inner:
                out.append(inner)
        elif a != b:
            out.append(f"{prefix}{key}: saved {a!r}, now {b!r}")
    return "; ".join(out)


@dataclasses.dataclass
class Progress:
    step: int
    total_steps: int
    steps_per_sec: float
    last_episode_return: float | None
    last_eval_return: float | None


class Trainer:
    """One training run in `logdir`; `run()` trains to `total_steps` or resumes to them.

    `env_kwargs` (JSON values) go to `gymnasium.make` for the training and evaluation envs, e.g.
    other matrices for SmoothieLQR-v0; they are part of what identifies the run."""

    def __init__(
        self,
        env_id: str,
        hp: hparams_lib.HParams,
        seed: int,
        logdir: str | os.PathLike,
        on_progress: Callable[[Progress], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        keep_checkpoints: int = 3,
        env_kwargs: dict | None = None,
    ):
        self.env_id = env_id
        self.hp = hp
        self.seed = seed
        self.logdir = pathlib.Path(logdir)
        self.on_progress = on_progress or (lambda progress: None)
        self.on_log = on_log or (lambda message: None)
        self.env_kwargs = dict(env_kwargs or {})
        try:
            json.dumps(self.env_kwargs)
        except TypeError as error:
            raise RunConfigError(f"env_kwargs must be JSON values (numbers, lists, ...): {error}") from error
        self.config = resolved_config(hp, env_id, seed, self.env_kwargs)
        self.checkpoints = CheckpointDirectory(self.logdir / "checkpoints", keep=keep_checkpoints)
        self._stop_signal: int | None = None

        self.env = make_env(env_id, **self.env_kwargs)
        self.eval_env = make_env(env_id, **self.env_kwargs)
        self.observation_dim = int(np.prod(self.env.observation_space.shape))
        self.action_space = self.env.action_space
        self.action_dim = int(np.prod(self.action_space.shape))
        # Through this module's name, looked up now: a caller may replace `training.make_agent`.
        self.agent = make_agent(hp, self.observation_dim, self.action_space, seed)
        self.replay = ReplayBuffer(hp.replay_capacity, self.observation_dim, self.action_dim)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))

        self.step = 0
        self.episode = 0
        self.evaluations = 0
        self.episode_return = 0.0
        self.episode_actions: list[list[float]] = []
        self.last_episode_return: float | None = None
        self.last_eval_return: float | None = None
        self.observation = None
        # The next action, drawn by the last train step (train_step_and_act); None: draw it anew.
        self.pending_action: np.ndarray | None = None
        # Seconds spent in each part of the loop (this process only), for bin/benchmark.
        self.timings = {"act": 0.0, "env": 0.0, "replay_add": 0.0, "sample_and_update": 0.0}

    # --- state -----------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "env": self.env_id,
            "observation_dim": self.observation_dim,
            "action_dim": self.action_dim,
            "step": self.step,
            "episode": self.episode,
            "evaluations": self.evaluations,
            "episode_return": self.episode_return,
            "episode_actions": self.episode_actions,
            "last_episode_return": self.last_episode_return,
            "last_eval_return": self.last_eval_return,
            "numpy_rng": self.rng.bit_generator.state,
            "pending_action": None if self.pending_action is None else self.pending_action.tolist(),
        }

    def save_checkpoint(self) -> pathlib.Path:
        return self.checkpoints.save(self.step, self.agent.checkpoint_items(), self.replay, self._state())

    def restore(self, path: pathlib.Path) -> None:
        """Loads checkpoint `path` and brings the environment back to the same moment."""
        state = self.checkpoints.read_state(path)
        expected = (self.env_id, self.observation_dim, self.action_dim)
        found = (state.get("env"), state.get("observation_dim"), state.get("action_dim"))
        if found != expected:
            raise CheckpointError(
                f"checkpoint {path} is from env {found[0]} (observation {found[1]}, action {found[2]}), "
                f"not {expected[0]} (observation {expected[1]}, action {expected[2]})"
            )
        try:
            self.checkpoints.restore_model(path, self.agent.checkpoint_items())
        except (ValueError, tf.errors.OpError) as error:
            raise CheckpointError(f"checkpoint {path} does not fit this agent: {error}") from error
        try:
            self.replay.load(path / "replay.npz")
        except (OSError, ValueError) as error:
            raise CheckpointError(f"checkpoint {path} has an unusable replay buffer: {error}") from error
        self.step = state["step"]
        self.episode = state["episode"]
        self.evaluations = state["evaluations"]
        self.episode_return = state["episode_return"]
        self.episode_actions = state["episode_actions"]
        self.last_episode_return = state["last_episode_return"]
        self.last_eval_return = state["last_eval_return"]
        self.rng.bit_generator.state = state["numpy_rng"]
        pending = state.get("pending_action")
        self.pending_action = None if pending is None else np.asarray(pending, dtype=self.action_space.dtype)
        self.observation = self._replay_episode()

    def _replay_episode(self) -> np.ndarray:
        observation, _ = self.env.reset(seed=episode_seed(self.seed, self.episode))
        for action in self.episode_actions:
            observation, *_ = self.env.step(np.asarray(action, dtype=self.action_space.dtype))
        return observation

    # --- the loop --------------------------------------------------------------------------

    def _request_stop(self, signum, frame) -> None:
        self._stop_signal = signum

    def _act(self) -> np.ndarray:
        if self.pending_action is not None:
            action, self.pending_action = self.pending_action, None
            return action
        if self.step < self.hp.warmup_steps:
            return self.rng.uniform(self.action_space.low, self.action_space.high).astype(
                self.action_space.dtype
            )
        return self.agent.act(self.observation)

    def _kept_checkpoint(self) -> str:
        """How a stopped run can go on: from its last good checkpoint, if it has one."""
        latest = self.checkpoints.latest()
        if latest is None:
            return " before its first checkpoint"
        return f" and its last good checkpoint is kept ({latest.name})"

    def _update(self) -> dict | None:
        """`updates_per_step` train steps. When the agent chooses the next action (warm-up is
        over), the last step also draws it from the updated policy, in the same compiled call.

        Raises NonFiniteLossError when a step's losses, or the weights it leaves, are not all
        finite: before this step's checkpoint, so the checkpoints on disk keep finite weights."""
        metrics = None
        for i in range(self.hp.updates_per_step):
            batch = self.replay.sample(self.hp.batch_size, self.rng)
            if i == self.hp.updates_per_step - 1 and self.step >= self.hp.warmup_steps:
                metrics, action = self.agent.train_step_and_act(batch, tf.constant(self.observation))
                self.pending_action = action.numpy()
            else:
                metrics = self.agent.train_step(batch)
            finite_weights = bool(metrics.pop(FINITE))
            losses = [float(metrics[tag]) for tag in ("loss/critic", "loss/policy")]
            if not all(math.isfinite(x) for x in losses):
                raise NonFiniteLossError(
                    f"non-finite loss at step {self.step} (critic {losses[0]}, policy {losses[1]}); "
                    f"the run stopped{self._kept_checkpoint()}"
                )
            if not finite_weights:
                raise NonFiniteLossError(
                    f"non-finite weights after the update at step {self.step} (its losses: critic "
                    f"{losses[0]}, policy {losses[1]}); the run stopped{self._kept_checkpoint()}"
                )
        return metrics

    def evaluate(self, episodes: int | None = None) -> list[float]:
        """Deterministic (mean-action) episodes on the evaluation env, seeded per evaluation."""
        returns = []
        for i in range(episodes or self.hp.eval_episodes):
            observation, _ = self.eval_env.reset(seed=eval_seed(self.seed, self.evaluations, i))
            total, done = 0.0, False
            while not done:
                observation, reward, terminated, truncated, _ = self.eval_env.step(
                    self.agent.act(observation, deterministic=True)
                )
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        self.evaluations += 1
        return returns

    def run(self) -> dict:
        """Trains to total_steps; returns the final figures. Raises Interrupted after a signal."""
        resuming = check_logdir(self.logdir, self.config)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.checkpoints.remove_temporaries()
        latest = self.checkpoints.latest()
        if latest is not None:
            self.restore(latest)
            self.on_log(f"resumed from {latest} at step {self.step}")
        else:
            self.observation, _ = self.env.reset(seed=episode_seed(self.seed, 0))
        if not resuming:
            record = {**self.config, "versions": package_versions()}
            temporary = self.logdir / "hparams.json.tmp"
            temporary.write_text(json.dumps(record, indent=2))
            os.replace(temporary, self.logdir / "hparams.json")

        summaries = Summaries(str(self.logdir), self.action_dim)
        if latest is None:
            summaries.write_run_header(self.hp, self.logdir.name, {"env": self.env_id, "seed": self.seed})
        # Python lets only the main thread install handlers; a run on another thread (a Ray Tune
        # trial) goes without them and resumes from its last periodic checkpoint if it is killed.
        previous_handlers = {}
        if threading.current_thread() is threading.main_thread():
            previous_handlers = {
                sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        try:
            self._loop(summaries)
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            summaries.close()
        return {
            "step": self.step,
            "episodes": self.episode,
            "last_eval_return": self.last_eval_return,
            "logdir": str(self.logdir),
        }

    def _loop(self, summaries: Summaries) -> None:
        hp = self.hp
        window_start, window_steps = time.perf_counter(), 0
        steps_per_sec = 0.0
        while self.step < hp.total_steps:
            if self._stop_signal is not None:
                self.save_checkpoint()
                raise Interrupted(f"signal {self._stop_signal} at step {self.step}; checkpoint saved")
            clock = time.perf_counter()
            action = self._act()
            after_act = time.perf_counter()
            next_observation, reward, terminated, truncated, _ = self.env.step(action)
            after_env = time.perf_counter()
            self.replay.add(self.observation, action, reward, next_observation, terminated, truncated)
            self.episode_actions.append([float(x) for x in action])
            self.episode_return += float(reward)
            self.observation = next_observation
            self.step += 1
            window_steps += 1

            if terminated or truncated:
                self.last_episode_return = self.episode_return
                summaries.scalars(self.step, {"train/episode_return": self.episode_return})
                self.episode += 1
                self.episode_return = 0.0
                self.episode_actions = []
                self.observation, _ = self.env.reset(seed=episode_seed(self.seed, self.episode))
                self.agent.reset_noise()
            after_store = time.perf_counter()

            metrics = self._update() if len(self.replay) >= hp.batch_size else None
            timings = self.timings
            timings["act"] += after_act - clock
            timings["env"] += after_env - after_act
            timings["replay_add"] += after_store - after_env
            timings["sample_and_update"] += time.perf_counter() - after_store

            if self.step % SUMMARY_INTERVAL == 0 or self.step == hp.total_steps:
                elapsed = time.perf_counter() - window_start
                steps_per_sec = window_steps / max(elapsed, 1e-9)
                window_start, window_steps = time.perf_counter(), 0
                summaries.scalars(self.step, {"perf/env_steps_per_sec": steps_per_sec})
                if metrics is not None:
                    summaries.train_step(self.step, {k: v.numpy() for k, v in metrics.items()})
            if self.step % hp.eval_interval == 0 or self.step == hp.total_steps:
                returns = self.evaluate()
                self.last_eval_return = float(np.mean(returns))
                summaries.scalars(self.step, {EVAL_RETURN: self.last_eval_return})
                summaries.flush()
                self.on_log(f"step {self.step}: evaluation return {self.last_eval_return:.2f}")
            if self.step % hp.checkpoint_interval == 0 or self.step == hp.total_steps:
                self.save_checkpoint()
            self.on_progress(
                Progress(
                    self.step, hp.total_steps, steps_per_sec, self.last_episode_return, self.last_eval_return
                )
            )
        self.export_policy(self.logdir / "policy")

    def export_policy(self, directory: pathlib.Path) -> None:
        """The mean action as a SavedModel, runnable with TensorFlow alone:
        `m = tf.saved_model.load(dir)`; `m.mean_action(observations [N, S]) -> [N, d]`;
        `m.env_id`, `m.env_kwargs` (JSON) and `m.step` say which environment and training step it
        is from."""
        module = tf.Module()
        module.policy = self.agent.policy
        module.env_id = tf.Variable(self.env_id, trainable=False, name="env_id")
        module.env_kwargs = tf.Variable(json.dumps(self.env_kwargs), trainable=False, name="env_kwargs")
        module.step = tf.Variable(self.step, dtype=tf.int64, trainable=False, name="step")
        module.mean_action = mean_action_function(self.agent.policy, self.observation_dim)
        temporary = directory.with_name(directory.name + ".tmp")
        tf.saved_model.save(module, str(temporary))
        if directory.exists():
            import shutil

            shutil.rmtree(directory)
        os.replace(temporary, directory)
