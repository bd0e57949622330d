"""The population speed figures: one process per population size, single runs side by side,
and ratios that follow from the rates they report."""

import os
import pathlib
import subprocess
import sys

import pytest

from smoothie_tf import hparams as hparams_lib
from smoothie_tf import population_speed

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def figures():
    return population_speed.population_figures(
        env_id="SmoothieBandit-v0",
        agent_file="bandit_smoothie",
        sizes=(1, 2),
        steps=1000,
        processes=1,  # not the CPU count: side by side must start one population per CPU
        threads=1,
        side_by_side=(2,),
    )


def test_each_population_is_measured_in_a_process_of_its_own(figures):
    populations = figures["populations"]
    assert set(populations) == {"1", "2"}
    for size, entry in populations.items():
        assert entry["members"] == int(size)
        assert entry["timed_steps"] == 1000 - 1 - 333 - 200
        # The total rate counts every member's environment steps.
        assert entry["env_steps_per_sec"] == pytest.approx(
            int(size) * entry["env_steps_per_sec_per_member"], rel=0.01
        )
        assert 0 < entry["env_steps_per_sec"]
        assert sum(entry["fraction"].values()) == pytest.approx(1.0, abs=0.01)
        assert entry["agent_mb_per_member"] > 0 and entry["replay_mb_per_member"] > 0


def test_each_size_has_its_step_timed_alone_on_one_thread(figures):
    steps = figures["one_thread_step"]
    assert set(steps) == {"1", "2"}
    for size, entry in steps.items():
        members = int(size)
        assert entry["members"] == members and entry["env"] == "SmoothieBandit-v0"
        assert entry["step_ms"] > 0
        assert entry["ms_per_member"] == pytest.approx(entry["step_ms"] / members, abs=1e-3)
        assert entry["member_updates_per_sec"] == pytest.approx(1e3 * members / entry["step_ms"], rel=1e-3)


def test_the_step_alone_is_timed_as_training_calls_it(monkeypatch):
    # The training loop calls train_step_and_act with NumPy arrays after warm-up; the hparams
    # file gives the agent (here made small) and the batch size.
    import dataclasses

    import numpy as np

    from smoothie_tf.agents.base import ActorCriticAgent

    small = dataclasses.replace(
        hparams_lib.load(ROOT / "hparams" / "bandit_smoothie.json"),
        batch_size=16,
        actor_hidden=[8],
        critic_state_embedding=8,
        critic_hidden=[8],
    )
    monkeypatch.setattr(hparams_lib, "load", lambda path: small)
    seen = []
    original = ActorCriticAgent.train_step_and_act

    def recording(self, batch, observations):
        observed = (type(batch.observations), batch.observations.shape)
        seen.append((self.members, tuple(self.config.actor_hidden), *observed))
        assert isinstance(observations, np.ndarray) and observations.shape == (self.members, 1)
        return original(self, batch, observations)

    monkeypatch.setattr(ActorCriticAgent, "train_step_and_act", recording)
    entry = population_speed.step_figures("SmoothieBandit-v0", "bandit_smoothie", 3, calls=2, repeats=1)
    assert entry["members"] == 3
    assert set(seen) == {(3, (8,), np.ndarray, (3, 16, 1))}
    assert len(seen) == 1 + 2  # the compiling call, then one round of two


def test_the_step_alone_runs_on_one_thread_whatever_the_loop_figures_use(monkeypatch):
    started = []

    class Recorded:
        def __init__(self, command, env, **kwargs):
            started.append((command, env))

    monkeypatch.setattr(population_speed.subprocess, "Popen", Recorded)
    monkeypatch.setattr(population_speed, "_read", lambda process: {"env_steps_per_sec": 1.0})
    population_speed.population_figures(sizes=(1, 4), processes=0, threads=2)
    step_only = [(c, e) for c, e in started if "--step_only=1" in c]
    loops = [(c, e) for c, e in started if "--step_only=1" not in c]
    members = [next(a for a in c if a.startswith("--members=")) for c, _ in step_only]
    assert members == ["--members=1", "--members=4"]
    assert all(e["TF_NUM_INTRAOP_THREADS"] == e["TF_NUM_INTEROP_THREADS"] == "1" for _, e in step_only)
    assert len(loops) == 2 and all(e["TF_NUM_INTRAOP_THREADS"] == "2" for _, e in loops)


def test_the_ratios_follow_from_the_measured_rates(figures):
    populations = figures["populations"]
    separate = figures["separate_processes"]
    assert separate["processes"] == 1 and separate["members"] == [1]
    assert separate["env_steps_per_sec"] == pytest.approx(sum(separate["each"]), abs=0.2)
    single = populations["1"]["env_steps_per_sec"]
    assert figures["over_single_run"]["2"] == pytest.approx(
        populations["2"]["env_steps_per_sec"] / single, abs=0.01
    )
    assert figures["over_1_processes"]["2"] == pytest.approx(
        populations["2"]["env_steps_per_sec"] / separate["env_steps_per_sec"], abs=0.01
    )


