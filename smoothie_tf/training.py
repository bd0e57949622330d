"""The training run: act, store, update, evaluate, summarise, checkpoint; resumes exactly.

A `PopulationTrainer` trains P runs (members) in lockstep, one compiled train step per
environment step for all of them (docs/design.md section 9); each member has its own environment,
evaluation environment, replay buffer, NumPy generator and run directory, and a member whose
update turns non-finite stops while the others go on. `Trainer` is the population of one.

Exact resume: every source of randomness is either a random stream inside the agent (saved in
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
from smoothie_tf.agents import make_population, mean_action_function
from smoothie_tf.agents.base import FINITE, HEALTHY
from smoothie_tf.checkpoints import PREFIX, CheckpointDirectory, CheckpointError
from smoothie_tf.envs import make_env
from smoothie_tf.networks import unbatched_policy
from smoothie_tf.replay import Batch, ReplayBuffer
from smoothie_tf.run_dirs import (
    ALL_DIVERGED,
    DIVERGED,
    RunConfigError,
    check_logdir,
    left_out,
    resolved_config,
)
from smoothie_tf.summaries import EVAL_RETURN, Summaries

SUMMARY_INTERVAL = 1000  # env steps between train-step summaries


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


@dataclasses.dataclass
class Progress:
    """Where training stands; for a population, the returns are means over the running members."""

    step: int
    total_steps: int
    steps_per_sec: float
    last_episode_return: float | None
    last_eval_return: float | None


class Member:
    """One run of a population: its hparams, seed and directory, and everything of it that lives
    outside the agent (environments, replay, NumPy generator, counters)."""

    def __init__(
        self, index: int, env_id: str, hp, seed: int, logdir, env_kwargs: dict, keep_checkpoints: int
    ):
        self.index = index
        self.hp = hp
        self.seed = seed
        self.logdir = pathlib.Path(logdir)
        self.config = resolved_config(hp, env_id, seed, env_kwargs)
        self.checkpoints = CheckpointDirectory(self.logdir / "checkpoints", keep=keep_checkpoints)
        self.env = make_env(env_id, **env_kwargs)
        self.eval_env = make_env(env_id, **env_kwargs)
        observation_dim = int(np.prod(self.env.observation_space.shape))
        action_dim = int(np.prod(self.env.action_space.shape))
        self.replay = ReplayBuffer(hp.replay_capacity, observation_dim, action_dim)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        self.episode = 0
        self.evaluations = 0
        self.episode_return = 0.0
        self.episode_actions: list[list[float]] = []
        self.last_episode_return: float | None = None
        self.last_eval_return: float | None = None
        self.observation = None
        self.summaries: Summaries | None = None
        self.stopped: str | None = None  # why the member stopped, if it did
        self.display_name: str | None = None

    @property
    def name(self) -> str:
        """How log lines name the member: its directory's name (with its parent's, when the
        population's names need it to be told apart; see PopulationTrainer)."""
        return self.display_name or self.logdir.name

    def reset_env(self) -> None:
        self.observation, _ = self.env.reset(seed=episode_seed(self.seed, self.episode))

    def replay_episode(self) -> None:
        """Brings the environment back to the current moment of the episode."""
        self.reset_env()
        for action in self.episode_actions:
            self.observation, *_ = self.env.step(np.asarray(action, dtype=self.env.action_space.dtype))

    def state(self, step: int, pending_action: np.ndarray | None) -> dict:
        return {
            "env": self.config["env"],
            "observation_dim": self.replay.observation_dim,
            "action_dim": self.replay.action_dim,
            "step": step,
            "episode": self.episode,
            "evaluations": self.evaluations,
            "episode_return": self.episode_return,
            "episode_actions": self.episode_actions,
            "last_episode_return": self.last_episode_return,
            "last_eval_return": self.last_eval_return,
            "numpy_rng": self.rng.bit_generator.state,
            "pending_action": None if pending_action is None else pending_action.tolist(),
        }

    def load_state(self, state: dict) -> None:
        self.episode = state["episode"]
        self.evaluations = state["evaluations"]
        self.episode_return = state["episode_return"]
        self.episode_actions = state["episode_actions"]
        self.last_episode_return = state["last_episode_return"]
        self.last_eval_return = state["last_eval_return"]
        self.rng.bit_generator.state = state["numpy_rng"]


