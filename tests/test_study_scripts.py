"""The reproduction study's scripts (scripts/hopper_confirm.sh, scripts/hopper_report.sh): the
commands they build and their refusals of bad input. Each script runs from a copy in a temporary
project whose bin/train and bin/report only record their arguments, so nothing trains here."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
RECORDER = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$(dirname "$0")/../calls.txt"
"""


def project(tmp_path: pathlib.Path, *arms_searched: str) -> pathlib.Path:
    """A temporary project holding the two scripts, recording stand-ins for bin/train and
    bin/report, and a best configuration for each of `arms_searched`."""
    (tmp_path / "scripts").mkdir()
    for script in ("hopper_confirm.sh", "hopper_report.sh"):
        shutil.copy(ROOT / "scripts" / script, tmp_path / "scripts" / script)
    (tmp_path / "bin").mkdir()
    for tool in ("train", "report"):
        (tmp_path / "bin" / tool).write_text(RECORDER)
        (tmp_path / "bin" / tool).chmod(0o755)
    (tmp_path / "results").mkdir()
    for arm in arms_searched:
        (tmp_path / "results" / f"hopper_search_{arm}_best.json").write_text("{}")
    return tmp_path


def run(root: pathlib.Path, script: str, *arguments: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    elsewhere = root / "elsewhere"  # not the project: a script must cd to its own project
    elsewhere.mkdir(exist_ok=True)
    result = subprocess.run(
        ["bash", str(root / "scripts" / script), *arguments],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=elsewhere,
    )
    calls = root / "calls.txt"
    return result, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("script", ["hopper_confirm.sh", "hopper_report.sh"])
@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--seeds=109-105"], "--seeds must be FIRST-LAST"),
        (["--seeds=105"], "--seeds must be FIRST-LAST"),
        (["--seeds=a-b"], "--seeds must be FIRST-LAST"),
        (["--seeds=-1-3"], "--seeds must be FIRST-LAST"),
        (["ddpg", "--seeds=105-109"], "the only option is --seeds=FIRST-LAST, given first"),
        (["--seeds=105-109x"], "--seeds must be FIRST-LAST"),
        (["--help"], "the only option is --seeds=FIRST-LAST, given first"),
    ],
)
def test_bad_input_is_refused_with_one_line_and_exit_2(tmp_path, script, arguments, message):
    root = project(tmp_path, "ddpg", "smoothie")
    result, calls = run(root, script, *arguments)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert calls == []


def test_confirm_trains_each_arm_once_on_its_seeds(tmp_path):
    root = project(tmp_path, "ddpg", "smoothie")
    result, calls = run(
        root, "hopper_confirm.sh", "--seeds=0105-0109", "ddpg", "smoothie", "ddpg", "smoothie_kl"
    )
    assert result.returncode == 0, result.stderr
    assert "skipping smoothie_kl" in result.stderr  # no best configuration: its search has not finished
    assert sorted(calls) == sorted(
        f"--env=Hopper-v4 --hparams=results/hopper_search_{arm}_best.json --hparam=total_steps=300000"
        " --hparam=eval_interval=10000 --hparam=eval_episodes=10 --hparam=checkpoint_interval=25000"
        f" --seeds=105-109 --logdir=runs/confirm/Hopper-v4/{arm}"
        for arm in ("ddpg", "smoothie")
    )


def test_confirm_skips_an_arm_whose_runs_have_all_finished(tmp_path):
    root = project(tmp_path, "ddpg", "smoothie")
    for seed in range(100, 105):
        (root / "runs/confirm/Hopper-v4/ddpg" / f"seed{seed}" / "policy").mkdir(parents=True)
    (root / "runs/confirm/Hopper-v4/smoothie/seed100/policy").mkdir(parents=True)
    result, calls = run(root, "hopper_confirm.sh", "ddpg", "smoothie")
    assert result.returncode == 0, result.stderr
    assert "ddpg is finished" in result.stderr
    assert [call.split()[-1] for call in calls] == ["--logdir=runs/confirm/Hopper-v4/smoothie"]
    assert "--seeds=100-104" in calls[0]


def runs_of(arm: str, seeds: range) -> str:
    return f"{arm}=" + ",".join(f"runs/confirm/Hopper-v4/{arm}/seed{seed}" for seed in seeds)


def report_calls(arms: str, out: str) -> list[str]:
    """The two bin/report calls of hopper_report.sh: last evaluation, then the five-evaluation
    score, both writing under `out`."""
    common = f"--steps=100000,200000,300000 --baseline=ddpg --reps=5000 --seed=0 --out={out}.png"
    return [
        f"{arms} {common} --markdown={out}_table.md --per_run",
        f"{arms} {common} --window=40000 --markdown={out}_window_table.md --per_run",
    ]


