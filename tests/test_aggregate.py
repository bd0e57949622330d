"""smoothie_tf.aggregate and bin/report: IQM, probability of improvement and their
stratified-bootstrap intervals (rliable), on hand-computed arrays and synthetic run directories."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from small_runs import ROOT, without_tensorflow

from smoothie_tf import aggregate, plotting
from smoothie_tf.summaries import EVAL_RETURN

REPORT = [sys.executable, str(ROOT / "bin" / "report")]


def write_run(logdir: pathlib.Path, steps, returns, seed: int = 0, env: str = "Hopper-v4", **hparams) -> None:
    """A run directory as bin/train leaves it, as far as the readers of runs look: hparams.json
    and `eval/mean_return` events (values exact in float32 keep comparisons exact)."""
    logdir.mkdir(parents=True)
    record = {"env": env, "seed": seed, "hparams": {"agent": "smoothie", **hparams}}
    (logdir / "hparams.json").write_text(json.dumps(record))
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for step, value in zip(steps, returns, strict=True):
            tf.summary.scalar(EVAL_RETURN, float(value), step=int(step))
    writer.close()


def run(steps, returns, seed=0, logdir="run") -> plotting.Run:
    """A run held in memory, for the functions that take runs."""
    steps, returns = np.array(steps), np.array(returns, dtype=np.float64)
    return plotting.Run(pathlib.Path(logdir), "Hopper-v4", seed, {}, steps, returns)


# --- the estimators, against hand computations --------------------------------------------------


@pytest.mark.parametrize(
    "scores, middle",
    [
        ([5, 1, 9, 3, 7, 100, -50, 4], [3, 4, 5, 7]),  # 8 runs: sorted, 2 cut from each end
        ([10, 2, 8, 4, 6], [4, 6, 8]),  # 5 runs: floor(5/4) = 1 cut from each end
        ([1, 2, 3, 40], [2, 3]),
        ([7.5], [7.5]),
    ],
)
def test_iqm_is_the_mean_of_the_middle_half(scores, middle):
    assert aggregate.iqm(scores) == pytest.approx(np.mean(middle), abs=1e-12)
    assert aggregate.iqm(scores) == pytest.approx(scipy.stats.trim_mean(scores, 0.25), abs=1e-12)


def pairwise_improvement(x, y) -> float:
    """P(X > Y), ties one half, counted over every pair."""
    return sum((a > b) + 0.5 * (a == b) for a in x for b in y) / (len(x) * len(y))


def test_probability_of_improvement_counts_pairs_with_ties_one_half():
    # 1 beats none of (2, 4); 4 beats 2 and ties 4; 6 beats both: (0 + 1.5 + 2) / 6.
    assert aggregate.probability_of_improvement([1, 4, 6], [2, 4]) == pytest.approx(3.5 / 6, abs=1e-12)
    assert aggregate.probability_of_improvement([2, 4], [1, 4, 6]) == pytest.approx(2.5 / 6, abs=1e-12)
    assert aggregate.probability_of_improvement([5, 6], [1, 2, 3]) == 1.0
    assert aggregate.probability_of_improvement([3, 3], [3, 3]) == 0.5
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, size=7), rng.integers(0, 5, size=9)  # many ties
    assert aggregate.probability_of_improvement(x, y) == pytest.approx(pairwise_improvement(x, y), abs=1e-12)


def test_an_interval_holds_its_estimate_and_shrinks_with_more_runs():
    rng = np.random.default_rng(1)
    widths = {}
    for n in (5, 50):
        scores = rng.normal(1000.0, 100.0, size=n)
        interval = aggregate.iqm_interval(scores, reps=1000, seed=3)
        assert interval.point == pytest.approx(scipy.stats.trim_mean(scores, 0.25), abs=1e-9)
        assert interval.low <= interval.point <= interval.high
        assert scores.min() <= interval.low and interval.high <= scores.max()
        widths[n] = interval.high - interval.low
    assert widths[50] < 0.5 * widths[5], widths


def test_the_iqm_interval_has_the_width_of_asymptotic_theory():
    """The 25%-trimmed mean of n draws of N(0, 1) has variance v/n, v = [∫_{-c}^{c} x² dΦ + 2·0.25·c²]
    / 0.5², c = Φ⁻¹(0.75) (Huber's formula): the 95% interval is about 2·1.96·sqrt(v/n) wide."""
    c = scipy.stats.norm.ppf(0.75)
    inner = (2 * scipy.stats.norm.cdf(c) - 1) - 2 * c * scipy.stats.norm.pdf(c)  # ∫_{-c}^{c} x² dΦ
    v = (inner + 2 * 0.25 * c**2) / 0.5**2
    assert v == pytest.approx(1.1952, abs=1e-4)
    n = 400
    scores = np.random.default_rng(2).normal(size=n)
    interval = aggregate.iqm_interval(scores, reps=2000, seed=0)
    # The bootstrap's own spread at n = 400 and 2000 resamples is a few percent.
    assert interval.high - interval.low == pytest.approx(2 * 1.959964 * np.sqrt(v / n), rel=0.15)


def test_the_improvement_interval_is_a_probability_around_its_estimate():
    x, y = np.array([3.0, 5, 6, 9, 10]), np.array([1.0, 4, 5, 7, 8])
    interval = aggregate.improvement_interval(x, y, reps=1000, seed=0)
    assert interval.point == pytest.approx(pairwise_improvement(x, y), abs=1e-12)
    assert 0.0 <= interval.low <= interval.point <= interval.high <= 1.0
    assert interval.high - interval.low > 0.2  # 5 runs each: far from certain
    certain = aggregate.improvement_interval([5.0, 6], [1.0, 2, 3], reps=200)
    assert certain == aggregate.Interval(1.0, 1.0, 1.0)


def test_the_bootstrap_is_reproducible_and_leaves_the_global_generator_alone():
    scores = np.random.default_rng(4).normal(size=9)
    np.random.seed(123)  # noqa: NPY002
    expected_next = np.random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    first = aggregate.iqm_interval(scores, reps=300, seed=7)
    assert np.random.random() == expected_next  # noqa: NPY002
    assert aggregate.iqm_interval(scores, reps=300, seed=7) == first
    assert aggregate.iqm_interval(scores, reps=300, seed=8) != first


def test_the_iqm_curve_runs_over_the_steps_every_run_has():
    runs = [
        run([10, 20, 30], [1.0, 2.0, 3.0], seed=0),
        run([10, 20, 30], [2.0, 6.0, 5.0], seed=1),
        run([10, 20, 30], [3.0, 4.0, 9.0], seed=2),
        run([10, 20], [4.0, 8.0], seed=3),  # stopped early: the curve ends at 20
    ]
    curve = aggregate.iqm_curve(runs, reps=300, seed=0)
    np.testing.assert_array_equal(curve.steps, [10, 20])
    np.testing.assert_allclose(curve.iqm, [np.mean([2.0, 3.0]), np.mean([4.0, 6.0])])
    assert np.all(curve.low <= curve.iqm) and np.all(curve.iqm <= curve.high)
    assert curve.low[1] < curve.high[1]


def test_a_score_at_a_step_and_why_a_run_has_none():
    r = run([100, 200, 300], [10.0, 20.0, 60.0], seed=4, logdir="arm/seed4")
    assert aggregate.run_score_at(r, 200) == 20.0
    assert aggregate.run_score_at(r, 300, window=100) == 40.0  # evaluations at 200 and 300
    assert aggregate.run_score_at(r, 300, window=250) == 30.0
    assert aggregate.run_score_at(r, 250) is None and aggregate.run_score_at(r, 400) is None
    arm = aggregate.Arm("a", [r, run([100, 200, 300, 400], [1.0, 2.0, 3.0, 4.0], seed=5, logdir="arm/seed5")])
    at_400 = aggregate.step_scores(arm, 400)
    np.testing.assert_array_equal(at_400.scores, [4.0])
    assert at_400.seeds == [5]
    assert at_400.missing == ["arm/seed4 (seed 4) has evaluations up to step 300 only"]
    assert aggregate.step_scores(arm, 250).missing == [
        "arm/seed4 (seed 4) has no evaluation at step 250",
        "arm/seed5 (seed 5) has no evaluation at step 250",
    ]


def test_arms_are_read_from_names_and_directories():
    assert aggregate.arm_directories(["a=x", "b=y,z", "a=w"]) == {"a": ["x", "w"], "b": ["y", "z"]}
    for bad in ("a", "=x", "a=", "a=,"):
        with pytest.raises(aggregate.AggregateError, match="must look like NAME=DIR"):
            aggregate.arm_directories([bad])


# --- bin/report on synthetic runs ---------------------------------------------------------------

STEPS = [100, 200, 300]
# Per seed, the evaluation returns at STEPS: arm "kl" beats "ddpg"; its seed 4 stopped at 200.
RETURNS = {
    "kl": [[10, 40, 80], [20, 50, 90], [30, 60, 70], [15, 45, 100], [25, 55]],
    "ddpg": [[5, 20, 30], [12, 35, 40], [8, 30, 95], [14, 10, 20], [9, 25, 35]],
}


@pytest.fixture(scope="module")
def arms_root(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("arms")
    for name, per_seed in RETURNS.items():
        for seed, returns in enumerate(per_seed):
            write_run(root / name / f"seed{seed}", STEPS[: len(returns)], returns, seed=seed, agent_name=name)
    return root


def run_report(*args: str, environment: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**(environment or os.environ), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([*REPORT, *args], capture_output=True, text=True, env=environment, timeout=300)


def table_rows(markdown: str) -> dict[str, list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


def interval_text(interval: aggregate.Interval, number: str) -> str:
    return f"{number.format(interval.point)} [{number.format(interval.low)}, {number.format(interval.high)}]"


def test_bin_report_prints_the_table_writes_the_figure_and_names_what_is_missing(arms_root, tmp_path):
    out, table = tmp_path / "figures" / "hopper.png", tmp_path / "tables" / "hopper.md"
    result = run_report(
        f"kl={arms_root / 'kl'}",
        f"ddpg={arms_root / 'ddpg'}",
        "--steps=100,200,300",
        "--baseline=ddpg",
        "--reps=300",
        f"--out={out}",
        f"--markdown={table}",
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert table.read_text() in result.stdout
    rows = table_rows(table.read_text())
    assert rows["arm"] == [
        "arm", "seeds", "IQM at 100 [95% CI]", "IQM at 200 [95% CI]", "IQM at 300 [95% CI]",
        "P(arm > ddpg) at 100 [95% CI]", "P(arm > ddpg) at 200 [95% CI]", "P(arm > ddpg) at 300 [95% CI]",
    ]  # fmt: skip
    assert rows["kl"][1] == rows["ddpg"][1] == "5"
    for name in ("kl", "ddpg"):
        for i in range(len(STEPS)):
            scores = [returns[i] for returns in RETURNS[name] if len(returns) > i]
            expected = interval_text(aggregate.iqm_interval(scores, reps=300, seed=0), "{:.1f}")
            assert rows[name][2 + i] == expected + ("" if len(scores) == 5 else f" (n={len(scores)})")
    # By hand: at 100, kl's 10 beats 3 of ddpg's (5, 12, 8, 14, 9) and its 20, 30, 15, 25 beat all 5.
    assert rows["kl"][5].startswith("0.92 [")  # (3 + 5 + 5 + 5 + 5) / 25
    kl_300 = [80, 90, 70, 100]
    ddpg_300 = [returns[2] for returns in RETURNS["ddpg"]]
    expected = aggregate.improvement_interval(kl_300, ddpg_300, reps=300, seed=0)
    assert rows["kl"][7] == interval_text(expected, "{:.2f}") + " (n=4)"
    assert rows["ddpg"][5:] == ["(baseline)"] * 3
    missing = f"- kl at step 300: {arms_root / 'kl' / 'seed4'} (seed 4) has evaluations up to step 200 only"
    assert missing in result.stdout.splitlines()
    assert "Notes:" not in result.stdout


def test_the_default_step_is_the_last_evaluation_and_mixed_hparams_are_noted(arms_root, tmp_path):
    write_run(tmp_path / "other" / "seed9", [100, 200, 300, 400], [1, 2, 3, 4], seed=9, agent_name="other")
    arms = aggregate.load_arms({"kl": [arms_root / "kl", tmp_path / "other"], "ddpg": [arms_root / "ddpg"]})
    assert aggregate.last_step(arms) == 400
    report = aggregate.compare(arms, [aggregate.last_step(arms)], reps=100)
    rows = table_rows(aggregate.markdown(report))
    assert rows["arm"] == ["arm", "seeds", "IQM at 400 [95% CI]"]
    assert rows["kl"][1:] == ["6", "4.0 [4.0, 4.0] (n=1)"] and rows["ddpg"][1:] == ["5", "-"]
    assert len(report.missing()) == 5 + 5
    assert report.notes == ["arm kl: its runs differ in agent_name"]
    assert "- arm kl: its runs differ in agent_name" in aggregate.markdown(report)
    (tmp_path / "empty" / "seed0").mkdir(parents=True)
    write_run(tmp_path / "empty" / "seed1", [], [], seed=1)
    with pytest.raises(aggregate.AggregateError, match="none of the runs has an evaluation"):
        aggregate.last_step(aggregate.load_arms({"e": [tmp_path / "empty"]}))


def test_arms_that_cannot_be_compared_are_refused(arms_root, tmp_path):
    write_run(tmp_path / "walker" / "seed0", STEPS, [1, 2, 3], env="Walker2d-v4")
    kl, ddpg = aggregate.load_arms({"kl": [arms_root / "kl"], "ddpg": [arms_root / "ddpg"]})
    (walker,) = aggregate.load_arms({"walker": [tmp_path / "walker"]})
    refused = {
        "baseline 'sac' is not an arm; the arms are kl, ddpg": ([kl, ddpg], STEPS, {"baseline": "sac"}),
        "different environments: Hopper-v4, Walker2d-v4": ([kl, walker], STEPS, {}),
        "arm names repeat: kl, kl": ([kl, kl], STEPS, {}),
        "is in arms kl and both": ([kl, aggregate.Arm("both", kl.runs[:1])], STEPS, {}),
        "steps must be positive": ([kl], [0, 100], {}),
        "window must be >= 0": ([kl], STEPS, {"window": -1}),
    }
    for message, (arms, steps, options) in refused.items():
        with pytest.raises(aggregate.AggregateError, match=message):
            aggregate.compare(arms, steps, **options)
    with pytest.raises(aggregate.AggregateError, match="arm kl: .*nothing is not a directory"):
        aggregate.load_arms({"kl": [tmp_path / "nothing"]})
    (tmp_path / "bare").mkdir()
    with pytest.raises(aggregate.AggregateError, match="arm kl: no runs"):
        aggregate.load_arms({"kl": [tmp_path / "bare"]})
    with pytest.raises(aggregate.AggregateError, match="arm mixed mixes environments: Hopper-v4, Walker2d"):
        aggregate.load_arms({"mixed": [arms_root / "kl", tmp_path / "walker"]})
    (tmp_path / "corrupt" / "seed0").mkdir(parents=True)
    (tmp_path / "corrupt" / "seed0" / "hparams.json").write_text('{"env": "Hopper-v4", "seed": 0,\n')
    expected = f"arm kl: {tmp_path / 'corrupt' / 'seed0' / 'hparams.json'} is not valid JSON: Expecting"
    with pytest.raises(aggregate.AggregateError, match=re.escape(expected)):  # bin/report: one line, exit 2
        aggregate.load_arms({"kl": [arms_root / "kl", tmp_path / "corrupt"]})


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give at least one arm"),  # these before the runs are read,
        (["kl"], "arm 'kl' must look like NAME=DIR or NAME=DIR1,DIR2"),
        (["kl={kl}", "--steps=100,abc"], "--steps must be a comma-separated list of integers"),
        (["kl={kl}", "--seed=-1"], "flag --seed=-1: -1 is not an integer in the range [0, 4294967295]"),
        (["kl={kl}", "--seed=4294967296"], "4294967296 is not an integer in the range"),
        # the outputs are checked before the runs are read too (the corrupt run would fail otherwise),
        (["kl={corrupt}", "--out={out}/figure.jpg"], "--out: must name a .png file, got {out}/figure.jpg"),
        (["kl={corrupt}", "--out={notes}/f.png"], "--out: {notes} is a file, so {notes}/f.png"),
        (["kl={corrupt}", "--markdown={notes}/t.md"], "--markdown: {notes} is a file, so {notes}/t.md"),
        (["kl={corrupt}", "--markdown={out}/figure.png"], "--markdown and --out name the same file"),
        # these before any event file is read (and TensorFlow loaded),
        (["kl={kl}", "ddpg={corrupt}"], "arm ddpg: {corrupt}/seed0/hparams.json is not valid JSON"),
        (["kl={kl}", "ddpg={out}"], "arm ddpg: {out} is not a directory"),
        (["kl={kl}", "ddpg={kl},{empty}"], "arm ddpg: no runs (directories with hparams.json) under {empty}"),
        (["kl={kl}", "ddpg={ddpg},{walker}"], "arm ddpg mixes environments: Hopper-v4, Walker2d-v4"),
        (["kl={kl}", "ddpg={ddpg}", "--baseline=sac"], "baseline 'sac' is not an arm"),  # this one after
    ],
)
def test_bad_input_gets_one_line_and_exit_2(arms_root, tmp_path, tmp_path_factory, args, message):
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    (inputs / "corrupt" / "seed0").mkdir(parents=True)
    (inputs / "corrupt" / "seed0" / "hparams.json").write_text('{"env": "Hopper-v4", "seed": 0,\n')
    (inputs / "notes").write_text("a file\n")
    names = {"kl": arms_root / "kl", "ddpg": arms_root / "ddpg", "out": out}
    names |= {"corrupt": inputs / "corrupt", "notes": inputs / "notes"}
    names |= {"empty": tmp_path / "empty", "walker": tmp_path / "walker"}
    names["empty"].mkdir()
    write_run(names["walker"] / "seed0", STEPS, [1, 2, 3], env="Walker2d-v4")
    defaults = [f"--out={out}/figure.png", f"--markdown={out}/t.md"]  # a case's own flag comes later and wins
    # All but the last case are refused before TensorFlow loads.
    environment = None if "--baseline=sac" in args else without_tensorflow(tmp_path_factory.mktemp("no_tf"))
    result = run_report(*defaults, *(arg.format(**names) for arg in args), environment=environment)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bin/report: error:"), lines
    assert message.format(**names) in lines[0], lines
    assert result.stdout == "" and not out.exists()
    assert sorted(path.name for path in inputs.rglob("*")) == ["corrupt", "hparams.json", "notes", "seed0"]


def test_runs_that_share_a_seed_are_counted_as_runs_not_seeds(tmp_path):
    # A search's configurations: every run trained with seed 0, differing hparams.
    for k in range(3):
        write_run(tmp_path / "search" / f"t{k}" / "seed0", [100, 200], [k, 2 * k], seed=0, actor_lr=10.0**-k)
    for seed in (1, 2):
        write_run(tmp_path / "seeds" / f"seed{seed}", [100, 200], [seed, seed], seed=seed)
    search = aggregate.load_arms({"search": [tmp_path / "search"]})
    seeds = aggregate.load_arms({"seeds": [tmp_path / "seeds"]})
    assert plotting.run_unit(search[0].runs) == "runs"
    assert plotting.run_unit(seeds[0].runs) == "seeds"
    one = table_rows(aggregate.markdown(aggregate.compare(seeds, [200], reps=100)))
    both = table_rows(aggregate.markdown(aggregate.compare(search + seeds, [200], reps=100)))
    assert one["arm"][:2] == ["arm", "seeds"] and both["arm"][:2] == ["arm", "runs"]
    (group,) = plotting.group_runs(seeds[0].runs)
    assert plotting.curve_label(group, np.array([100, 200])) == f"{group.label} (2 seeds)"
    labels = [plotting.curve_label(g, np.array([100, 200])) for g in plotting.group_runs(search[0].runs)]
    assert len(labels) == 3 and all(label.endswith("(1 seed)") for label in labels)  # one per configuration


def test_per_run_lists_every_runs_score_behind_the_iqms(arms_root, tmp_path):
    result = run_report(
        f"kl={arms_root / 'kl'}", "--steps=200,300", "--window=100", "--reps=100", "--per_run",
        f"--out={tmp_path / 'f.png'}", f"--markdown={tmp_path / 't.md'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "t.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("| kl | ")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    rows = {row[2]: row for row in cells if row[2].startswith("kl/")}  # not the IQM table's row
    # By hand, the mean of the evaluations at steps in [step - 100, step]; seed 4 stopped at 200.
    assert rows["kl/seed0"] == ["kl", "0", "kl/seed0", "25.0", "60.0"]
    assert rows["kl/seed3"] == ["kl", "3", "kl/seed3", "30.0", "72.5"]
    assert rows["kl/seed4"] == ["kl", "4", "kl/seed4", "40.0", "-"]
    assert sorted(rows) == [f"kl/seed{seed}" for seed in range(5)]
    assert "| arm | seed | run | score at 200 | score at 300 |" in text
    assert text in result.stdout and len(lines) == 1 + 5  # the IQM table's row and the five runs'
    without = run_report(f"kl={arms_root / 'kl'}", "--steps=200", "--reps=100", f"--out={tmp_path / 'g.png'}")
    assert "| arm | seed | run |" not in without.stdout


def test_per_run_rows_are_each_runs_score_in_the_arms_order(tmp_path):
    # Seeds that are neither directory names nor positions; a run that stops early sorted first;
    # a run without an evaluation at 200 but one inside the window; two arms; arm "a" from two
    # directories whose parents are not named after it.
    write_run(tmp_path / "a" / "x" / "r1", [100, 200, 300], [1, 2, 4], seed=7)
    write_run(tmp_path / "a" / "x" / "r0", [100, 200], [8, 16], seed=3)
    write_run(tmp_path / "a2" / "y" / "r2", [100, 200, 300], [32, 64, 128], seed=9)
    write_run(tmp_path / "b" / "z" / "r9", [100, 300], [5, 7], seed=1)
    arms = aggregate.load_arms({"a": [tmp_path / "a", tmp_path / "a2"], "base": [tmp_path / "b"]})
    report = aggregate.compare(arms, [200, 300], baseline="base", reps=10, window=100)
    text = aggregate.per_run_markdown(report)
    # By hand: the mean of the evaluations at steps in [step - 100, step]; "-" without one at step.
    assert text.splitlines() == [
        "| arm | seed | run | score at 200 | score at 300 |",
        "|---|---:|---|---:|---:|",
        "| a | 3 | x/r0 | 12.0 | - |",
        "| a | 7 | x/r1 | 1.5 | 3.0 |",
        "| a | 9 | y/r2 | 48.0 | 96.0 |",
        "| base | 1 | z/r9 | - | 7.0 |",
    ]
    assert aggregate.markdown(report, per_run=True) == aggregate.markdown(report)[:-1] + "\n\n" + text + "\n"
    # The IQM is over these same numbers (3 runs: nothing trimmed).
    assert table_rows(aggregate.markdown(report))["a"][2].startswith(f"{np.mean([12.0, 1.5, 48.0]):.1f} [")