def _same_for_all(hps: list, key: str) -> None:
    values = [getattr(hp, key) for hp in hps]
    if any(value != values[0] for value in values):
        raise RunConfigError(
            f"the members differ in {key} ({', '.join(map(str, values))}); a population steps its "
            "members together and needs one value of it"
        )


# What the loop itself is made of: every member of a population has the same value.
LOOP_KEYS = (
    "agent",
    "total_steps",
    "warmup_steps",
    "eval_interval",
    "eval_episodes",
    "checkpoint_interval",
    "updates_per_step",
)


class PopulationTrainer:
    """P runs trained together in lockstep by one agent of P members; `run()` trains every member
    to `total_steps` or resumes them.

    hps, seeds, logdirs: one per member. Members may differ in any hparam but the shape-giving
    ones (`smoothie_tf.agents.config.SHAPE_KEYS`) and those of the loop (`LOOP_KEYS`).
    `env_kwargs` (JSON values) go to `gymnasium.make` for every environment, e.g. other matrices
    for SmoothieLQR-v0; they are part of what identifies each run.

    A member whose update turns non-finite stops, writes `diverged.json` and is left out when the
    population runs again, even in a population of one (a group of `bin/train --processes`)."""

    # A single run (`Trainer`) stops with NonFiniteLossError instead and keeps no diverged.json.
    single_run = False

    def __init__(
        self,
        env_id: str,
        hps: list[hparams_lib.HParams],
        seeds: list[int],
        logdirs: list[str | os.PathLike],
        on_progress: Callable[[Progress], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        keep_checkpoints: int = 3,
        env_kwargs: dict | None = None,
    ):
        if not (len(hps) == len(seeds) == len(logdirs) >= 1):
            raise RunConfigError(
                f"{len(hps)} hparams, {len(seeds)} seeds, {len(logdirs)} logdirs: one each per member"
            )
        resolved = [pathlib.Path(d).resolve() for d in logdirs]
        if len(set(resolved)) != len(resolved):
            raise RunConfigError("two members share a run directory")
        for key in LOOP_KEYS:
            _same_for_all(hps, key)
        self.env_id = env_id
        self.hp = hps[0]
        self.on_progress = on_progress or (lambda progress: None)
        self.on_log = on_log or (lambda message: None)
        self.env_kwargs = dict(env_kwargs or {})
        try:
            json.dumps(self.env_kwargs)
        except TypeError as error:
            raise RunConfigError(f"env_kwargs must be JSON values (numbers, lists, ...): {error}") from error
        self._stop_signal: int | None = None
        self.members = [
            Member(k, env_id, hp, seed, logdir, self.env_kwargs, keep_checkpoints)
            for k, (hp, seed, logdir) in enumerate(zip(hps, seeds, logdirs, strict=True))
        ]
        if len({m.logdir.name for m in self.members}) < len(
            self.members
        ):  # e.g. member0/seed0, member1/seed0
            for m in self.members:
                m.display_name = f"{m.logdir.parent.name}/{m.logdir.name}"
        env = self.members[0].env
        self.observation_dim = int(np.prod(env.observation_space.shape))
        self.action_space = env.action_space
        self.action_dim = int(np.prod(self.action_space.shape))
        try:
            # Through this module's name, looked up now: a caller may replace `training.make_population`.
            self.agent = make_population(hps, self.observation_dim, self.action_space, list(seeds))
        except ValueError as error:
            raise RunConfigError(str(error)) from error
        self.step = 0
        # The next actions [P, d], drawn by the last train step (train_step_and_act); None: draw anew.
        self.pending_action: np.ndarray | None = None
        # Seconds spent in each part of the loop (this process only), for bin/benchmark.
        self.timings = {"act": 0.0, "env": 0.0, "replay_add": 0.0, "sample_and_update": 0.0}

    @property
    def running(self) -> list[Member]:
        return [m for m in self.members if m.stopped is None]

    # --- state -----------------------------------------------------------------------------

    def save_checkpoints(self) -> None:
        """A checkpoint of every running member, each in its own run directory."""
        for m in self.running:
            pending = None if self.pending_action is None else self.pending_action[m.index]
            m.checkpoints.save(
                self.step, self.agent.member_state(m.index), m.replay, m.state(self.step, pending)
            )

    def restore(self, step: int) -> None:
        """Loads every running member's checkpoint of `step` and brings its environment back to
        the same moment."""
        states, pending = [], []
        for m in self.members:
            if m.stopped is not None:  # its slot keeps its fresh weights; it is never stepped
                states.append(self.agent.member_state(m.index))
                pending.append(None)
                continue
            path = m.checkpoints.directory / f"{PREFIX}{step:010d}"
            state = m.checkpoints.read_state(path)
            expected = (self.env_id, self.observation_dim, self.action_dim)
            found = (state.get("env"), state.get("observation_dim"), state.get("action_dim"))
            if found != expected:
                raise CheckpointError(
                    f"checkpoint {path} is from env {found[0]} (observation {found[1]}, action {found[2]}), "
                    f"not {expected[0]} (observation {expected[1]}, action {expected[2]})"
                )
            states.append(m.checkpoints.read_model(path))
            try:
                m.replay.load(path / "replay.npz")
            except (OSError, ValueError) as error:
                raise CheckpointError(f"checkpoint {path} has an unusable replay buffer: {error}") from error
            m.load_state(state)
            pending.append(state.get("pending_action"))
        try:
            self.agent.load_member_states(states)
        except ValueError as error:
            raise CheckpointError(f"checkpoint of step {step} does not fit this agent: {error}") from error
        self.step = step
        if all(p is not None for m, p in zip(self.members, pending, strict=True) if m.stopped is None):
            rows = [p if p is not None else np.zeros(self.action_dim) for p in pending]
            self.pending_action = np.asarray(rows, dtype=self.action_space.dtype)
        else:
            self.pending_action = None
        for m in self.running:
            m.replay_episode()

    def _resume_step(self) -> int | None:
        """The checkpoint step every running member resumes from: the latest one they all have
        (None: a fresh start). A member without checkpoints counts as at step 0: its fresh state
        is its step-0 checkpoint, so a population stopped while it wrote those starts afresh.
        Raises RunConfigError when no step is common."""
        steps = [{int(p.name[len(PREFIX) :]) for p in m.checkpoints.all()} or {0} for m in self.running]
        common = set.intersection(*steps)
        if not common:
            found = "; ".join(
                f"{m.name}: {', '.join(map(str, sorted(s))) or 'none'}"
                for m, s in zip(self.running, steps, strict=True)
            )
            raise RunConfigError(
                f"the members' checkpoints have no step in common ({found}); train them apart, or "
                "together from one start"
            )
        return max(common) or None  # step 0: the fresh start itself

    # --- the loop --------------------------------------------------------------------------

    def _request_stop(self, signum, frame) -> None:
        self._stop_signal = signum

    def _act(self) -> np.ndarray:
        """One action per member [P, d]."""
        if self.pending_action is not None:
            actions, self.pending_action = self.pending_action, None
            return actions
        if self.step < self.hp.warmup_steps:
            space = self.action_space
            return np.stack([m.rng.uniform(space.low, space.high).astype(space.dtype) for m in self.members])
        return self.agent.act_population(np.stack([self._observation(m) for m in self.members]))

    def _observation(self, member: Member) -> np.ndarray:
        if member.observation is None:  # a member that never started (left out on resume)
            return np.zeros(self.observation_dim, np.float32)
        return np.asarray(member.observation, np.float32)

    def _kept_checkpoint(self, member: Member) -> str:
        """How a stopped run can go on: from its last good checkpoint, if it has one."""
        latest = member.checkpoints.latest()
        if latest is None:
            return " before its first checkpoint"
        return f" and its last good checkpoint is kept ({latest.name})"

    def _diverged(self, member: Member, metrics: dict) -> None:
        """Stops a member whose update left non-finite losses or weights (raises for a single run)."""
        k = member.index
        losses = [float(metrics[tag][k]) for tag in ("loss/critic", "loss/policy")]
        if not all(math.isfinite(x) for x in losses):
            message = f"non-finite loss at step {self.step} (critic {losses[0]}, policy {losses[1]})"
        else:
            message = (
                f"non-finite weights after the update at step {self.step} (its losses: critic "
                f"{losses[0]}, policy {losses[1]})"
            )
        if self.single_run:
            raise NonFiniteLossError(f"{message}; the run stopped{self._kept_checkpoint(member)}")
        member.stopped = message
        record = {"step": self.step, "reason": message}
        temporary = member.logdir / (DIVERGED + ".tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, member.logdir / DIVERGED)
        self.on_log(f"{member.name}: {message}; it stopped{self._kept_checkpoint(member)}, the others go on")

    def _update(self) -> dict | None:
        """`updates_per_step` train steps of every member. When the agent chooses the next actions
        (warm-up is over), the last step also draws them from the updated policies, in the same
        compiled call.

        A member whose step leaves non-finite losses or weights stops, before this step's
        checkpoint, so the checkpoints on disk keep finite weights (a single run raises
        NonFiniteLossError)."""
        metrics = None
        for i in range(self.hp.updates_per_step):
            # A stopped member's slot is stepped on zeros: its replay may be empty (left out on
            # resume), and the others' updates do not depend on it.
            samples = [
                m.replay.sample(self.hp.batch_size, m.rng) if m.stopped is None else self._idle_batch()
                for m in self.members
            ]
            batch = Batch(*(np.stack(field) for field in zip(*samples, strict=True)))
            if i == self.hp.updates_per_step - 1 and self.step >= self.hp.warmup_steps:
                observations = tf.constant(np.stack([self._observation(m) for m in self.members]))
                metrics, actions = self.agent.train_step_and_act(batch, observations)
                self.pending_action = actions.numpy()
            else:
                metrics = self.agent.train_step(batch)
            healthy = metrics.pop(HEALTHY).numpy()
            metrics.pop(FINITE)
            for m in self.running:
                if not healthy[m.index]:
                    self._diverged(m, metrics)
        return metrics

    def _idle_batch(self) -> Batch:
        """A batch of zeros, for the slot of a member that no longer trains."""
        b, s, d = self.hp.batch_size, self.observation_dim, self.action_dim
        return Batch(
            observations=np.zeros((b, s), np.float32),
            actions=np.zeros((b, d), np.float32),
            rewards=np.zeros(b, np.float32),
            next_observations=np.zeros((b, s), np.float32),
            terminated=np.zeros(b, np.float32),
        )

    def evaluate_members(self, episodes: int | None = None) -> dict[int, list[float]]:
        """Deterministic (mean-action) episodes on each running member's evaluation env, seeded per
        evaluation; the members' episodes run side by side, one compiled call per env step."""
        running = self.running
        returns: dict[int, list[float]] = {m.index: [] for m in running}
        observations = np.zeros((len(self.members), self.observation_dim), np.float32)
        for i in range(episodes or self.hp.eval_episodes):
            totals = {}
            for m in running:
                observations[m.index], _ = m.eval_env.reset(seed=eval_seed(m.seed, m.evaluations, i))
                totals[m.index] = 0.0
            going = list(running)
            while going:
                actions = self.agent.act_population(observations, deterministic=True)
                still = []
                for m in going:
                    observation, reward, terminated, truncated, _ = m.eval_env.step(actions[m.index])
                    observations[m.index] = observation
                    totals[m.index] += float(reward)
                    if not (terminated or truncated):
                        still.append(m)
                going = still
            for k, total in totals.items():
                returns[k].append(total)
        for m in running:
            m.evaluations += 1
        return returns

    def evaluated(self, member: Member, returns: list[float]) -> None:
        """Called after each member's evaluation, with its episode returns (a hook for callers)."""

    def run(self) -> dict:
        """Trains to total_steps; returns the final figures. Raises Interrupted after a signal."""
        fresh = {}
        for m in self.members:
            fresh[m.index] = not check_logdir(m.logdir, m.config)
        for m in self.members:
            diverged = m.logdir / DIVERGED
            if not self.single_run and diverged.exists():
                m.stopped = f"diverged before ({diverged})"
                self.on_log(left_out(m.name, m.logdir))
        if not self.running:
            raise RunConfigError(ALL_DIVERGED)
        step = self._resume_step()  # before anything is written: it may refuse
        for m in self.members:
            m.logdir.mkdir(parents=True, exist_ok=True)
            m.checkpoints.remove_temporaries()
        if step is not None:
            self.restore(step)
            self.on_log(f"resumed {len(self.running)} run(s) at step {self.step}")
        else:
            for m in self.running:
                m.reset_env()
        for m in self.members:
            if fresh[m.index]:
                record = {**m.config, "versions": package_versions()}
                temporary = m.logdir / "hparams.json.tmp"
                temporary.write_text(json.dumps(record, indent=2))
                os.replace(temporary, m.logdir / "hparams.json")
        if step is None and len(self.members) > 1:
            # A common point every member can go back to, should a save be cut off midway.
            self.save_checkpoints()

        if self.step < self.hp.total_steps:  # a finished run adds no events file
            for m in self.running:
                m.summaries = Summaries(str(m.logdir), self.action_dim)
                if step is None:
                    m.summaries.write_run_header(m.hp, m.logdir.name, {"env": self.env_id, "seed": m.seed})
        # Python lets only the main thread install handlers; a run on another thread (a Ray Tune
        # trial) goes without them and resumes from its last periodic checkpoint if it is killed.
        previous_handlers = {}
        if threading.current_thread() is threading.main_thread():
            previous_handlers = {
                sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        try:
            self._loop()
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            for m in self.members:
                if m.summaries is not None:
                    m.summaries.close()
        return {
            "step": self.step,
            "episodes": [m.episode for m in self.members],
            "last_eval_return": [m.last_eval_return for m in self.members],
            "logdir": [str(m.logdir) for m in self.members],
            "diverged": [m.name for m in self.members if m.stopped is not None],
        }

    def _mean(self, values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return float(np.mean(known)) if known else None

    def _loop(self) -> None:
        hp = self.hp
        first_step = self.step
        window_start, window_steps = time.perf_counter(), 0
        steps_per_sec = 0.0
        while self.step < hp.total_steps and self.running:
            if self._stop_signal is not None:
                self.save_checkpoints()
                raise Interrupted(f"signal {self._stop_signal} at step {self.step}; checkpoint saved")
            clock = time.perf_counter()
            actions = self._act()
            after_act = time.perf_counter()
            results = [(m, m.env.step(actions[m.index])) for m in self.running]
            after_env = time.perf_counter()
            ended = np.zeros(len(self.members), bool)
            for m, (next_observation, reward, terminated, truncated, _) in results:
                action = actions[m.index]
                m.replay.add(m.observation, action, reward, next_observation, terminated, truncated)
                m.episode_actions.append([float(x) for x in action])
                m.episode_return += float(reward)
                m.observation = next_observation
                if terminated or truncated:
                    m.last_episode_return = m.episode_return
                    m.summaries.scalars(self.step + 1, {"train/episode_return": m.episode_return})
                    m.episode += 1
                    m.episode_return = 0.0
                    m.episode_actions = []
                    m.reset_env()
                    ended[m.index] = True
            if ended.any():
                self.agent.reset_noise(ended if len(self.members) > 1 else None)
            self.step += 1
            window_steps += 1
            after_store = time.perf_counter()

            # The running members' replays hold as many transitions (a stopped one's may not).
            metrics = self._update() if len(self.running[0].replay) >= hp.batch_size else None
            timings = self.timings
            timings["act"] += after_act - clock
            timings["env"] += after_env - after_act
            timings["replay_add"] += after_store - after_env
            timings["sample_and_update"] += time.perf_counter() - after_store

            if self.step % SUMMARY_INTERVAL == 0 or self.step == hp.total_steps:
                elapsed = time.perf_counter() - window_start
                steps_per_sec = window_steps / max(elapsed, 1e-9)
                window_start, window_steps = time.perf_counter(), 0
                values = None if metrics is None else {k: v.numpy() for k, v in metrics.items()}
                for m in self.running:
                    m.summaries.scalars(self.step, {"perf/env_steps_per_sec": steps_per_sec})
                    if values is not None:
                        m.summaries.train_step(self.step, {k: v[m.index] for k, v in values.items()})
            if self.step % hp.eval_interval == 0 or self.step == hp.total_steps:
                for k, returns in self.evaluate_members().items():
                    m = self.members[k]
                    m.last_eval_return = float(np.mean(returns))
                    m.summaries.scalars(self.step, {EVAL_RETURN: m.last_eval_return})
                    m.summaries.flush()
                    self.evaluated(m, returns)
                    prefix = f"{m.name}: " if len(self.members) > 1 else ""
                    self.on_log(f"{prefix}step {self.step}: evaluation return {m.last_eval_return:.2f}")
            if self.step % hp.checkpoint_interval == 0 or self.step == hp.total_steps:
                self.save_checkpoints()
            running = self.running
            self.on_progress(
                Progress(
                    self.step,
                    hp.total_steps,
                    steps_per_sec,
                    self._mean([m.last_episode_return for m in running]),
                    self._mean([m.last_eval_return for m in running]),
                )
            )
        for m in self.running:
            # A finished run run again keeps its policy; one cut off before its export gets it.
            if self.step > first_step or not (m.logdir / "policy").is_dir():
                self.export_policy(m, m.logdir / "policy")

    def export_policy(self, member: Member, directory: pathlib.Path) -> None:
        """A member's mean action as a SavedModel, runnable with TensorFlow alone:
        `m = tf.saved_model.load(dir)`; `m.mean_action(observations [N, S]) -> [N, d]`;
        `m.env_id`, `m.env_kwargs` (JSON) and `m.step` say which environment and training step it
        is from."""
        policy = unbatched_policy(self.agent.policy, member.index)
        module = tf.Module()
        module.policy = policy
        module.env_id = tf.Variable(self.env_id, trainable=False, name="env_id")
        module.env_kwargs = tf.Variable(json.dumps(self.env_kwargs), trainable=False, name="env_kwargs")
        module.step = tf.Variable(self.step, dtype=tf.int64, trainable=False, name="step")
        module.mean_action = mean_action_function(policy, self.observation_dim)
        temporary = directory.with_name(directory.name + ".tmp")
        tf.saved_model.save(module, str(temporary))
        if directory.exists():
            import shutil

            shutil.rmtree(directory)
        os.replace(temporary, directory)


class Trainer(PopulationTrainer):
    """One training run in `logdir` (a population of one); `run()` trains to `total_steps` or
    resumes to them.

    `env_kwargs` (JSON values) go to `gymnasium.make` for the training and evaluation envs, e.g.
    other matrices for SmoothieLQR-v0; they are part of what identifies the run."""

    single_run = True

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
        super().__init__(env_id, [hp], [seed], [logdir], on_progress, on_log, keep_checkpoints, env_kwargs)
        self.seed = seed
        self.logdir = pathlib.Path(logdir)
        self.config = self.members[0].config

    @property
    def member(self) -> Member:
        return self.members[0]

    @property
    def env(self):
        return self.member.env

    @property
    def eval_env(self):
        return self.member.eval_env

    @property
    def replay(self) -> ReplayBuffer:
        return self.member.replay

    @property
    def checkpoints(self) -> CheckpointDirectory:
        return self.member.checkpoints

    @property
    def episode(self) -> int:
        return self.member.episode

    @property
    def last_eval_return(self) -> float | None:
        return self.member.last_eval_return

    @property
    def observation(self):
        return self.member.observation

    def evaluate(self, episodes: int | None = None) -> list[float]:
        """Deterministic (mean-action) episodes on the evaluation env, seeded per evaluation."""
        return self.evaluate_members(episodes)[0]

    def run(self) -> dict:
        result = super().run()
        return {key: result[key][0] for key in ("episodes", "last_eval_return", "logdir")} | {
            "step": result["step"]
        }
