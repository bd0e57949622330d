"""The paper's synthetic experiment: Smoothie and DDPG on SmoothieBandit-v0 over many seeds.

The reward has a local optimum at 0, where the policy starts, and the global one at 1.5.
Smoothie's smoothed critic sees through the dip between them when its variance is large
enough; DDPG's critic learns the unsmoothed reward and its mean stays at 0.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import os
import pathlib

import numpy as np
import tensorflow as tf

from smoothie_tf import envs
from smoothie_tf import hparams as hparams_lib
from smoothie_tf.training import Trainer, check_logdir, resolved_config

GLOBAL_OPTIMUM, LOCAL_OPTIMUM, RADIUS = 1.5, 0.0, 0.4


@dataclasses.dataclass
class Trajectory:
    """One seed's policy over training: mean and variance at each evaluation step."""

    agent: str
    seed: int
    steps: list[int]
    means: list[float]
    variances: list[float]

    @property
    def outcome(self) -> str:
        final = self.means[-1]
        if abs(final - GLOBAL_OPTIMUM) < RADIUS:
            return "global"
        if abs(final - LOCAL_OPTIMUM) < RADIUS:
            return "local"
        return "elsewhere"


def run_seed(hp: hparams_lib.HParams, seed: int, logdir: pathlib.Path) -> Trajectory:
    """Trains one seed in logdir and records μ and exp(φ) at every evaluation in its
    `trajectory.json`, rewritten atomically at each one; a finished seed is read back from it.
    A stopped run resumes its trajectory with its training: the records up to the checkpoint it
    resumes from are kept, the checkpoint's own recorded (from the checkpoint) when the stop came
    before it, the later ones recorded again. Raises RunConfigError, as Trainer does, when logdir
    holds another run (other hparams or seed)."""
    record_file = logdir / "trajectory.json"
    same_run = check_logdir(logdir, resolved_config(hp, envs.BANDIT_ID, seed))
    saved = Trajectory(**json.loads(record_file.read_text())) if same_run and record_file.exists() else None
    if saved is not None and saved.steps[-1:] == [hp.total_steps] and (logdir / "policy").exists():
        return saved
    trainer = Trainer(envs.BANDIT_ID, hp, seed, logdir)
    state = tf.ones([1, 1, 1])  # [member, batch, state]
    trajectory = Trajectory(hp.agent, seed, [], [], [])

    def record(step: int) -> None:
        trajectory.steps.append(step)
        trajectory.means.append(float(trainer.agent.policy(state)[0, 0, 0]))
        trajectory.variances.append(float(trainer.agent.policy.variance()[0, 0]))
        temporary = record_file.with_name(record_file.name + ".tmp")
        temporary.write_text(json.dumps(dataclasses.asdict(trajectory)))
        os.replace(temporary, record_file)

    def evaluation_step(step: int) -> bool:
        return step % hp.eval_interval == 0 or step == hp.total_steps

    latest = trainer.checkpoints.latest() if same_run else None
    if latest is not None:
        step = int(trainer.checkpoints.read_state(latest)["step"])
        if saved is not None:  # its records up to the checkpoint (steps increase)
            kept = bisect.bisect_right(saved.steps, step)
            trajectory = Trajectory(
                hp.agent, seed, saved.steps[:kept], saved.means[:kept], saved.variances[:kept]
            )
        if step > 0 and evaluation_step(step) and step not in trajectory.steps:
            trainer.restore(step)  # stopped between the checkpoint and its record
            record(step)
    trainer.on_progress = lambda progress: record(progress.step) if evaluation_step(progress.step) else None
    trainer.run()
    return trajectory


def summary(trajectories: list[Trajectory]) -> dict[str, dict[str, int]]:
    """agent -> {outcome: number of seeds}."""
    counts: dict[str, dict[str, int]] = {}
    for t in trajectories:
        agent = counts.setdefault(t.agent, {"global": 0, "local": 0, "elsewhere": 0})
        agent[t.outcome] += 1
    return counts


def plot(trajectories: list[Trajectory], out: pathlib.Path, variances=(0.0, 0.1, 0.3, 1.0)) -> None:
    """Three panels: the reward and its smoothed versions; the policy mean over training for
    both methods; Smoothie's variance over training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    grid = np.linspace(-2, 2, 801)
    for v in variances:
        label = "r(a)" if v == 0 else f"smoothed, Σ = {v:g}"
        axes[0].plot(grid, envs.smoothed_reward(grid, v) if v else envs.bump_reward(grid), label=label)
    axes[0].set(title="reward and its Gaussian smoothing", xlabel="action a")
    axes[0].legend()
    colours = {"smoothie": "tab:blue", "ddpg": "tab:red"}
    for t in trajectories:
        axes[1].plot(t.steps, t.means, color=colours.get(t.agent, "gray"), alpha=0.6, label=t.agent)
        if t.agent == "smoothie":
            axes[2].plot(t.steps, t.variances, color=colours["smoothie"], alpha=0.6)
    handles, labels = axes[1].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axes[1].legend(unique.values(), unique.keys())
    for y in (GLOBAL_OPTIMUM, LOCAL_OPTIMUM):
        axes[1].axhline(y, color="black", linewidth=0.5, linestyle="--")
    axes[1].set(title="policy mean μ over training", xlabel="environment step")
    axes[2].set(title="Smoothie's variance exp(φ) over training", xlabel="environment step", yscale="log")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
