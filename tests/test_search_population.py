"""The random search with --population=P: P sampled configurations trained as one population per
Tune trial, one table row each. A tiny population search end to end (SmoothieBandit-v0 on a
local Ray, then run again), the rows of population trials in every state, bad requests, and a
configuration that diverges inside a population trial."""

import dataclasses
import json
import math
import os
import pathlib
import shutil
import subprocess
import types

import numpy as np
import pytest
from ray import tune
from small_runs import ROOT, bandit_hparams
from test_search import (
    COMMON,
    PAPER_RANGES,
    done_trials,
    read_table,
    search_command,
    trial_snapshot,
    written_with_six_digits,
)
from test_training import tree_snapshot

from smoothie_tf import hparams as hparams_lib
from smoothie_tf import plotting, search, training
from smoothie_tf.checkpoints import PREFIX, CheckpointDirectory

ENV = "SmoothieBandit-v0"


def checkpoint_steps(run: pathlib.Path) -> list[int]:
    return [int(p.name[len(PREFIX) :]) for p in CheckpointDirectory(run / "checkpoints").all()]


def trained_hparams(run: pathlib.Path) -> tuple[hparams_lib.HParams, int]:
    """The hparams and seed a run directory records (hparams.json)."""
    record = json.loads((run / "hparams.json").read_text())
    return hparams_lib.from_dict(record["hparams"]), record["seed"]


def row_hparams(base: hparams_lib.HParams, row: dict) -> hparams_lib.HParams:
    """The configuration of a row of trials.csv."""
    return search.trial_hparams(base, {key: float(row[key]) for key in COMMON})


# --- a tiny population search, end to end --------------------------------------------------------

TRIALS, POPULATION, SEEDS = 4, 2, 2
FLOAT32 = 2.0**-23  # relative: a value written to an event file as float32 and read back
STEPS = 200  # evaluated at 50, 100, 150 and 200: the second-half mean is the mean of the last two


@dataclasses.dataclass
class PopulationSearch:
    logdir: pathlib.Path
    base: hparams_lib.HParams
    command: list[str]
    first: subprocess.CompletedProcess
    snapshots_after_first: dict
    table_after_first: list[dict]
    again: subprocess.CompletedProcess
    snapshots_after_again: dict


@pytest.fixture(scope="module")
def population_search(tmp_path_factory) -> PopulationSearch:
    """4 configurations x 2 seeds x 200 steps of small networks, 2 configurations per Tune trial;
    then the same command again."""
    directory = tmp_path_factory.mktemp("population_search")
    base = bandit_hparams(total_steps=STEPS, eval_interval=50, checkpoint_interval=100)
    base_file = directory / "small_bandit.json"
    base_file.write_text(hparams_lib.to_json(base))
    logdir = directory / "search"
    command = search_command(
        f"--env={ENV}", f"--hparams={base_file}", f"--trials={TRIALS}", f"--seeds={SEEDS}",
        f"--population={POPULATION}", f"--logdir={logdir}", "--score=second_half_mean",
    )  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def snapshots():
        return {trial: trial_snapshot(logdir, trial) for trial in done_trials(logdir)}

    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    snapshots_after_first, table_after_first = snapshots(), read_table(logdir)
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return PopulationSearch(
        logdir, base, command, first, snapshots_after_first, table_after_first, again, snapshots()
    )