def test_populations_side_by_side_sum_one_population_per_cpu(figures):
    entry = figures["side_by_side"]["2"]
    assert entry["processes"] == len(os.sched_getaffinity(0)) == len(entry["each"])
    assert entry["members"] == [2] * entry["processes"]
    assert entry["env_steps_per_sec"] == pytest.approx(sum(entry["each"]), abs=0.2)
    single = figures["populations"]["1"]["env_steps_per_sec"]
    assert entry["over_single_run"] == pytest.approx(entry["env_steps_per_sec"] / single, abs=0.01)
    together = figures["separate_processes"]["env_steps_per_sec"]
    assert entry["over_1_processes"] == pytest.approx(entry["env_steps_per_sec"] / together, abs=0.01)


# Rates by round of the faked measuring processes: the single run ("1"), the population of 8 in
# one process ("8"), each of the three single-run processes ("separate") and each one-thread
# population of 4 side by side ("side"). Chosen so that the median rounds differ (the separate
# processes' and the side by side's is round 3, the population of 8's round 2) and every ratio
# but the single run's over itself differs from the quotient of the median rates.
ROUNDS = [
    {"1": 120.0, "8": 200.0, "separate": 60.0, "side": 100.0},
    {"1": 200.0, "8": 300.0, "separate": 40.0, "side": 70.0},
    {"1": 100.0, "8": 330.0, "separate": 50.0, "side": 90.0},
]


def fake_processes(monkeypatch, rounds: list[dict], first_size: str = "1") -> list[tuple]:
    """Measuring processes replaced by the rates of `rounds` (each round begins with the
    population of `first_size`, on more than one thread); returns the starts, in order."""
    started = []

    def start(command, threads):
        members = next(a for a in command if a.startswith("--members=")).removeprefix("--members=")
        if "--step_only=1" in command:
            started.append(("step", members))
            return started[-1]
        if members == first_size and threads != 1:
            started.append(("round",))
        rates = rounds[started.count(("round",)) - 1]
        rate = rates[members] if threads != 1 else rates["separate" if members == "1" else "side"]
        started.append(("loop", members, rate))
        return started[-1]

    def read(process):
        if process[0] == "step":
            return {"step_ms": 1.0}
        return {"members": int(process[1]), "env_steps_per_sec": process[2]}

    monkeypatch.setattr(population_speed, "_start", start)
    monkeypatch.setattr(population_speed, "_read", read)
    return started


def rounds_figures(rounds: int, log=None, sizes=(1, 8)) -> dict:
    return population_speed.population_figures(
        sizes=sizes, processes=3, threads=2, side_by_side=(4,), rounds=rounds, log=log
    )


def test_with_rounds_each_ratio_is_the_median_of_the_ratios_within_each_round(monkeypatch):
    started = fake_processes(monkeypatch, ROUNDS)
    lines = []
    figures = rounds_figures(3, log=lines.append)
    cpus = len(os.sched_getaffinity(0))
    assert figures["rounds"] == 3
    assert lines == [f"population speed: round {r} of 3 (whole loops of 3000 steps)" for r in (1, 2, 3)] + [
        "population speed: each size's step alone on one thread"
    ]
    # The step alone is timed once per size, after every round.
    assert started.count(("round",)) == 3
    assert started[-2:] == [("step", "1"), ("step", "8")] and [s[0] for s in started].count("step") == 2
    # 8 over the single run, within rounds: 1.667, 1.5, 3.3 (the median rates give 300 / 120 = 2.5).
    assert figures["over_single_run"] == {"1": 1.0, "8": 1.67}
    assert figures["over_single_run_range"] == {"1": [1.0, 1.0], "8": [1.5, 3.3]}
    # Over the three processes (180, 120, 150): 1.111, 2.5, 2.2 (median rates: 300 / 150 = 2.0).
    assert figures["over_3_processes"] == {"1": 0.67, "8": 2.2}
    assert figures["over_3_processes_range"] == {"1": [0.67, 1.67], "8": [1.11, 2.5]}
    # Side by side (100, 70, 90 per CPU) over the single run: 0.833, 0.35, 0.9 per CPU (median
    # rates: 0.75 per CPU); over the processes: 0.556, 0.583, 0.6 per CPU (median rates: 0.6).
    side = figures["side_by_side"]["4"]
    assert side["over_single_run"] == round(cpus * 100 / 120, 2)
    assert side["over_single_run_range"] == [round(cpus * 0.35, 2), round(cpus * 0.9, 2)]
    assert side["over_3_processes"] == round(cpus * 70 / 120, 2)
    assert side["over_3_processes_range"] == [round(cpus * 100 / 180, 2), round(cpus * 0.6, 2)]
    # Each entry is the median round's measurement, every round's rate beside it.
    assert side["env_steps_per_sec"] == 90.0 * cpus and side["each"] == [90.0] * cpus
    assert side["rounds_env_steps_per_sec"] == [100.0 * cpus, 70.0 * cpus, 90.0 * cpus]
    assert figures["populations"]["8"]["env_steps_per_sec"] == 300.0
    assert figures["populations"]["8"]["rounds_env_steps_per_sec"] == [200.0, 300.0, 330.0]
    separate = figures["separate_processes"]
    assert separate["env_steps_per_sec"] == 150.0 and separate["each"] == [50.0] * 3
    assert separate["rounds_env_steps_per_sec"] == [180.0, 120.0, 150.0]


