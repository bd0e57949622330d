"""bin/train --seeds=... --processes=N: the seeds split into N one-thread populations, each an
ordinary `bin/train --seeds=<group>`; what the parts write, refuse, print and do on signals."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from small_runs import ROOT
from test_population import (
    BANDIT_ARGS,
    DIVERGING,
    FIRST_UPDATE,
    PENDULUM_HPARAMS,
    PENDULUM_OVERRIDES,
    checkpoint_steps,
    final_model,
    latest_step,
    wait_for_checkpoints,
)
from test_training import run_train, train_command, tree_snapshot

from smoothie_tf import processes
from smoothie_tf.run_dirs import DIVERGED

# --- the split, the seeds' text and the exit code, by value ---------------------------------------


@pytest.mark.parametrize(
    "seeds, parts, groups",
    [
        (list(range(8)), 2, [[0, 1, 2, 3], [4, 5, 6, 7]]),
        (list(range(5)), 2, [[0, 1, 2], [3, 4]]),
        ([0, 3, 7, 9, 11], 3, [[0, 3], [7, 9], [11]]),
        ([4, 2], 2, [[4], [2]]),
        ([5], 1, [[5]]),
    ],
)
def test_split_seeds_gives_consecutive_groups_larger_first(seeds, parts, groups):
    assert processes.split_seeds(seeds, parts) == groups


@pytest.mark.parametrize("parts", [0, 3])
def test_split_seeds_refuses_more_parts_than_seeds_or_none(parts):
    with pytest.raises(ValueError, match=f"cannot split 2 seeds into {parts} processes"):
        processes.split_seeds([0, 1], parts)


@pytest.mark.parametrize(
    "seeds, text",
    [([0, 1, 2, 3], "0-3"), ([0, 3, 7], "0,3,7"), ([4, 5], "4,5"), ([6], "6"), ([2, 1, 0], "2,1,0")],
)
def test_seeds_text_is_the_seeds_flag_syntax(seeds, text):
    assert processes.seeds_text(seeds) == text


@pytest.mark.parametrize(
    "codes, interrupted, combined",
    [
        ([0, 0], False, 0),
        ([0, 1], False, 1),
        ([1, 2], False, 2),
        ([130, 0], False, 130),
        ([1, 130], False, 1),
        ([0, -9], False, 1),
        ([0, 2], True, 130),
        ([0, 0], True, 130),
    ],
)
def test_combined_exit_code(codes, interrupted, combined):
    assert processes.combined_exit_code(codes, interrupted) == combined


def test_parts_run_at_once_with_one_thread_and_their_lines_prefixed(capfd, tmp_path, monkeypatch):
    """Each part sees one TensorFlow thread, whatever the caller's environment says, and keeps the
    rest of it; both run at the same time (each waits for the other's file); every line of stdout
    and stderr comes through whole with its part's prefix, a 100 kB line and a last line without
    a newline included."""
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "4")
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "4")
    monkeypatch.setenv("SMOOTHIE_TEST_KEPT", "kept")
    script = (
        "import os, sys, time, pathlib\n"
        "me, other = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
        "me.touch()\n"
        "deadline = time.monotonic() + 60\n"
        "while not other.exists() and time.monotonic() < deadline: time.sleep(0.01)\n"
        "names = ['TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS', 'SMOOTHIE_TEST_KEPT']\n"
        "print(*(os.environ[name] for name in names), other.exists())\n"
        "print(sys.argv[4] * 100_000)\n"
        "sys.stdout.flush(); sys.stdout.buffer.write(b'not UTF-8: \\xff\\n')\n"
        "print('to stderr', file=sys.stderr)\n"
        "sys.stderr.write('no newline')\n"
        "sys.exit(int(sys.argv[3]))\n"
    )
    a, b = tmp_path / "a", tmp_path / "b"
    code = processes.run_parts(
        [
            [sys.executable, "-c", script, str(a), str(b), "0", "a"],
            [sys.executable, "-c", script, str(b), str(a), "1", "b"],
        ],
        ["[A] ", "[B] "],
    )
    out, err = capfd.readouterr()
    assert code == 1
    expected = [
        f"[{p}] {line}" for p in "AB" for line in ("1 1 kept True", p.lower() * 100_000, "not UTF-8: \ufffd")
    ]
    assert sorted(out.splitlines()) == sorted(expected)
    assert sorted(err.splitlines()) == ["[A] no newline", "[A] to stderr", "[B] no newline", "[B] to stderr"]


def test_a_part_goes_on_to_its_end_when_nobody_reads_its_output(tmp_path):
    """A part (its parent's pid recorded) whose stdout is closed at the other end: its writes do
    not raise, so it reaches its end (in bin/train: its checkpoint) rather than dying of the
    broken pipe."""
    go, done = tmp_path / "go", tmp_path / "done"
    part = (
        f"import pathlib, sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
        "from smoothie_tf import processes\n"
        "processes.stop_with_parent()\n"
        "deadline = time.monotonic() + 60\n"
        f"while not pathlib.Path({str(go)!r}).exists() and time.monotonic() < deadline: time.sleep(0.01)\n"
        "for _ in range(1000): print('x' * 100, flush=True)\n"
        f"pathlib.Path({str(done)!r}).touch()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", part],
        env={**os.environ, processes.PARENT_VARIABLE: str(os.getpid())},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    process.stdout.close()
    go.touch()
    assert process.wait(timeout=60) == 0 and done.exists()


def test_part_commands_repeat_every_flag_in_order():
    groups = [[0, 1, 2], [5, 6]]
    commands = processes.part_commands(
        "bin/train",
        "SmoothieLQR-v0",
        "h.json",
        ["actor_lr=1e-3", "critic_hidden=[8, 8]", "actor_lr=2e-3"],
        "runs/x",
        '{"R": [[2, 0], [0, 1]], "name": "a b"}',
        groups,
    )
    common = [
        sys.executable,
        "bin/train",
        "--env=SmoothieLQR-v0",
        "--hparams=h.json",
        "--hparam=actor_lr=1e-3",
        "--hparam=critic_hidden=[8, 8]",
        "--hparam=actor_lr=2e-3",
        "--logdir=runs/x",
        '--env_kwargs={"R": [[2, 0], [0, 1]], "name": "a b"}',
    ]
    assert commands == [[*common, "--seeds=0-2"], [*common, "--seeds=5,6"]]
    assert processes.part_commands("t", "E", "h", [], "d", None, [[3]]) == [
        [sys.executable, "t", "--env=E", "--hparams=h", "--logdir=d", "--seeds=3"]
    ]


def test_a_part_whose_parent_has_died_already_stops_at_once():
    """`stop_with_parent` in a process whose recorded parent is not its parent: exit 130 before
    anything else; without the record, nothing happens."""
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from smoothie_tf import processes\n"
        "processes.stop_with_parent()\n"
        "print('went on')\n"
    )
    orphan = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, processes.PARENT_VARIABLE: "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (orphan.returncode, orphan.stdout) == (130, "")
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (plain.returncode, plain.stdout) == (0, "went on\n")


def test_a_part_gets_sigterm_when_its_parent_is_killed(tmp_path):
    """kill -9 of the process running the parts: each part is sent SIGTERM at once, though it
    never writes a line (a part that writes would also die of the broken pipe, too late)."""
    ready, stopped = tmp_path / "ready", tmp_path / "stopped"
    part = (
        f"import pathlib, signal, sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
        "from smoothie_tf import processes\n"
        "processes.stop_with_parent()\n"
        "def stop(signum, frame):\n"
        "    pathlib.Path(sys.argv[1]).write_text(str(signum))\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "pathlib.Path(sys.argv[2]).touch()\n"
        "time.sleep(120)\n"
    )
    parent = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from smoothie_tf import processes\n"
        f"command = [sys.executable, '-c', {part!r}, {str(stopped)!r}, {str(ready)!r}]\n"
        "processes.run_parts([command], ['[x] '])\n"
    )
    process = subprocess.Popen([sys.executable, "-c", parent])
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists()
    process.kill()
    assert process.wait() == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while not stopped.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stopped.exists() and stopped.read_text() == str(int(signal.SIGTERM))


# --- bin/train --processes ---------------------------------------------------------------------

STEPS = 20
SHORT = [
    f"--hparam=total_steps={STEPS}",
    f"--hparam=eval_interval={STEPS}",
    f"--hparam=checkpoint_interval={STEPS}",
]


@pytest.fixture(scope="module")
def split_run(tmp_path_factory) -> tuple[pathlib.Path, subprocess.CompletedProcess]:
    """Seeds 0-2,5 in two processes, with a --logdir relative to the working directory."""
    cwd = tmp_path_factory.mktemp("split")
    return cwd / "pop", run_train(
        *BANDIT_ARGS, *SHORT, "--seeds=0-2,5", "--processes=2", "--logdir=pop", cwd=cwd
    )


def test_each_group_trains_as_its_own_one_thread_population(split_run, tmp_path):
    """Seeds 0-2,5 in two processes: the groups 0,1 and 2,5, each the population that
    `bin/train --seeds=<group>` with one TensorFlow thread trains, bit for bit."""
    logdir, result = split_run
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("training seeds 0,1 | 2,5 in 2 processes, one TensorFlow thread each")
    assert lines[-1] == "done: seeds 0, 1, 2, 5 in 2 processes; logdir pop"
    assert any(line.startswith("[seeds 0,1] done: ") for line in lines), result.stdout
    assert any(line.startswith("[seeds 2,5] done: ") for line in lines), result.stdout
    assert all(line.startswith(("[seeds 0,1] ", "[seeds 2,5] ")) for line in lines[1:-1]), result.stdout
    assert sorted(p.name for p in logdir.iterdir()) == ["seed0", "seed1", "seed2", "seed5"]
    reference = tmp_path / "reference"
    alone = subprocess.run(
        train_command(*BANDIT_ARGS, *SHORT, "--seeds=2,5", f"--logdir={reference}"),
        capture_output=True,
        text=True,
        env={**os.environ, **processes.ONE_THREAD, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert alone.returncode == 0, alone.stderr
    for seed in (2, 5):
        assert checkpoint_steps(logdir / f"seed{seed}")[-1] == STEPS
        split, straight = final_model(logdir / f"seed{seed}"), final_model(reference / f"seed{seed}")
        assert sorted(split) == sorted(straight)
        for name in straight:
            np.testing.assert_array_equal(split[name], straight[name], err_msg=f"seed{seed} {name}")
    # Seeds 0 and 2 lead their groups (member 0 of each), yet are different runs.
    assert not np.array_equal(final_model(logdir / "seed0")["critic/q/kernel"], split["critic/q/kernel"])


def test_a_finished_split_run_run_again_trains_nothing(split_run):
    logdir, _ = split_run
    before = {seed: checkpoint_steps(logdir / f"seed{seed}") for seed in (0, 1, 2, 5)}
    result = run_train(*BANDIT_ARGS, *SHORT, "--seeds=0-2,5", "--processes=2", f"--logdir={logdir}")
    assert result.returncode == 0, result.stderr
    assert {seed: checkpoint_steps(logdir / f"seed{seed}") for seed in (0, 1, 2, 5)} == before


def test_a_group_whose_members_all_diverged_is_left_out_as_one_process_leaves_them_out(split_run, tmp_path):
    """diverged.json in seeds 0 and 1 (one group): that group is not started, the other resumes
    (finished, it trains nothing), and the command ends with exit 1 naming them, as one process
    does with its diverged members. With every member diverged: exit 2, nothing started."""
    logdir = tmp_path / "pop"
    shutil.copytree(split_run[0], logdir)
    for seed in (0, 1):
        (logdir / f"seed{seed}" / DIVERGED).write_text("{}")
    args = [*BANDIT_ARGS, *SHORT, "--seeds=0-2,5", "--processes=2", f"--logdir={logdir}"]
    before = {seed: tree_snapshot(logdir / f"seed{seed}") for seed in (0, 1)}
    result = run_train(*args)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f"seed0 stopped earlier ({logdir / 'seed0' / DIVERGED}); it is left out",
        f"seed1 stopped earlier ({logdir / 'seed1' / DIVERGED}); it is left out",
        "training seeds 2,5 in 1 process, one TensorFlow thread each; each line below starts with its "
        "process's seeds",
    ], result.stdout
    assert all(line.startswith("[seeds 2,5] ") for line in lines[3:]), result.stdout
    assert result.stderr.splitlines()[-1] == (
        "bin/train: error: seed0, seed1 stopped: non-finite update (see diverged.json in each)"
    )
    assert {seed: tree_snapshot(logdir / f"seed{seed}") for seed in (0, 1)} == before  # not started

    for seed in (2, 5):
        (logdir / f"seed{seed}" / DIVERGED).write_text("{}")
    before = tree_snapshot(logdir)
    result = run_train(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "bin/train: error: every member of this population has diverged before; nothing to train"
    ]
    assert result.stdout == "" and tree_snapshot(logdir) == before


def test_members_diverging_in_groups_of_any_size_are_left_out_when_run_again(tmp_path):
    """Seeds 0-2 in two processes (groups 0,1 and 2), every update non-finite: every member stops
    with its diverged.json, the group of one too, as in one process of all three (exit 1); run
    again, nothing is left to train (exit 2, nothing started)."""
    args = [
        *BANDIT_ARGS,
        *SHORT,
        *(f"--hparam={key}={value}" for key, value in DIVERGING.items()),
        "--seeds=0-2",
        "--processes=2",
        f"--logdir={tmp_path / 'pop'}",
    ]
    result = run_train(*args)
    assert result.returncode == 1, result.stderr
    for seed in range(3):
        record = json.loads((tmp_path / "pop" / f"seed{seed}" / DIVERGED).read_text())
        assert record["step"] == FIRST_UPDATE, (seed, record)
    result = run_train(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "bin/train: error: every member of this population has diverged before; nothing to train"
    ]


def test_a_member_directory_of_another_run_is_refused_before_any_part_starts(split_run):
    """Seed 3 is free, seed 5 holds a run of other hparams: one line, no part started, nothing
    written (seed 3's group would otherwise have begun)."""
    logdir, _ = split_run
    before = tree_snapshot(logdir)
    result = run_train(
        *BANDIT_ARGS, *SHORT, "--hparam=actor_lr=0.5", "--seeds=3,5", "--processes=2", f"--logdir={logdir}"
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(logdir / "seed5") in lines[0] and "different run" in lines[0], (
        result.stderr
    )
    assert "training seeds" not in result.stdout
    assert tree_snapshot(logdir) == before and not (logdir / "seed3").exists()


def children(pid: int) -> list[int]:
    path = pathlib.Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def running(pid: int) -> bool:
    """The process exists and has not ended (an ended orphan may stay a zombie until reaped)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_ctrl_c_and_sigterm_stop_every_part_with_a_checkpoint_and_kill_9_stops_them_too(tmp_path):
    """Ctrl-C (SIGINT to the whole process group), then SIGTERM to bin/train alone: each time every
    part checkpoints and bin/train exits 130. Then kill -9 of bin/train alone: its parts are not
    left training. The same command then finishes every member."""
    args = [
        "--env=Pendulum-v1",
        f"--hparams={PENDULUM_HPARAMS}",
        *(f"--hparam={o}" for o in PENDULUM_OVERRIDES),
        "--hparam=total_steps=1000",  # the two processes run apart: neither is to finish before a signal
        "--seeds=0-3",
        "--processes=2",
        f"--logdir={tmp_path / 'pop'}",
    ]
    members = [tmp_path / "pop" / f"seed{k}" for k in range(4)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    steps = [0]
    for stop in ("ctrl-c", "sigterm"):
        process = subprocess.Popen(
            train_command(*args),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        wait_for_checkpoints(members, process, max(steps) + 50)
        if stop == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 130, stderr
        steps = [latest_step(m) for m in members]
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert sorted(line.split("]")[0] for line in lines[:-1]) == ["[seeds 0,1", "[seeds 2,3"], stderr
        assert all(
            re.search(r"interrupted: signal (2|15) at step \d+; checkpoint saved$", x) for x in lines[:-1]
        )
        assert lines[-1] == "bin/train: interrupted; run the same command again to resume"
        for group in ("0,1", "2,3"):  # each group's members stopped at the step its message names
            (line,) = (x for x in lines if x.startswith(f"[seeds {group}]"))
            step = int(re.search(r"at step (\d+)", line).group(1))
            assert [latest_step(tmp_path / "pop" / f"seed{k}") for k in map(int, group.split(","))] == [
                step
            ] * 2

    process = subprocess.Popen(
        train_command(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_checkpoints(members, process, max(steps) + 50)
    parts = children(process.pid)
    assert len(parts) == 2, parts
    assert "libtensorflow" not in pathlib.Path(f"/proc/{process.pid}/maps").read_text()  # it only watches
    process.kill()
    assert process.wait() == -signal.SIGKILL
    deadline = time.monotonic() + 120
    while any(map(running, parts)) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in parts if running(p)]
    assert left == [], "parts outlived bin/train"

    result = run_train(*args)
    assert result.returncode == 0, result.stderr
    assert [latest_step(m) for m in members] == [1000] * 4
    assert "resumed 2 run(s)" in result.stdout and result.stdout.count("resumed 2 run(s)") == 2, result.stdout
