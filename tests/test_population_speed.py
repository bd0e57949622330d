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


@pytest.mark.parametrize(
    "argument", ["--population_sizes=1,x", "--population_side_by_side=0", "--calls=0", "surplus", "--nope"]
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