def test_with_an_even_number_of_rounds_a_rate_is_the_lower_middle_one(monkeypatch):
    fake_processes(monkeypatch, ROUNDS[:2])
    figures = rounds_figures(2)
    assert figures["populations"]["8"]["env_steps_per_sec"] == 200.0
    assert figures["separate_processes"]["env_steps_per_sec"] == 120.0
    assert figures["separate_processes"]["each"] == [40.0] * 3
    # The mean of the middle two: (200 / 120 + 300 / 200) / 2 and (200 / 180 + 300 / 120) / 2.
    assert figures["over_single_run"]["8"] == 1.58
    assert figures["over_3_processes"]["8"] == 1.81


@pytest.mark.parametrize(
    "rates, expected",
    [
        ([1004.0, 1014.0], 1.01),  # rounded to 2 decimals first: 1.0
        ([1005.49] * 3, 1.01),  # rounded to 3 decimals first: 1.0
    ],
)
def test_the_ratios_are_rounded_after_the_median(monkeypatch, rates, expected):
    fake_processes(monkeypatch, [{"1": 1000.0, "8": rate, "separate": 1.0, "side": 1.0} for rate in rates])
    assert rounds_figures(len(rates))["over_single_run"]["8"] == expected


def test_one_round_reports_no_ranges(monkeypatch):
    fake_processes(monkeypatch, ROUNDS)
    figures = rounds_figures(1)
    assert set(figures) == {
        "env", "hparams", "steps", "threads", "rounds", "populations", "separate_processes",
        "side_by_side", "over_single_run", "over_3_processes", "one_thread_step",
    }  # fmt: skip
    entries = [*figures["populations"].values(), figures["separate_processes"], figures["side_by_side"]["4"]]
    assert not any("rounds_env_steps_per_sec" in entry for entry in entries)
    assert not any(key.endswith("_range") for key in figures["side_by_side"]["4"])
    assert figures["over_single_run"]["8"] == 1.67 and figures["over_3_processes"]["8"] == 1.11


def test_without_a_single_run_there_is_no_ratio_over_it(monkeypatch):
    fake_processes(monkeypatch, ROUNDS, first_size="8")
    figures = rounds_figures(3, sizes=(8,))
    assert "over_single_run" not in figures and "over_single_run" not in figures["side_by_side"]["4"]
    assert figures["over_3_processes"] == {"8": 2.2}


@pytest.mark.parametrize("rounds", [0, -1])
def test_rounds_below_one_are_refused(monkeypatch, rounds):
    started = fake_processes(monkeypatch, ROUNDS)
    with pytest.raises(ValueError, match=f"rounds must be at least 1, got {rounds}"):
        rounds_figures(rounds)
    assert started == []


@pytest.mark.parametrize(
    "argument",
    [
        "--population_sizes=1,x",
        "--population_side_by_side=0",
        "--population_rounds=0",
        "--calls=0",
        "surplus",
        "--nope",
    ],
)
def test_benchmark_refuses_bad_input_with_one_line(argument):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "benchmark"), argument],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("bin/benchmark: error: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [[], ["--env=Hopper-v4"], ["--env=Hopper-v4", "--hparams=smoothie", "--members=0", "--steps=10"], ["4"]]
    + [["--env=Hopper-v4", "--hparams=smoothie", "--members=2", "--stpes=10"]],
)
def test_the_measuring_process_refuses_bad_arguments_in_one_line(args):
    command = [sys.executable, "-m", "smoothie_tf.population_speed", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and result.stdout == "", result
    (line,) = result.stderr.splitlines()
    assert line.startswith("population_speed: error: usage --env=ID --hparams=NAME --members=P"), line


def test_the_measuring_process_takes_what_the_benchmark_starts_it_with():
    for step_only in (False, True):
        command = population_speed._command("Hopper-v4", "smoothie", 4, 3000, step_only=step_only)
        assert population_speed.options_from(command[3:]) == {
            "env": "Hopper-v4",
            "hparams": "smoothie",
            "members": "4",
            "steps": "3000",
        } | ({"step_only": "1"} if step_only else {})
    assert population_speed.options_from(["--env=E", "--hparams=h", "--members=2", "--step_only=1"])
    for bad in (["--step_only=true"], ["--steps=0"], ["--env"], ["--env=F"], ["--members=x"]):
        with pytest.raises(ValueError):
            population_speed.options_from(["--env=E", "--hparams=h", "--members=2", "--steps=9", *bad])


def test_the_measuring_process_prints_its_usage_for_help():
    command = [sys.executable, "-m", "smoothie_tf.population_speed", "--help"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith(f"python -m smoothie_tf.population_speed {population_speed.USAGE}\n")
    assert population_speed.__doc__ in result.stdout
