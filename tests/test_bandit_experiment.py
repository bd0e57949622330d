"""The synthetic experiment's script on a reduced budget, and its outcome rule."""

import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from smoothie_tf import hparams as hparams_lib
from smoothie_tf.bandit_experiment import Trajectory, run_seed, summary
from smoothie_tf.checkpoints import CheckpointDirectory
from smoothie_tf.training import RunConfigError

ROOT = pathlib.Path(__file__).resolve().parent.parent
SMALL = ["actor_hidden=[16]", "critic_hidden=[16]", "critic_state_embedding=8", "batch_size=8"]
OVERRIDES = ["total_steps=60", "eval_interval=20", *SMALL]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def bandit(*flags: str, overrides=OVERRIDES) -> list[str]:
    """The bin/bandit command with these flags and --hparam overrides."""
    return [sys.executable, str(ROOT / "bin" / "bandit"), *flags, *[f"--hparam={item}" for item in overrides]]


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
    command = bandit("--seeds=2", f"--logdir={tmp_path / 'runs'}", f"--out={out}")
    env = ENV
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

    # It is read back only for the same run: other hparams or another seed are refused, untouched.
    hp = hparams_lib.apply_overrides(hparams_lib.load(ROOT / "hparams" / "bandit_smoothie.json"), OVERRIDES)
    run = tmp_path / "runs" / "smoothie" / "seed1"
    saved = (run / "trajectory.json").read_bytes()
    assert run_seed(hp, 1, run) == Trajectory(**json.loads(saved))
    longer = dataclasses.replace(hp, total_steps=600)
    with pytest.raises(RunConfigError, match=re.escape("(hparams.total_steps: saved 60, now 600)")):
        run_seed(longer, 1, run)
    with pytest.raises(RunConfigError, match=re.escape("(seed: saved 1, now 0)")):
        run_seed(hp, 0, run)
    assert (run / "trajectory.json").read_bytes() == saved

    # The script checks every run directory before training any: seed 0 of a new root is not
    # trained when seed 1 holds a run of other hparams.
    other = tmp_path / "other"
    (other / "smoothie" / "seed1").mkdir(parents=True)
    (other / "smoothie" / "seed1" / "hparams.json").write_bytes((run / "hparams.json").read_bytes())
    flags = ("--seeds=2", "--agents=smoothie", f"--logdir={other}", f"--out={tmp_path / 'other.png'}")
    refused = subprocess.run(
        bandit(*flags, overrides=[*OVERRIDES, "total_steps=80"]),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"bin/bandit: error: {other / 'smoothie' / 'seed1'} holds a different run "
        "(hparams.total_steps: saved 60, now 80); choose another --logdir"
    ]
    assert not (other / "smoothie" / "seed0").exists() and not (tmp_path / "other.png").exists()


def test_bandit_script_refuses_a_bad_override(tmp_path):
    command = [sys.executable, str(ROOT / "bin" / "bandit"), "--hparam=actor_lr=-1", f"--logdir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["bin/bandit: error: actor_lr must be > 0, got -1.0"]


def test_bandit_script_stops_on_sigint_with_one_line_and_exit_130(tmp_path):
    """SIGINT in the middle of training: the trainer saves a checkpoint and the script says so."""
    run = tmp_path / "runs" / "smoothie" / "seed0"
    long = [*SMALL, "total_steps=100000", "eval_interval=100000", "checkpoint_interval=20"]
    command = bandit("--seeds=1", "--agents=smoothie", f"--logdir={tmp_path / 'runs'}", overrides=long)
    command.append(f"--out={tmp_path / 'bandit.png'}")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 240
        while CheckpointDirectory(run / "checkpoints").latest() is None:  # training has started
            assert process.poll() is None and time.monotonic() < deadline, process.poll()
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    match = re.fullmatch(
        r"bin/bandit: error: interrupted: signal 2 at step (\d+); checkpoint saved", lines[0]
    )
    assert match, lines
    latest = CheckpointDirectory(run / "checkpoints").latest()
    assert int(CheckpointDirectory.read_state(latest)["step"]) == int(match[1]) > 0
    assert stdout == "" and not (tmp_path / "bandit.png").exists()


def test_a_stopped_seed_resumes_its_trajectory_with_its_training(tmp_path):
    """trajectory.json is rewritten at every evaluation; a stop after a checkpoint but before its
    record, or after records past the last checkpoint, resumes to the uninterrupted trajectory."""
    hp = hparams_lib.apply_overrides(
        hparams_lib.load(ROOT / "hparams" / "bandit_smoothie.json"), [*OVERRIDES, "checkpoint_interval=20"]
    )
    run = tmp_path / "seed0"
    full = run_seed(hp, 0, run)
    assert full.steps == [20, 40, 60]
    record_file = run / "trajectory.json"
    assert Trajectory(**json.loads(record_file.read_text())) == full

    def saved_as(trajectory: Trajectory) -> None:
        record_file.write_text(json.dumps(dataclasses.asdict(trajectory)))

    # Stopped after the last checkpoint, before its record: it is recorded from the checkpoint.
    saved_as(Trajectory(full.agent, 0, full.steps[:2], full.means[:2], full.variances[:2]))
    assert run_seed(hp, 0, run) == full
    assert Trajectory(**json.loads(record_file.read_text())) == full

    # Stopped with checkpoint 20 its last and records past it (made wrong here, to be seen):
    # those are dropped and recorded again as the run goes on from step 20.
    for step in (40, 60):
        shutil.rmtree(CheckpointDirectory(run / "checkpoints").directory / f"ckpt-{step:010d}")
    shutil.rmtree(run / "policy")
    saved_as(
        Trajectory(full.agent, 0, full.steps, [full.means[0], 99.0, 99.0], [full.variances[0], 9.0, 9.0])
    )
    assert run_seed(hp, 0, run) == full
    assert Trajectory(**json.loads(record_file.read_text())) == full
