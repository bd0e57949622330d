"""The random search of supplement Table 1: its space, its sampling, and bin/search end to end
(a tiny search on SmoothieBandit-v0, interrupted with SIGINT and resumed, on a local Ray)."""

import csv
import dataclasses
import glob
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from ray import tune
from ray.tune.search.sample import LogUniform
from small_runs import ROOT, bandit_hparams
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from smoothie_tf import hparams as hparams_lib
from smoothie_tf import search

# Table 1 of the supplement, typed in again here: the ranges the search must sample.
PAPER_RANGES = {
    "actor_lr": (1e-6, 1e-3),
    "critic_lr": (1e-6, 1e-3),
    "reward_scale": (0.01, 0.3),
    "ou_damping": (1e-4, 1e-3),
    "ou_stddev": (1e-3, 1.0),
    "kl_penalty": (1e-6, 4e-2),
}
COMMON = {"actor_lr", "critic_lr", "reward_scale"}


def shipped(name: str) -> hparams_lib.HParams:
    return hparams_lib.load(ROOT / "hparams" / f"{name}.json")


@pytest.mark.parametrize(
    "file, keys",
    [
        ("smoothie", COMMON),
        ("smoothie_kl", COMMON | {"kl_penalty"}),
        ("ddpg", COMMON | {"ou_damping", "ou_stddev"}),
        ("bandit_smoothie", COMMON),
    ],
)
def test_each_variant_searches_its_own_table_1_keys(file, keys):
    space = search.param_space(shipped(file))
    assert set(space) == keys
    for key, domain in space.items():
        assert (domain.lower, domain.upper) == PAPER_RANGES[key]
        assert isinstance(domain.get_sampler(), LogUniform)


