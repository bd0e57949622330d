"""Whole-loop speed of populations (SPEC.md section 9): environment steps per second of P runs
trained in one process, against single runs in separate processes.

Each figure comes from its own process, so that the populations measured before it do not
share its memory or its thread pools: `python -m smoothie_tf.population_speed --members=P`
prints one JSON object, and `population_figures` starts those processes one after another, then
`processes` single runs side by side, then (`side_by_side`) one one-thread population per CPU,
all at once. `--step_only=1` times the compiled train step alone instead (no environment), which
`population_figures` does for every size on one thread: what one member's update costs a core.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def loop_figures(env_id: str, agent_file: str, members: int, steps: int) -> dict:
    """Environment steps per second, over all members, of a population of `members` runs (seeds
    0..P-1, the hparams of `hparams/<agent_file>.json`) from after `steps // 3` warm-up steps and
    the first 200 updates (compilation) to the end; each loop part's share; memory per member."""
    from smoothie_tf import hparams as hparams_lib
    from smoothie_tf.training import PopulationTrainer

    hp = hparams_lib.load(ROOT / "hparams" / f"{agent_file}.json")
    warmup = max(steps // 3, hp.batch_size)
    hp = dataclasses.replace(
        hp, total_steps=steps, warmup_steps=warmup, eval_interval=10 * steps, checkpoint_interval=10 * steps
    )
    with tempfile.TemporaryDirectory() as logdir:
        trainer = PopulationTrainer(
            env_id,
            [hp] * members,
            list(range(members)),
            [pathlib.Path(logdir) / f"seed{k}" for k in range(members)],
        )
        marks = {}

        def on_progress(progress):
            if progress.step in (warmup + 200, steps - 1):  # from after the first updates compiled
                marks[progress.step] = (time.perf_counter(), dict(trainer.timings))

        trainer.on_progress = on_progress
        trainer.run()  # the final evaluation and export come after step steps - 1: not timed
        agent_bytes = sum(v.numpy().nbytes for v in trainer.agent.state_variables().values())
        replay_bytes = trainer.members[0].replay.nbytes()
    (start, start_timings), (end, end_timings) = marks[warmup + 200], marks[steps - 1]
    timed_steps = steps - 1 - warmup - 200
    parts = {k: end_timings[k] - start_timings[k] for k in end_timings}
    total = end - start
    return {
        "env": env_id,
        "hparams": agent_file,
        "members": members,
        "timed_steps": timed_steps,
        "env_steps_per_sec": round(members * timed_steps / total, 1),
        "env_steps_per_sec_per_member": round(timed_steps / total, 1),
        "fraction": {k: round(v / total, 3) for k, v in parts.items()}
        | {"other": round(1 - sum(parts.values()) / total, 3)},
        "agent_mb_per_member": round(agent_bytes / members / 2**20, 2),
        "replay_mb_per_member": round(replay_bytes / 2**20, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def step_figures(env_id: str, agent_file: str, members: int, calls: int = 50, repeats: int = 7) -> dict:
    """The compiled train step alone of a population of `members` runs with the hparams of
    `hparams/<agent_file>.json`, called as the training loop calls it after warm-up
    (`train_step_and_act` on NumPy arrays: a random batch and observations shaped for `env_id`):
    milliseconds per step and per member, member updates per second."""
    import gymnasium as gym

    from smoothie_tf import benchmarks, envs  # noqa: F401  (envs registers the project's tasks)
    from smoothie_tf import hparams as hparams_lib
    from smoothie_tf.agents.factory import make_population

    hp = hparams_lib.load(ROOT / "hparams" / f"{agent_file}.json")
    env = gym.make(env_id)
    observation_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = make_population([hp] * members, observation_dim, env.action_space, list(range(members)))
    env.close()
    batch = benchmarks.random_batch(hp.batch_size, observation_dim, action_dim, members=members)
    batch = type(batch)(*(x.numpy() for x in batch))
    observations = batch.observations[:, 0]
    seconds = benchmarks.time_calls(
        {"step": lambda: agent.train_step_and_act(batch, observations)[1]}, calls, repeats
    )["step"]
    return {
        "env": env_id,
        "hparams": agent_file,
        "members": members,
        "step_ms": round(1e3 * seconds, 3),
        "ms_per_member": round(1e3 * seconds / members, 3),
        "member_updates_per_sec": round(members / seconds, 1),
    }


def _command(env_id: str, agent_file: str, members: int, steps: int, step_only: bool = False) -> list[str]:
    return [
        sys.executable,
        "-m",
        "smoothie_tf.population_speed",
        f"--env={env_id}",
        f"--hparams={agent_file}",
        f"--members={members}",
        f"--steps={steps}",
        *(["--step_only=1"] if step_only else []),
    ]


def _environment(threads: int) -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return os.environ | {
        "PYTHONPATH": path,
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": str(threads),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def _start(command: list[str], threads: int) -> subprocess.Popen:
    """A measuring process with `threads` TensorFlow threads, its output captured."""
    return subprocess.Popen(
        command, env=_environment(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _read(process: subprocess.Popen) -> dict:
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"a measurement process failed (exit {process.returncode}): {err.strip()[-500:]}")
    return json.loads(out.strip().splitlines()[-1])


def population_figures(
    env_id: str = "Hopper-v4",
    agent_file: str = "smoothie",
    sizes: tuple[int, ...] = (1, 2, 4, 8, 16),
    steps: int = 3000,
    processes: int = 3,
    threads: int | None = None,
    side_by_side: tuple[int, ...] = (),
) -> dict:
    """`loop_figures` for each population size, one process after another (TensorFlow with
    `threads` threads each, default: every CPU) and its compiled step alone on one thread
    (`step_figures`), then `processes` single runs at once, one thread
    each (the way separate runs share this machine), and the ratios the populations are judged by.
    For each size in `side_by_side`, also one one-thread population of that size per CPU, all at
    once (the way `bin/search --population=P --cpus_per_trial=1` fills the machine)."""
    cpus = len(os.sched_getaffinity(0))
    threads = threads or cpus
    figures: dict = {"env": env_id, "hparams": agent_file, "steps": steps, "threads": threads}
    by_size = {}
    for size in sizes:
        by_size[size] = _read(_start(_command(env_id, agent_file, size, steps), threads))
    figures["populations"] = {str(size): entry for size, entry in by_size.items()}
    figures["one_thread_step"] = {
        str(size): _read(_start(_command(env_id, agent_file, size, steps, step_only=True), 1))
        for size in sizes
    }
    if processes:
        figures["separate_processes"] = _at_once(env_id, agent_file, 1, steps, processes)
    if side_by_side:
        figures["side_by_side"] = {
            str(size): _at_once(env_id, agent_file, size, steps, cpus) for size in side_by_side
        }
    if 1 in by_size:
        single = by_size[1]["env_steps_per_sec"]
        figures["over_single_run"] = {
            str(size): round(entry["env_steps_per_sec"] / single, 2) for size, entry in by_size.items()
        }
    if processes:
        together = figures["separate_processes"]["env_steps_per_sec"]
        figures[f"over_{processes}_processes"] = {
            str(size): round(entry["env_steps_per_sec"] / together, 2) for size, entry in by_size.items()
        }
    for entry in figures.get("side_by_side", {}).values():
        if 1 in by_size:
            entry["over_single_run"] = round(entry["env_steps_per_sec"] / single, 2)
        if processes:
            entry[f"over_{processes}_processes"] = round(entry["env_steps_per_sec"] / together, 2)
    return figures


def _at_once(env_id: str, agent_file: str, members: int, steps: int, count: int) -> dict:
    """`count` populations of `members` (one thread each) started together: their summed rate."""
    started = [_start(_command(env_id, agent_file, members, steps), 1) for _ in range(count)]
    each = [_read(process) for process in started]
    return {
        "processes": count,
        "members": [e["members"] for e in each],  # as each process ran it
        "env_steps_per_sec": round(sum(e["env_steps_per_sec"] for e in each), 1),
        "each": [e["env_steps_per_sec"] for e in each],
    }


def main(argv: list[str]) -> None:
    options = dict(arg.removeprefix("--").split("=", 1) for arg in argv)
    from smoothie_tf.startup import import_tensorflow_quietly

    import_tensorflow_quietly()
    import warnings

    from smoothie_tf import envs  # noqa: F401  (registers the project's tasks)

    warnings.filterwarnings("ignore", message=r".*is out of date\. You should consider upgrading")
    if options.get("step_only") == "1":
        figures = step_figures(options["env"], options["hparams"], int(options["members"]))
    else:
        figures = loop_figures(
            options["env"], options["hparams"], int(options["members"]), int(options["steps"])
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