def test_each_configuration_is_a_row_scored_from_its_own_runs(population_search):
    result = population_search.first
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{TRIALS} trials x {SEEDS} seed(s)" in result.stdout
    assert f"{POPULATION} trials per process" in result.stdout
    rows = read_table(population_search.logdir)
    assert len(rows) == TRIALS and [row["status"] for row in rows] == ["done"] * TRIALS
    assert [int(row["rank"]) for row in rows] == list(range(1, TRIALS + 1))
    scores = [float(row["score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:
        assert row["ranked_by"] == "second_half_mean"
        runs = [pathlib.Path(row["logdir"]) / f"seed{seed}" for seed in range(SEEDS)]
        evaluations = [plotting.eval_returns(run) for run in runs]
        for steps, _ in evaluations:
            assert steps.tolist() == [50, 100, 150, 200]
        # The second-half mean of each run (its evaluations at 150 and 200), averaged over seeds.
        seed_scores = [
            search.run_score(steps, values, STEPS, "second_half_mean") for steps, values in evaluations
        ]
        for (_, values), seed_score in zip(evaluations, seed_scores, strict=True):
            assert seed_score == pytest.approx((values[2] + values[3]) / 2, rel=1e-12)
        assert float(row["score"]) == pytest.approx(np.mean(seed_scores), rel=1e-12, abs=1e-12)
        assert [float(x) for x in row["seed_scores"].split()] == [
            written_with_six_digits(x) for x in seed_scores
        ]
        # The final return is the trainer's own (float64); the event files hold float32 values.
        finals = [values[-1] for _, values in evaluations]
        assert float(row["final_return"]) == pytest.approx(np.mean(finals), rel=FLOAT32, abs=1e-12)
        for key in COMMON:
            low, high = PAPER_RANGES[key]
            assert low <= float(row[key]) <= high, key


def test_the_rows_hold_the_configurations_the_members_trained_with(population_search):
    logdir, base = population_search.logdir, population_search.base
    rows = read_table(logdir)
    trial_ids = sorted(path.name for path in (logdir / "trials").iterdir())
    assert len(trial_ids) == TRIALS // POPULATION
    assert sorted(path.name for path in (logdir / "tune").iterdir() if path.is_dir()) == trial_ids
    assert sorted(done_trials(logdir)) == trial_ids
    expected_ids = {f"{trial}_m{k}" for trial in trial_ids for k in range(POPULATION)}
    assert {row["trial_id"] for row in rows} == expected_ids
    for row in rows:
        trial, _, member = row["trial_id"].rpartition("_m")
        member_dir = logdir / "trials" / trial / f"member{member}"
        assert row["logdir"] == str(member_dir)
        for seed in range(SEEDS):
            run = member_dir / f"seed{seed}"
            assert trained_hparams(run) == (row_hparams(base, row), seed)
            # Trained as a population: a fresh one saves a checkpoint at step 0, a run alone does not.
            assert checkpoint_steps(run) == [0, 100, 200]
            assert (run / "policy").is_dir() and not (run / training.DIVERGED).exists()
    for trial in trial_ids:
        assert sorted(p.name for p in (logdir / "trials" / trial).iterdir()) == [
            f"member{k}" for k in range(POPULATION)
        ]
        for k in range(POPULATION):
            assert sorted(p.name for p in (logdir / "trials" / trial / f"member{k}").iterdir()) == [
                f"seed{s}" for s in range(SEEDS)
            ]
    # Four configurations drawn, none twice.
    assert len({tuple(row[key] for key in sorted(COMMON)) for row in rows}) == TRIALS
    assert json.loads((logdir / "search.json").read_text())["population"] == POPULATION


def test_the_best_hparams_are_the_top_rows_configuration(population_search):
    logdir, base = population_search.logdir, population_search.base
    top = read_table(logdir)[0]
    best = hparams_lib.load(logdir / "best_hparams.json")
    assert best == row_hparams(base, top)
    assert trained_hparams(pathlib.Path(top["logdir"]) / "seed0")[0] == best
    assert f"best: trial {top['trial_id']}, score (second_half_mean)" in population_search.first.stdout


def test_running_the_search_again_retrains_nothing(population_search):
    again = population_search.again
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(population_search.snapshots_after_first) == TRIALS // POPULATION
    assert population_search.snapshots_after_again == population_search.snapshots_after_first
    assert read_table(population_search.logdir) == population_search.table_after_first
    assert "continuing the search" in again.stdout


def test_resuming_with_another_population_is_refused(population_search):
    logdir = population_search.logdir
    before = tree_snapshot(logdir)
    command = [arg for arg in population_search.command if not arg.startswith("--population=")]
    for population in ("--population=1", "--population=4"):
        result = subprocess.run([*command, population], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines == [
            f"bin/search: error: {logdir} holds a different search (changed: population); "
            "choose another --logdir"
        ]
    assert tree_snapshot(logdir) == before


# --- bad requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--population=0"], "population must be an integer >= 1, got 0"),
        (["--population=-2"], "population must be an integer >= 1, got -2"),
        (
            ["--trials=5", "--population=2"],
            "trials (5) must be a multiple of the population (2): "
            "each Tune trial trains that many configurations",
        ),
    ],
)
def test_a_bad_population_gets_one_line_and_exit_2(tmp_path, args, message):
    logdir = tmp_path / "search"
    hparams_file = ROOT / "hparams" / "bandit_smoothie.json"
    command = search_command(f"--env={ENV}", f"--hparams={hparams_file}", f"--logdir={logdir}", *args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"bin/search: error: {message}"]
    assert not logdir.exists()


def test_a_search_recorded_before_populations_resumes_as_a_population_of_one(tmp_path):
    logdir = tmp_path / "search"
    request = search.SearchRequest(ENV, bandit_hparams(), logdir, trials=4)
    record = request.record()
    assert record["population"] == 1
    del record["population"]
    logdir.mkdir()
    (logdir / "search.json").write_text(json.dumps(record))
    assert search.check_logdir(request)
    with pytest.raises(search.SearchError, match=r"holds a different search \(changed: population\)"):
        search.check_logdir(dataclasses.replace(request, population=2))


def test_a_population_search_samples_one_space_per_member():
    space = search.param_space(bandit_hparams(), population=3)
    assert list(space) == ["member0", "member1", "member2"]
    for member in space.values():
        assert set(member) == COMMON
        for key, domain in member.items():
            assert (domain.lower, domain.upper) == PAPER_RANGES[key]
    assert search.trial_configs({"member0": {"actor_lr": 1.0}, "member1": {"actor_lr": 2.0}}) == [
        {"actor_lr": 1.0},
        {"actor_lr": 2.0},
    ]
    assert search.trial_configs({"actor_lr": 1.0}) == [{"actor_lr": 1.0}]


# --- rows of population trials in every state -----------------------------------------------------


def configuration(scale: float) -> dict:
    return {"actor_lr": 1e-4 * scale, "critic_lr": 1e-3 * scale, "reward_scale": 0.1 * scale}


def done_metrics(k: int, scores: list[float], finals: list[float]) -> dict:
    return {
        f"member{k}_outcome": "done",
        f"member{k}_score": float(np.mean(scores)),
        f"member{k}_score_std": float(np.std(scores)),
        f"member{k}_seed_scores": scores,
        f"member{k}_final_return": float(np.mean(finals)),
        f"member{k}_final_return_std": float(np.std(finals)),
        f"member{k}_seed_returns": finals,
    }


def population_result(trial_id: str, metrics: dict, config: dict | None = None, error=None):
    config = {"member0": configuration(1.0), "member1": configuration(2.0)} if config is None else config
    return types.SimpleNamespace(metrics=metrics, config=config, error=error, path=f"/tune/{trial_id}")


def test_population_trials_give_one_row_per_configuration_whatever_their_state(tmp_path):
    final = {"outcome": "done", "ranked_by": "second_half_mean"}
    results = [
        # Created, never started: no metrics, no config yet.
        population_result("t1", {}, config={}),
        # Member 1 diverged, member 0 finished.
        population_result(
            "t2",
            {"trial_id": "t2", **final, "member1_outcome": "diverged"}
            | done_metrics(0, [2.0, 4.0], [5.0, 1.0]),
        ),
        # Running: its intermediate report only.
        population_result("t3", {"trial_id": "t3", "outcome": "running", "score": math.nan, "step": 100}),
        # Both finished.
        population_result(
            "t4",
            {"trial_id": "t4", **final}
            | done_metrics(0, [1.0, 1.0], [9.0, 9.0])
            | done_metrics(1, [5.0, 3.0], [0.5, 0.5]),
        ),
        # The worker died after both had finished: an error whatever the metrics.
        population_result(
            "t5",
            {"trial_id": "t5", **final} | done_metrics(0, [7.0, 7.0], [7.0, 7.0]),
            error=RuntimeError("worker\n died"),
        ),
    ]
    request = search.SearchRequest(
        ENV, bandit_hparams(), tmp_path, trials=10, population=2, score="second_half_mean"
    )
    rows = search.trial_rows(results, request)
    assert [(r["trial_id"], r["status"]) for r in rows] == [
        ("t4_m1", "done"),  # 4.0
        ("t2_m0", "done"),  # 3.0
        ("t4_m0", "done"),  # 1.0, whatever its final return
        # Then the diverged ones, then the others in Tune's order of their trials (trial_rows' docstring).
        ("t2_m1", "diverged"),
        ("t1_m0", "unfinished"),
        ("t1_m1", "unfinished"),
        ("t3_m0", "unfinished"),
        ("t3_m1", "unfinished"),
        ("t5_m0", "error"),
        ("t5_m1", "error"),
    ]
    by_id = {r["trial_id"]: r for r in rows}
    assert [r["score"] for r in rows[:3]] == [4.0, 3.0, 1.0]
    assert all(math.isnan(r["score"]) and math.isnan(r["final_return"]) for r in rows[3:])
    best = by_id["t2_m0"]
    assert (best["score_std"], best["seed_scores"], best["seed_returns"]) == (1.0, "2 4", "5 1")
    assert best["final_return"] == 3.0 and best["final_return_std"] == 2.0
    assert {key: best[key] for key in COMMON} == configuration(1.0)
    assert {key: by_id["t2_m1"][key] for key in COMMON} == configuration(2.0)
    assert by_id["t2_m1"]["seed_scores"] == "" and by_id["t2_m1"]["error"] == ""
    assert best["logdir"] == str(tmp_path / "trials" / "t2" / "member0")
    assert by_id["t2_m1"]["logdir"] == str(tmp_path / "trials" / "t2" / "member1")
    # Not started: no configuration yet; running: the configuration it trains.
    assert all(by_id[f"t1_m{k}"][key] is None for k in range(2) for key in COMMON)
    assert {key: by_id["t3_m1"][key] for key in COMMON} == configuration(2.0)
    assert {r["error"] for r in rows if r["status"] == "error"} == {"worker died"}
    assert {r["ranked_by"] for r in rows} == {"second_half_mean"}
    search.write_table(rows, tmp_path / "trials.csv")
    table = read_table(tmp_path)
    assert [(row["rank"], row["trial_id"]) for row in table[:2]] == [("1", "t4_m1"), ("2", "t2_m0")]


# --- a configuration that diverges inside a population trial --------------------------------------

# reward_scale 1e39 is a valid hparam (> 0) that float32 holds as inf: the member's Bellman
# targets are inf (the bandit's rewards are > 0) and its critic loss is inf at its first update,
# step 16 (batch_size 16, no warm-up), with no chance involved. Forcing that through a real
# search would need a sampled reward_scale above float32's range, which a reliable test cannot
# get from a log-uniform draw; so the trial function runs here in this process, as a Tune worker
# runs it, with Tune's report replaced by a list.
DIVERGING = 1e39
FIRST_UPDATE = 16


@dataclasses.dataclass
class TrialCall:
    """A population trial (2 configurations x 2 seeds, 40 steps) run once by its trial function."""

    request: search.SearchRequest
    config: dict
    trial_dir: pathlib.Path
    reports: list[dict]  # what it reported to Tune, in order


def call_trial(config: dict, request: search.SearchRequest, trial_dir: pathlib.Path) -> list[dict]:
    """The trial function run as a Tune worker runs it, Tune's report replaced by a list: its reports."""
    reports: list[dict] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tune, "report", lambda metrics: reports.append(dict(metrics)))
        search.run_population_trial(config, search._trial_setup(request), trial_dir)
    return reports


def first_call(directory: pathlib.Path, config: dict) -> TrialCall:
    base = bandit_hparams(total_steps=40, eval_interval=10)
    request = search.SearchRequest(
        ENV, base, directory, trials=2, seeds=2, score="second_half_mean", population=2
    )
    trial_dir = directory / "trials" / "t1"
    return TrialCall(request, config, trial_dir, call_trial(config, request, trial_dir))


def copied(trial: TrialCall, directory: pathlib.Path) -> TrialCall:
    """The trial with its directory copied under `directory` (mtimes kept), its reports none yet."""
    request = dataclasses.replace(trial.request, logdir=directory)
    trial_dir = directory / "trials" / "t1"
    shutil.copytree(trial.trial_dir, trial_dir)
    return TrialCall(request, trial.config, trial_dir, [])


def assert_same_report(again: dict, first: dict) -> None:
    assert sorted(again) == sorted(first)
    for key, value in first.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(again[key]), key
        else:
            assert again[key] == value, key


@pytest.fixture(scope="module")
def one_diverged(tmp_path_factory) -> TrialCall:
    """Configuration 1 diverges (in both seeds), configuration 0 finishes."""
    config = {"member0": configuration(1.0), "member1": configuration(1.0) | {"reward_scale": DIVERGING}}
    return first_call(tmp_path_factory.mktemp("one_diverged"), config)


@pytest.fixture(scope="module")
def all_diverged(tmp_path_factory) -> TrialCall:
    """Both configurations diverge, every run at its first update."""
    config = {
        "member0": configuration(1.0) | {"reward_scale": DIVERGING},
        "member1": configuration(2.0) | {"reward_scale": DIVERGING},
    }
    return first_call(tmp_path_factory.mktemp("all_diverged"), config)


def test_a_configuration_that_diverges_stops_alone_and_ranks_as_diverged(one_diverged):
    reports, config, trial_dir = one_diverged.reports, one_diverged.config, one_diverged.trial_dir
    request = one_diverged.request
    base = request.base

    diverged_evaluations = []
    for seed in range(2):
        run = trial_dir / "member1" / f"seed{seed}"
        record = json.loads((run / training.DIVERGED).read_text())
        assert record["step"] == FIRST_UPDATE
        assert record["reason"].startswith(f"non-finite loss at step {FIRST_UPDATE} (critic inf")
        steps, values = plotting.eval_returns(run)
        assert steps.tolist() == [10]  # evaluated before its first update, never after
        diverged_evaluations.append(values[0])
        assert checkpoint_steps(run) == [0] and not (run / "policy").exists()
        assert trained_hparams(run) == (search.trial_hparams(base, config["member1"]), seed)

    evaluations = []
    for seed in range(2):
        run = trial_dir / "member0" / f"seed{seed}"
        assert not (run / training.DIVERGED).exists() and (run / "policy").is_dir()
        assert trained_hparams(run) == (search.trial_hparams(base, config["member0"]), seed)
        steps, values = plotting.eval_returns(run)
        assert steps.tolist() == [10, 20, 30, 40]
        assert checkpoint_steps(run) == [0, 40]
        evaluations.append(values)

    # One report per evaluation round, of the runs still training, then the outcome.
    *rounds, last = reports
    assert [(r["step"], r["outcome"]) for r in rounds] == [
        (10, "running"),
        (20, "running"),
        (30, "running"),
        (40, "running"),
    ]
    everyone_at_10 = [values[0] for values in evaluations] + diverged_evaluations
    assert rounds[0]["eval_return"] == pytest.approx(np.mean(everyone_at_10), rel=FLOAT32)
    for i, r in enumerate(rounds[1:], 1):
        assert r["eval_return"] == pytest.approx(np.mean([values[i] for values in evaluations]), rel=FLOAT32)
    seed_scores = [(values[2] + values[3]) / 2 for values in evaluations]  # evaluations at 30 and 40
    assert last["step"] == 40 and last["outcome"] == "done" and last["ranked_by"] == "second_half_mean"
    assert (last["member0_outcome"], last["member1_outcome"]) == ("done", "diverged")
    assert last["member0_seed_scores"] == pytest.approx(seed_scores, rel=1e-12)
    assert last["member0_score"] == pytest.approx(np.mean(seed_scores), rel=1e-12)
    assert last["member0_score_std"] == pytest.approx(np.std(seed_scores), rel=1e-9, abs=1e-12)
    finals = [values[-1] for values in evaluations]
    assert last["member0_seed_returns"] == pytest.approx(finals, rel=FLOAT32)
    assert last["member0_final_return"] == pytest.approx(np.mean(finals), rel=FLOAT32)
    assert last["eval_return"] == pytest.approx(np.mean(finals), rel=FLOAT32)
    assert not any(key.startswith("member1_") and key != "member1_outcome" for key in last)

    rows = search.trial_rows([population_result("t1", {"trial_id": "t1"} | last, config=config)], request)
    assert [(r["trial_id"], r["status"]) for r in rows] == [("t1_m0", "done"), ("t1_m1", "diverged")]
    assert rows[0]["score"] == last["member0_score"] and math.isnan(rows[1]["score"])
    assert rows[1]["reward_scale"] == DIVERGING


def test_a_trial_started_again_after_all_its_runs_diverged_ranks_each_configuration_as_diverged(
    all_diverged,
):
    """Tune starts a trial again from the beginning (the trial function called anew, same trial
    id and directory) when a search is restored with the trial unfinished: the search was
    interrupted, or its worker lost, after the last of the trial's runs diverged and before the
    trial's final report reached Tune. That window is too short for a real search to be stopped
    in reliably, so, as above, this process plays the worker: every run diverges for real
    (reward_scale DIVERGING in both configurations), and the trial function, called again, is
    the trial started again. It must find every run's diverged.json, train nothing and report
    the outcome of the first call, each configuration diverged (without every run stopped, the
    trainer itself takes the stopped runs out; with all of them, it refuses to start, and Tune
    would record the trial as an error)."""
    config, request, trial_dir = all_diverged.config, all_diverged.request, all_diverged.trial_dir
    first = all_diverged.reports[-1]
    assert first["step"] == FIRST_UPDATE and (first["member0_outcome"], first["member1_outcome"]) == (
        "diverged",
        "diverged",
    )
    runs = [trial_dir / f"member{k}" / f"seed{seed}" for k in range(2) for seed in range(2)]
    assert all((run / training.DIVERGED).exists() for run in runs)
    before = tree_snapshot(trial_dir)

    reports = call_trial(config, request, trial_dir)  # the trial started again
    assert len(reports) == 1
    assert_same_report(reports[0], first)
    assert math.isnan(reports[0]["eval_return"])
    assert tree_snapshot(trial_dir) == before  # nothing trained, nothing written

    rows = search.trial_rows(
        [population_result("t1", {"trial_id": "t1"} | reports[0], config=config)], request
    )
    assert [(r["trial_id"], r["status"]) for r in rows] == [("t1_m0", "diverged"), ("t1_m1", "diverged")]
    assert all(math.isnan(r["score"]) and r["error"] == "" for r in rows)
    assert [r["reward_scale"] for r in rows] == [DIVERGING, DIVERGING]


def test_a_trial_started_again_after_one_configuration_diverged_reports_the_finished_one_as_before(
    one_diverged, tmp_path
):
    """As above, the trial started again, now after configuration 1's runs diverged and
    configuration 0's finished: the trainer resumes configuration 0's runs at their last
    checkpoint, step 40, with nothing left to train, and leaves configuration 1's out; the report
    is the first call's, configuration 0 done with the same score and returns, configuration 1
    diverged."""
    first = one_diverged.reports[-1]
    assert (first["member0_outcome"], first["member1_outcome"]) == ("done", "diverged")
    again = copied(one_diverged, tmp_path)
    runs = [again.trial_dir / f"member{k}" / f"seed{seed}" for k in range(2) for seed in range(2)]
    assert [(run / training.DIVERGED).exists() for run in runs] == [False, False, True, True]
    before = tree_snapshot(again.trial_dir)
    reports = call_trial(again.config, again.request, again.trial_dir)
    assert len(reports) == 1
    assert_same_report(reports[0], first)
    # Nothing trained: the checkpoints and records as they were (the finished runs' policies are
    # exported again, and their event files get a new, empty one).
    kept = [name for name in before if "/checkpoints/" in name or name.endswith(training.DIVERGED)]
    assert len(kept) > 4 and {name: tree_snapshot(again.trial_dir).get(name) for name in kept} == {
        name: before[name] for name in kept
    }
    assert reports[0]["step"] == 40 and math.isfinite(reports[0]["member0_score"])


def test_a_trial_started_again_after_its_runs_diverged_at_different_steps_reports_the_last(
    all_diverged, tmp_path
):
    """The runs of a population diverge at steps of their own in general (here all at their first
    update): the trial started again after every run diverged reports the step of the last of
    them, as the trainer's step was when the last one stopped. Its records rewritten to steps 16,
    29, 23 and 16 (member0/seed0, member0/seed1, member1/seed0, member1/seed1), the report's step is
    29, the outcomes still diverged."""
    first = all_diverged.reports[-1]
    again = copied(all_diverged, tmp_path)
    steps = {
        ("member0", 0): FIRST_UPDATE,
        ("member0", 1): 29,
        ("member1", 0): 23,
        ("member1", 1): FIRST_UPDATE,
    }
    for (member, seed), step in steps.items():
        path = again.trial_dir / member / f"seed{seed}" / training.DIVERGED
        record = json.loads(path.read_text())
        assert sorted(record) == ["reason", "step"] and record["step"] == FIRST_UPDATE
        path.write_text(json.dumps(record | {"step": step}))
    reports = call_trial(again.config, again.request, again.trial_dir)
    assert len(reports) == 1 and reports[0]["step"] == 29
    assert_same_report(reports[0] | {"step": FIRST_UPDATE}, first)
