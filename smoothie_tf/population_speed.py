"""Whole-loop speed of populations (docs/design.md section 9): environment steps per second of P runs
trained in one process, against single runs in separate processes.

Each figure comes from its own process, so that the populations measured before it do not
share its memory or its thread pools: `python -m smoothie_tf.population_speed --members=P`
prints one JSON object, and `population_figures` starts those processes one after another, then
`processes` single runs side by side, then (`side_by_side`) one one-thread population per CPU,
all at once. `--step_only=1` times the compiled train step alone instead (no environment), which
`population_figures` does for every size on one thread: what one member's update costs a core.
With `rounds` > 1, `population_figures` repeats the whole-loop measurements and reports the
median of the ratios taken within each round, with their range.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

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
    rounds: int = 1,
    log: Callable[[str], None] | None = None,
) -> dict:
    """`loop_figures` for each population size, one process after another (TensorFlow with
    `threads` threads each, default: every CPU), then `processes` single runs at once, one thread
    each (the way separate runs share this machine), and the ratios the populations are judged by.
    For each size in `side_by_side`, also one one-thread population of that size per CPU, all at
    once (the way `bin/search --population=P --cpus_per_trial=1` fills the machine). Last, each
    size's compiled step alone on one thread (`step_figures`).

    With `rounds` > 1 the whole-loop measurements are taken `rounds` times, round after round,
    and each ratio within its round (its two rates measured minutes apart, not an hour): a ratio
    reported is the median of the rounds' ratios, with the lowest and highest beside it
    (`<ratio>_range`), so it need not equal the quotient of the rates reported; a rate is the
    median round's measurement (the lower middle one for an even count), with every round's rate
    (`rounds_env_steps_per_sec`). The machine's speed can drift by tens of percent within
    minutes, so one round's ratios can land on either side of a target that the median of
    several does not. `log(line)`, if given, is called as each round starts and as the
    step-alone measurements start."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    threads = threads or len(os.sched_getaffinity(0))
    log = log or (lambda line: None)
    measured = []
    for index in range(rounds):
        log(f"population speed: round {index + 1} of {rounds} (whole loops of {steps} steps)")
        measured.append(_measure_round(env_id, agent_file, sizes, steps, processes, threads, side_by_side))
    figures: dict = {
        "env": env_id,
        "hparams": agent_file,
        "steps": steps,
        "threads": threads,
        "rounds": rounds,
    }
    figures["populations"] = {
        str(size): _median_entry([m["populations"][size] for m in measured]) for size in sizes
    }
    if processes:
        figures["separate_processes"] = _median_entry([m["separate_processes"] for m in measured])
    if side_by_side:
        figures["side_by_side"] = {
            str(size): _median_entry([m["side_by_side"][size] for m in measured]) for size in side_by_side
        }
    per_round = [_ratios(m, processes) for m in measured]
    for name in per_round[0]:
        figures[name] = {}
        if rounds > 1:
            figures[f"{name}_range"] = {}
        for group, size in per_round[0][name]:
            values = [ratios[name][group, size] for ratios in per_round]
            median = round(statistics.median(values), 2)
            spread = [round(min(values), 2), round(max(values), 2)]
            if group == "side_by_side":  # kept in the side-by-side entry
                entry = figures["side_by_side"][size]
                entry[name] = median
                if rounds > 1:
                    entry[f"{name}_range"] = spread
            else:
                figures[name][size] = median
                if rounds > 1:
                    figures[f"{name}_range"][size] = spread
    log("population speed: each size's step alone on one thread")
    figures["one_thread_step"] = {
        str(size): _read(_start(_command(env_id, agent_file, size, steps, step_only=True), 1))
        for size in sizes
    }
    return figures


def _measure_round(
    env_id: str,
    agent_file: str,
    sizes: tuple[int, ...],
    steps: int,
    processes: int,
    threads: int,
    side_by_side: tuple[int, ...],
) -> dict:
    """One round of `population_figures`' whole-loop measurements, keyed by size."""
    cpus = len(os.sched_getaffinity(0))
    measured: dict = {
        "populations": {
            size: _read(_start(_command(env_id, agent_file, size, steps), threads)) for size in sizes
        }
    }
    if processes:
        measured["separate_processes"] = _at_once(env_id, agent_file, 1, steps, processes)
    if side_by_side:
        measured["side_by_side"] = {
            size: _at_once(env_id, agent_file, size, steps, cpus) for size in side_by_side
        }
    return measured


def _ratios(measured: dict, processes: int) -> dict[str, dict[tuple[str, str], float]]:
    """One round's ratios, unrounded: name -> (group, size) -> the rate of that population over
    the single run's ("over_single_run", when size 1 was measured) or over the separate
    processes' ("over_<processes>_processes"); group is "populations" or "side_by_side"."""
    yardsticks = {}
    if 1 in measured["populations"]:
        yardsticks["over_single_run"] = measured["populations"][1]["env_steps_per_sec"]
    if processes:
        yardsticks[f"over_{processes}_processes"] = measured["separate_processes"]["env_steps_per_sec"]
    return {
        name: {
            (group, str(size)): entry["env_steps_per_sec"] / yardstick
            for group in ("populations", "side_by_side")
            for size, entry in measured.get(group, {}).items()
        }
        for name, yardstick in yardsticks.items()
    }


def _median_entry(entries: list[dict]) -> dict:
    """The entry with the median rate (the lower of the two middle ones for an even count), with
    every round's rate beside it when there are several."""
    rates = [e["env_steps_per_sec"] for e in entries]
    chosen = dict(entries[rates.index(statistics.median_low(rates))])
    if len(entries) > 1:
        chosen["rounds_env_steps_per_sec"] = rates
    return chosen


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


USAGE = "--env=ID --hparams=NAME --members=P (--steps=N | --step_only=1)"


def options_from(argv: list[str]) -> dict[str, str]:
    """{name: value} of `--name=value` arguments, as USAGE says; ValueError otherwise."""
    options = {}
    for arg in argv:
        name, equals, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not equals or not value or name in options:
            raise ValueError(arg)
        options[name] = value
    step_only = options.get("step_only") == "1"
    needed = {"env", "hparams", "members"} | (set() if step_only else {"steps"})
    if set(options) - needed - {"steps", "step_only"} or needed - set(options):
        raise ValueError("arguments")
    counts = [options["members"], options.get("steps", "1")]
    if options.get("step_only", "1") != "1" or not all(n.isdigit() and int(n) > 0 for n in counts):
        raise ValueError("values")
    return options


def main(argv: list[str]) -> None:
    if {"-h", "--help"} & set(argv):
        print(f"python -m smoothie_tf.population_speed {USAGE}\n\n{__doc__}")
        return
    try:
        options = options_from(argv)
    except ValueError:
        print(f"population_speed: error: usage {USAGE}; got {' '.join(argv) or 'nothing'}", file=sys.stderr)
        sys.exit(2)
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