def ks_to_uniform(u: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance of the sample u from U(0, 1)."""
    u = np.sort(u)
    n = len(u)
    return float(max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n)))


def test_samples_stay_in_range_and_are_log_uniform():
    n = 4000
    critical = 1.95 / math.sqrt(n)  # KS at the 0.1% level: 1 - K(1.95) = 0.001
    for file in ("ddpg", "smoothie_kl"):
        for i, (key, domain) in enumerate(search.param_space(shipped(file)).items()):
            low, high = PAPER_RANGES[key]
            x = np.asarray(domain.sample(size=n, random_state=np.random.default_rng(i)))
            assert np.all((x >= low) & (x <= high)), key
            u = (np.log(x) - math.log(low)) / (math.log(high) - math.log(low))
            assert ks_to_uniform(u) < critical, key
            # The same test tells linear-uniform sampling apart: its log values pile up at the top.
            linear = np.asarray(tune.uniform(low, high).sample(size=n, random_state=np.random.default_rng(i)))
            linear_u = (np.log(linear) - math.log(low)) / (math.log(high) - math.log(low))
            assert ks_to_uniform(linear_u) > 5 * critical, key


def test_a_trial_trains_the_base_hparams_with_its_sampled_values():
    base = shipped("ddpg")
    hp = search.trial_hparams(base, {"actor_lr": 3e-5, "ou_stddev": np.float64(0.5)})
    assert (hp.actor_lr, hp.ou_stddev) == (3e-5, 0.5) and type(hp.ou_stddev) is float
    assert dataclasses.replace(hp, actor_lr=base.actor_lr, ou_stddev=base.ou_stddev) == base
    with pytest.raises(hparams_lib.HParamsError, match="discount"):
        search.trial_hparams(base, {"discount": 1.5})


def test_ranges_can_be_changed_or_added_and_bad_requests_are_refused(tmp_path):
    smoothie = shipped("smoothie")
    space = search.with_ranges(["actor_lr=1e-5:1e-4", "log_variance_lr=1e-6:1e-4"], smoothie)
    ranges = {d.key: (d.low, d.high) for d in search.dimensions_for(smoothie, space)}
    assert ranges == {
        "actor_lr": (1e-5, 1e-4),
        "critic_lr": PAPER_RANGES["critic_lr"],
        "reward_scale": PAPER_RANGES["reward_scale"],
        "log_variance_lr": (1e-6, 1e-4),
    }
    with pytest.raises(search.SearchError, match="unknown hparam key 'actr_lr' .did you mean 'actor_lr'"):
        search.with_ranges(["actr_lr=1e-5:1e-3"], smoothie)
    with pytest.raises(search.SearchError, match="kl_penalty is searched for smoothie_kl only"):
        search.with_ranges(["kl_penalty=1e-4:1e-2"], smoothie)
    with pytest.raises(search.SearchError, match="batch_size is not a real-valued"):
        search.with_ranges(["batch_size=32:256"], smoothie)

    request = search.SearchRequest("SmoothieBandit-v0", smoothie, tmp_path)
    search.validate(request)
    bad = {
        "trials must be an integer >= 1": {"trials": 0},
        "seeds must be an integer >= 1": {"seeds": 0},
        "range of actor_lr is empty": {"space": search.with_ranges(["actor_lr=1e-3:1e-3"], smoothie)},
        "must be finite and > 0": {"space": search.with_ranges(["critic_lr=0:1e-3"], smoothie)},
        "discount must be in": {"space": search.with_ranges(["discount=0.9:1.5"], smoothie)},
        "cpus_per_trial must be > 0": {"cpus_per_trial": 0.0},
    }
    for message, change in bad.items():
        with pytest.raises(search.SearchError, match=message):
            search.validate(dataclasses.replace(request, **change))
    assert list(tmp_path.iterdir()) == []


# --- bin/search ---------------------------------------------------------------------------------


def search_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "bin" / "search"), *args]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials=0"], "trials must be an integer >= 1, got 0"),
        (["--range=actr_lr=1e-5:1e-3"], "unknown hparam key 'actr_lr'"),
        (["--range=actor_lr=1e-3:1e-5"], "range of actor_lr is empty: low 0.001 >= high 1e-05"),
        (["--range=ou_stddev=1e-3:1e-1"], "ou_stddev is searched for ddpg only"),
        (["--seeds=0"], "seeds must be an integer >= 1"),
        (["--env=NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'"),
        (["--address=127.0.0.1:1"], "nothing answers at Ray address 127.0.0.1:1"),
    ],
)
def test_a_bad_request_gets_one_line_and_exit_2(tmp_path, args, message):
    logdir = tmp_path / "search"
    defaults = ["--env=SmoothieBandit-v0", f"--hparams={ROOT / 'hparams' / 'bandit_smoothie.json'}"]
    command = search_command(*defaults, f"--logdir={logdir}", *args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bin/search: error: ") and message in lines[0], lines
    assert not logdir.exists()


# --- a tiny search, end to end ------------------------------------------------------------------


def done_trials(logdir: pathlib.Path) -> list[str]:
    """Trials whose last result in Tune's log is their final one."""
    done = []
    for path in glob.glob(str(logdir / "tune" / "*" / "result.json")):
        lines = pathlib.Path(path).read_text().splitlines()
        try:
            if lines and json.loads(lines[-1]).get("outcome") == "done":
                done.append(pathlib.Path(path).parent.name)
        except json.JSONDecodeError:  # a line being written
            pass
    return done


def trial_snapshot(logdir: pathlib.Path, trial_id: str) -> dict:
    """Every file of the trial's runs with its mtime and size, and its count of Tune results."""
    runs = logdir / "trials" / trial_id
    files = {str(p.relative_to(runs)): (p.stat().st_mtime_ns, p.stat().st_size) for p in runs.rglob("*")}
    results = (logdir / "tune" / trial_id / "result.json").read_text().count("\n")
    return {"files": files, "results": results}


def read_table(logdir: pathlib.Path) -> list[dict]:
    with open(logdir / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


@dataclasses.dataclass
class TinySearch:
    logdir: pathlib.Path
    base: hparams_lib.HParams
    interrupted: subprocess.CompletedProcess
    table_when_interrupted: list[dict]
    snapshots_when_interrupted: dict
    resumed: subprocess.CompletedProcess
    snapshots_when_resumed: dict
    restored: subprocess.CompletedProcess
    snapshots_when_restored: dict


# Trials of the tiny search. Two run at once and each takes seconds on a quiet machine, where
# Tune reports a trial's end several seconds late: with 3 trials all of them could end before the
# SIGINT below arrives. With 8, at least two are still to run when it does.
TINY_TRIALS = 8


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory) -> TinySearch:
    """8 trials x 2 seeds x 200 steps of small networks: stopped with SIGINT 2 s after the first
    trial ends, resumed to the end, then run once more."""
    directory = tmp_path_factory.mktemp("search")
    base = bandit_hparams(total_steps=200, eval_interval=100, checkpoint_interval=100)
    base_file = directory / "small_bandit.json"
    base_file.write_text(hparams_lib.to_json(base))
    logdir = directory / "search"
    # Ranked by the second-half mean, which with evaluations at 100 and 200 of 200 steps is the
    # evaluation at 200: the final return, so the tests of the ranking below hold for both scores.
    command = search_command(
        "--env=SmoothieBandit-v0", f"--hparams={base_file}", f"--trials={TINY_TRIALS}", "--seeds=2",
        f"--logdir={logdir}", "--score=second_half_mean",
    )  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def snapshots():
        return {trial: trial_snapshot(logdir, trial) for trial in done_trials(logdir)}

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 900
        while not done_trials(logdir) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    interrupted = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    table_when_interrupted, snapshots_when_interrupted = read_table(logdir), snapshots()
    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    snapshots_when_resumed = snapshots()
    restored = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return TinySearch(
        logdir,
        base,
        interrupted,
        table_when_interrupted,
        snapshots_when_interrupted,
        resumed,
        snapshots_when_resumed,
        restored,
        snapshots(),
    )


def test_sigint_stops_the_search_with_a_resume_hint(tiny_search):
    result = tiny_search.interrupted
    assert result.returncode == 130, result.stderr[-3000:]
    assert "run the same command again to resume" in result.stderr.strip().splitlines()[-1]
    # Tune's own resume recipe and its line per never-started trial are kept off the console.
    assert "Tuner.restore" not in result.stderr and "Failed to fetch metrics" not in result.stderr
    statuses = [row["status"] for row in tiny_search.table_when_interrupted]
    assert "done" in statuses and "unfinished" in statuses, statuses


def test_sigterm_to_the_whole_process_group_stops_the_search_like_ctrl_c(tmp_path):
    """`timeout` and `kill -- -PGID` signal every process of the group. Ray's processes inherit
    SIGTERM blocked, so they go on until the search has saved its state and written its table,
    and the search's shutdown then ends them."""
    base_file = tmp_path / "small_bandit.json"
    base_file.write_text(hparams_lib.to_json(bandit_hparams(total_steps=200, eval_interval=100)))
    logdir = tmp_path / "search"
    command = search_command(
        "--env=SmoothieBandit-v0", f"--hparams={base_file}", "--trials=6", f"--logdir={logdir}"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 600
        while not list(logdir.glob("trials/*/seed0/hparams.json")) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr[-3000:]
    assert "run the same command again to resume" in stderr.strip().splitlines()[-1]
    assert {row["status"] for row in read_table(logdir)} <= {"done", "unfinished"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # and nothing of the process group is left behind
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        pytest.fail("processes of the search's group outlived it")


def test_the_resumed_search_keeps_finished_trials_and_ends_the_others(tiny_search):
    assert tiny_search.resumed.returncode == 0, tiny_search.resumed.stderr[-3000:]
    finished_before = tiny_search.snapshots_when_interrupted
    assert finished_before
    for trial, snapshot in finished_before.items():
        assert tiny_search.snapshots_when_resumed[trial] == snapshot, trial
    rows = read_table(tiny_search.logdir)
    assert len(rows) == TINY_TRIALS and {row["status"] for row in rows} == {"done"}
    # The same trials, not a new search: the finished ones with their results.
    assert {row["trial_id"] for row in rows} == {
        row["trial_id"] for row in tiny_search.table_when_interrupted
    }
    assert len(list((tiny_search.logdir / "trials").iterdir())) == TINY_TRIALS
    before = {row["trial_id"]: row["final_return"] for row in tiny_search.table_when_interrupted}
    for row in rows:
        if row["trial_id"] in finished_before:
            assert row["final_return"] == before[row["trial_id"]]


def test_restoring_a_finished_search_reruns_no_trial(tiny_search):
    assert tiny_search.restored.returncode == 0, tiny_search.restored.stderr[-3000:]
    assert len(tiny_search.snapshots_when_restored) == TINY_TRIALS
    assert tiny_search.snapshots_when_restored == tiny_search.snapshots_when_resumed
    table = tiny_search.restored.stdout[tiny_search.restored.stdout.index("rank  trial_id") :]
    assert table in tiny_search.resumed.stdout


def last_eval_return(run: pathlib.Path) -> tuple[int, float]:
    accumulator = event_accumulator.EventAccumulator(str(run), size_guidance={"tensors": 0})
    accumulator.Reload()
    event = max(accumulator.Tensors("eval/mean_return"), key=lambda e: e.step)
    return event.step, float(tensor_util.make_ndarray(event.tensor_proto))


def test_the_table_ranks_trials_by_mean_final_return_over_seeds(tiny_search):
    rows = read_table(tiny_search.logdir)
    finals = [float(row["final_return"]) for row in rows]
    assert finals == sorted(finals, reverse=True)
    assert [int(row["rank"]) for row in rows] == list(range(1, TINY_TRIALS + 1))
    for row in rows:
        runs = [pathlib.Path(row["logdir"]) / f"seed{seed}" for seed in range(2)]
        evaluations = [last_eval_return(run) for run in runs]  # TensorBoard sees every run
        assert [step for step, _ in evaluations] == [200, 200]
        seed_returns = [float(x) for x in row["seed_returns"].split()]
        np.testing.assert_allclose(seed_returns, [value for _, value in evaluations], rtol=1e-5)
        assert float(row["final_return"]) == pytest.approx(np.mean(seed_returns), rel=1e-5)
        for key in COMMON:
            low, high = PAPER_RANGES[key]
            assert low <= float(row[key]) <= high
    assert "rank  trial_id" in tiny_search.resumed.stdout


def test_the_best_configuration_is_a_ready_hparams_file(tiny_search):
    best_row = read_table(tiny_search.logdir)[0]
    best = hparams_lib.load(tiny_search.logdir / "best_hparams.json")
    hparams_lib.validate(best)
    sampled = {key: float(best_row[key]) for key in COMMON}
    assert best == search.trial_hparams(tiny_search.base, sampled)
    trained = json.loads((pathlib.Path(best_row["logdir"]) / "seed0" / "hparams.json").read_text())
    assert hparams_lib.from_dict(trained["hparams"]) == best
    assert f"best hparams: {tiny_search.logdir / 'best_hparams.json'}" in tiny_search.resumed.stdout


def test_trials_are_ranked_by_final_return_whatever_their_state(tmp_path):
    def result(trial_id, metrics, config=None, error=None):
        config = {"actor_lr": 1e-4, "critic_lr": 1e-3, "reward_scale": 0.1} if config is None else config
        return types.SimpleNamespace(metrics=metrics, config=config, error=error, path=f"/tune/{trial_id}")

    done = {"outcome": "done", "final_return_std": 0.5}
    results = [
        result("t1", {"trial_id": "t1", "final_return": 1.0, "seed_returns": [0.5, 1.5]} | done),
        result("t2", {"trial_id": "t2", "outcome": "diverged", "final_return": math.nan}),
        result("t3", {"trial_id": "t3", "final_return": 2.0, "seed_returns": [1.5, 2.5]} | done),
        result("t4", {"trial_id": "t4", "outcome": "running", "final_return": math.nan}),
        result("t5", {"trial_id": "t5", "outcome": "running"}, error=RuntimeError("worker\n died")),
        result("t6", {}, config={}),  # created, never started
    ]
    request = search.SearchRequest("SmoothieBandit-v0", shipped("smoothie"), tmp_path, trials=6)
    rows = search.trial_rows(results, request)
    assert [(r["trial_id"], r["status"]) for r in rows] == [
        ("t3", "done"),
        ("t1", "done"),
        ("t2", "diverged"),
        ("t4", "unfinished"),
        ("t5", "error"),
        ("t6", "unfinished"),
    ]
    assert rows[0]["seed_returns"] == "1.5 2.5" and rows[4]["error"] == "worker died"
    assert rows[0]["logdir"] == str(tmp_path / "trials" / "t3") and rows[5]["actor_lr"] is None
    search.write_table(rows, tmp_path / "trials.csv")
    table = read_table(tmp_path)
    assert [row["rank"] for row in table] == ["1", "2", "3", "4", "5", "6"]
    assert float(table[0]["final_return"]) == 2.0 and table[0]["actor_lr"] == "0.0001"
    printed = search.format_table(rows, limit=2).splitlines()
    assert printed[0].split() == [
        "rank", "trial_id", "status", "score", "score_std", "seed_scores", "final_return",
        "actor_lr", "critic_lr", "reward_scale",
    ]  # fmt: skip
    # Results without a score (a search from before scores could be chosen) rank by final_return.
    assert printed[1].split() == ["1", "t3", "done", "2", "-", "-", "2", "0.0001", "0.001", "0.1"]
    assert len(printed) == 3


# --- the score that ranks the trials ------------------------------------------------------------

HOPPER_STEPS = np.arange(10_000, 300_001, 10_000)  # bin/train's evaluations on Hopper-v4: 30 of them


def test_the_last_score_is_the_final_evaluation_return():
    returns = HOPPER_STEPS / 1000.0  # 10, 20, ..., 300
    assert search.run_score(HOPPER_STEPS, returns, 300_000, "last") == 300.0
    assert search.run_score([100, 200], [7.5, -2.0], 200, "last") == -2.0
    assert math.isnan(search.run_score([], [], 200, "last"))


def test_the_second_half_mean_counts_the_evaluations_past_the_midpoint(tmp_path):
    from test_aggregate import write_run

    from smoothie_tf import plotting

    returns = HOPPER_STEPS / 1000.0  # 10, 20, ..., 300
    # Steps 160000 ... 300000 count (not 150000): returns 160 ... 300, 15 of them, mean 230.
    assert search.run_score(HOPPER_STEPS, returns, 300_000, "second_half_mean") == 230.0
    # Every 50 of 250 steps: 150, 200 and 250 are past 125.
    assert search.run_score([50, 100, 150, 200, 250], [1, 2, 3, 4, 8], 250, "second_half_mean") == 5.0
    assert search.run_score([200], [7.0], 200, "second_half_mean") == 7.0  # evaluated at the end only
    # A run stopped at 200000 has the evaluations at 160000 ... 200000; one stopped at 120000, none.
    assert search.run_score(HOPPER_STEPS[:20], returns[:20], 300_000, "second_half_mean") == 180.0
    assert math.isnan(search.run_score(HOPPER_STEPS[:12], returns[:12], 300_000, "second_half_mean"))
    assert math.isnan(search.run_score([], [], 300_000, "second_half_mean"))
    # As a trial reads them back from a run's event files.
    write_run(tmp_path / "seed0", [100, 200, 300, 400], [1.5, 2.5, 4.0, 6.0])
    steps, values = plotting.eval_returns(tmp_path / "seed0")
    assert search.run_score(steps, values, 400, "second_half_mean") == 5.0
    assert search.run_score(steps, values, 400, "last") == 6.0
    with pytest.raises(
        search.SearchError, match="unknown score 'median'; choose one of last, second_half_mean"
    ):
        search.run_score(steps, values, 400, "median")
    with pytest.raises(ValueError, match="3 evaluation steps but 2 returns"):
        search.run_score([1, 2, 3], [1.0, 2.0], 3, "last")


def test_trials_are_ranked_by_their_score_and_the_table_names_it(tmp_path):
    def result(trial_id, metrics):
        config = {"actor_lr": 1e-4, "critic_lr": 1e-3, "reward_scale": 0.1}
        return types.SimpleNamespace(metrics=metrics, config=config, error=None, path=f"/tune/{trial_id}")

    def done(final, scores):
        finals = {"outcome": "done", "final_return": final, "final_return_std": 0.0, "seed_returns": [final]}
        return finals | {"score": np.mean(scores), "score_std": np.std(scores), "seed_scores": scores}

    results = [
        result("t1", {"trial_id": "t1"} | done(final=5.0, scores=[1.0, 1.0])),  # best final, worst score
        result("t2", {"trial_id": "t2"} | done(final=1.0, scores=[2.0, 4.0])),
        result("t3", {"trial_id": "t3", "outcome": "diverged", "final_return": math.nan, "score": 9.0}),
        result("t4", {"trial_id": "t4"} | done(final=3.0, scores=[2.0, 2.0])),
    ]
    request = search.SearchRequest(
        "SmoothieBandit-v0", shipped("smoothie"), tmp_path, score="second_half_mean"
    )
    rows = search.trial_rows(results, request)
    assert [(r["trial_id"], r["score"]) for r in rows[:3]] == [("t2", 3.0), ("t4", 2.0), ("t1", 1.0)]
    assert rows[3]["trial_id"] == "t3" and math.isnan(rows[3]["score"])  # diverged: last, whatever it had
    assert {r["ranked_by"] for r in rows} == {"second_half_mean"}
    assert rows[0]["seed_scores"] == "2 4" and rows[0]["score_std"] == 1.0
    search.write_table(rows, tmp_path / "trials.csv")
    table = read_table(tmp_path)
    assert [(row["rank"], row["trial_id"], row["ranked_by"]) for row in table] == [
        ("1", "t2", "second_half_mean"), ("2", "t4", "second_half_mean"),
        ("3", "t1", "second_half_mean"), ("4", "t3", "second_half_mean"),
    ]  # fmt: skip
    printed = search.format_table(rows)
    assert "ranked_by" not in printed and "second_half_mean" not in printed


def test_a_search_continues_only_with_the_score_it_started_with(tmp_path):
    base = hparams_lib.load(ROOT / "hparams" / "bandit_smoothie.json")
    logdir = tmp_path / "search"
    request = search.SearchRequest("SmoothieBandit-v0", base, logdir, score="last")
    logdir.mkdir()
    (logdir / "search.json").write_text(json.dumps(request.record(), indent=2))
    assert search.check_logdir(request)
    other = dataclasses.replace(request, score="second_half_mean")
    with pytest.raises(search.SearchError, match="holds this search ranked by --score=last; resume it with"):
        search.check_logdir(other)
    with pytest.raises(search.SearchError, match=r"holds a different search \(changed: score, trials\)"):
        search.check_logdir(dataclasses.replace(other, trials=7))
    with pytest.raises(search.SearchError, match="unknown score 'median'"):
        search.validate(dataclasses.replace(request, score="median"))

    # A search recorded before scores could be chosen was ranked by the last evaluation.
    record = request.record()
    del record["score"]
    (logdir / "search.json").write_text(json.dumps(record, indent=2))
    assert search.check_logdir(request)
    with pytest.raises(search.SearchError, match="ranked by --score=last"):
        search.check_logdir(other)

    before = (logdir / "search.json").read_text()
    command = search_command(
        "--env=SmoothieBandit-v0", f"--hparams={ROOT / 'hparams' / 'bandit_smoothie.json'}",
        f"--logdir={logdir}", "--score=second_half_mean",
    )  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (
        f"bin/search: error: {logdir} holds this search ranked by --score=last; resume it with --score=last, "
        "or choose another --logdir for --score=second_half_mean"
    )
    assert (logdir / "search.json").read_text() == before
    assert [path.name for path in logdir.iterdir()] == ["search.json"]


def written_with_six_digits(value: float) -> object:
    """`value` as the table writes a seed's score (`.6g`, off by at most half a unit of the sixth
    significant digit), read back from an event file (float32: off by at most 2^-24 relative)."""
    digits = 0.0 if value == 0 else 5 * 10.0 ** (math.floor(math.log10(abs(value))) - 6)
    return pytest.approx(value, rel=0, abs=digits + abs(value) * 2.0**-24)


def test_the_tiny_search_is_ranked_by_its_second_half_mean(tiny_search):
    """Its runs evaluate at 100 and 200 of 200 steps: the score is the evaluation at 200."""
    for row in read_table(tiny_search.logdir):
        assert row["ranked_by"] == "second_half_mean"
        seed_scores = [float(x) for x in row["seed_scores"].split()]
        evaluations = [last_eval_return(pathlib.Path(row["logdir"]) / f"seed{seed}") for seed in range(2)]
        assert [step for step, _ in evaluations] == [200, 200]
        assert seed_scores == [written_with_six_digits(value) for _, value in evaluations]
        assert float(row["score"]) == pytest.approx(np.mean([value for _, value in evaluations]), rel=1e-6)
        assert float(row["score"]) == pytest.approx(float(row["final_return"]), rel=1e-6)
    record = json.loads((tiny_search.logdir / "search.json").read_text())
    assert record["score"] == "second_half_mean"
    assert "trials ranked by score=second_half_mean" in tiny_search.resumed.stdout
