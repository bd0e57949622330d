"""The synthetic experiment's script on a reduced budget, and its outcome rule."""

import json
import os
import pathlib
import subprocess
import sys

from smoothie_tf.bandit_experiment import Trajectory, summary

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_outcome_rule():
    def final(mean):
        return Trajectory("smoothie", 0, [1], [mean], [0.3])

    assert [final(m).outcome for m in (1.2, 1.85, 0.35, -0.2, 0.8)] == [
        "global",
        "global",
        "local",
        "local",
        "elsewhere",
    ]
    counts = summary([final(1.5), final(0.0), Trajectory("ddpg", 0, [1], [0.1], [0.0])])
    assert counts == {
        "smoothie": {"global": 1, "local": 1, "elsewhere": 0},
        "ddpg": {"global": 0, "local": 1, "elsewhere": 0},
    }


def test_bandit_script_runs_end_to_end_on_a_reduced_budget(tmp_path):
    out = tmp_path / "bandit.png"
    small = ["actor_hidden=[16]", "critic_hidden=[16]", "critic_state_embedding=8", "batch_size=8"]
    command = [
        sys.executable,
        str(ROOT / "bin" / "bandit"),
        "--seeds=2",
        f"--logdir={tmp_path / 'runs'}",
        f"--out={out}",
        "--hparam=total_steps=60",
        "--hparam=eval_interval=20",
        *[f"--hparam={item}" for item in small],
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for agent in ("smoothie", "ddpg"):
        assert sum(report["counts"][agent].values()) == 2
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for agent in ("smoothie", "ddpg"):
        record = json.loads((tmp_path / "runs" / agent / "seed1" / "trajectory.json").read_text())
        assert record["steps"] == [20, 40, 60] and len(record["means"]) == 3
    # A second call reads the finished seeds back instead of training them again.
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1]) == report


def test_bandit_script_refuses_a_bad_override(tmp_path):
    command = [sys.executable, str(ROOT / "bin" / "bandit"), "--hparam=actor_lr=-1", f"--logdir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["bin/bandit: error: actor_lr must be > 0, got -1.0"]