def test_report_defaults_to_the_study_seeds_and_all_four_arms(tmp_path):
    root = project(tmp_path)
    result, calls = run(root, "hopper_report.sh")
    assert result.returncode == 0, result.stderr
    arms = " ".join(
        runs_of(arm, range(100, 105))
        for arm in ("ddpg", "smoothie", "smoothie_kl", "smoothie_kl_log_variance_lr")
    )
    assert calls == report_calls(arms, "results/reproduction")


def test_report_of_other_seeds_writes_files_of_its_own(tmp_path):
    root = project(tmp_path)
    result, calls = run(root, "hopper_report.sh", "--seeds=100-109", "smoothie", "ddpg", "smoothie")
    assert result.returncode == 0, result.stderr
    arms = f"{runs_of('ddpg', range(100, 110))} {runs_of('smoothie', range(100, 110))}"
    assert calls == report_calls(arms, "results/reproduction_seeds100-109")


ARMS = ("ddpg", "smoothie", "smoothie_kl", "smoothie_kl_log_variance_lr")


def test_confirm_defaults_to_every_searched_arm_on_the_study_seeds(tmp_path):
    root = project(tmp_path, *ARMS)
    result, calls = run(root, "hopper_confirm.sh")
    assert result.returncode == 0, result.stderr
    assert sorted(call.split()[-2:] for call in calls) == sorted(
        ["--seeds=100-104", f"--logdir=runs/confirm/Hopper-v4/{arm}"] for arm in ARMS
    )


def test_confirm_finished_means_every_seed_of_the_range_has_its_policy(tmp_path):
    root = project(tmp_path, "ddpg", "smoothie", "smoothie_kl")
    runs = root / "runs/confirm/Hopper-v4"
    for seed in range(100, 105):  # other seeds finished: not these
        (runs / "ddpg" / f"seed{seed}" / "policy").mkdir(parents=True)
    for seed in range(105, 110):
        (runs / "smoothie" / f"seed{seed}").mkdir(parents=True)  # seed107 still training
        if seed != 107:
            (runs / "smoothie" / f"seed{seed}" / "policy").mkdir()
        (runs / "smoothie_kl" / f"seed{seed}" / "policy").mkdir(parents=True)
    result, calls = run(root, "hopper_confirm.sh", "--seeds=105-109")
    assert result.returncode == 0, result.stderr
    assert "smoothie_kl is finished" in result.stderr
    assert sorted(call.split()[-1] for call in calls) == [
        "--logdir=runs/confirm/Hopper-v4/ddpg",
        "--logdir=runs/confirm/Hopper-v4/smoothie",
    ]


def test_one_seed_is_a_range(tmp_path):
    root = project(tmp_path, "ddpg")
    result, calls = run(root, "hopper_confirm.sh", "--seeds=104-104", "ddpg")
    assert result.returncode == 0, result.stderr
    assert calls[0].split()[-2] == "--seeds=104-104"
    result, calls = run(root, "hopper_report.sh", "--seeds=104-104")
    assert result.returncode == 0, result.stderr
    assert "--out=results/reproduction_seeds104-104.png" in calls[-1]


def test_confirm_trains_two_arms_at_a_time_one_thread_each_and_reports_a_failed_arm(tmp_path):
    root = project(tmp_path, *ARMS)
    (root / "bin/train").write_text(
        """#!/usr/bin/env bash
last=${!#}
arm=${last##*/}
log="$(dirname "$0")/../order.txt"
echo "start $arm $TF_NUM_INTRAOP_THREADS $TF_NUM_INTEROP_THREADS" >> "$log"
for _ in $(seq 100); do  # until the other arm of the pair has started too (10 s at most)
    (($(grep -c ^start "$log") % 2 == 0)) && break
    sleep 0.1
done
echo "end $arm" >> "$log"
[ "$arm" != smoothie ]
"""
    )
    result, _ = run(root, "hopper_confirm.sh", *ARMS)
    assert result.returncode == 1
    order = (root / "order.txt").read_text().splitlines()
    assert [line.split()[0] for line in order] == ["start", "start", "end", "end"] * 2
    assert sorted(line.split()[1] for line in order[:2]) == ["ddpg", "smoothie"]
    assert all(line.endswith(" 1 1") for line in order if line.startswith("start"))


def test_report_of_one_arm_with_padded_seeds_still_has_ddpg(tmp_path):
    root = project(tmp_path)
    result, calls = run(root, "hopper_report.sh", "--seeds=0102-0104", "smoothie_kl")
    assert result.returncode == 0, result.stderr
    arms = f"{runs_of('ddpg', range(102, 105))} {runs_of('smoothie_kl', range(102, 105))}"
    assert calls == report_calls(arms, "results/reproduction_seeds102-104")


def test_report_stops_at_a_failed_report(tmp_path):
    root = project(tmp_path)
    (root / "bin/report").write_text(RECORDER + "exit 1\n")
    result, calls = run(root, "hopper_report.sh")
    assert result.returncode != 0 and len(calls) == 1
