"""bin/plot and smoothie_tf.plotting: learning curves from real event files."""

import os
import subprocess
import sys

import numpy as np
import pytest
from small_runs import ROOT, bandit_hparams, without_tensorflow

from smoothie_tf import plotting, training

PLOT = [sys.executable, str(ROOT / "bin" / "plot")]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Two configurations of the bandit, two seeds each: runs/<configuration>/seed<N>."""
    root = tmp_path_factory.mktemp("runs")
    for name, hp in (("smoothie", bandit_hparams("smoothie")), ("ddpg", bandit_hparams("ddpg"))):
        for seed in (0, 1):
            training.Trainer("SmoothieBandit-v0", hp, seed, root / name / f"seed{seed}").run()
    return root


def run_plot(*args: str, environment: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**(environment or os.environ), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([*PLOT, *args], capture_output=True, text=True, env=environment, timeout=300)


def test_runs_are_grouped_by_configuration_with_mean_and_spread(runs_root):
    groups = plotting.group_runs([plotting.load_run(path) for path in plotting.find_runs([runs_root])])
    assert [(g.label, [r.seed for r in g.runs]) for g in groups] == [("ddpg", [0, 1]), ("smoothie", [0, 1])]
    for group in groups:
        per_seed = [plotting.eval_returns(run.logdir) for run in group.runs]
        steps, mean, low, high = group.curve()
        np.testing.assert_array_equal(steps, [50, 100, 150, 200])  # eval_interval 50, 200 steps
        values = np.stack([returns for _, returns in per_seed])
        np.testing.assert_allclose(mean, values.mean(axis=0))
        np.testing.assert_allclose(low, values.min(axis=0))
        np.testing.assert_allclose(high, values.max(axis=0))
        final = group.final()
        assert final["step"] == 200 and final["runs"] == 2
        assert final["mean"] == pytest.approx(values[:, -1].mean())
        assert final["std"] == pytest.approx(values[:, -1].std())
    assert not np.allclose(groups[0].curve()[1], groups[1].curve()[1])


def test_a_curve_stops_where_its_slowest_seed_is(runs_root):
    runs = [plotting.load_run(path) for path in plotting.find_runs([runs_root / "smoothie"])]
    runs[1].steps, runs[1].returns = runs[1].steps[:2], runs[1].returns[:2]  # seed 1 behind
    (group,) = plotting.group_runs(runs)
    steps, mean, _, _ = group.curve()
    np.testing.assert_array_equal(steps, [50, 100])
    assert mean[1] == pytest.approx((runs[0].returns[1] + runs[1].returns[1]) / 2)


def test_groups_of_the_same_name_are_told_apart_by_their_hparams(runs_root, tmp_path):
    other = tmp_path / "other" / "smoothie" / "seed0"
    training.Trainer("SmoothieBandit-v0", bandit_hparams("smoothie", actor_lr=3e-3), 0, other).run()
    runs = [plotting.load_run(p) for p in plotting.find_runs([runs_root / "smoothie", tmp_path / "other"])]
    labels = sorted(group.label for group in plotting.group_runs(runs))
    assert len(labels) == 2 and all(label.startswith("smoothie (actor_lr=") for label in labels)


def test_bin_plot_writes_a_png_and_prints_the_final_returns(runs_root, tmp_path):
    out = tmp_path / "figures" / "bandit.png"
    result = run_plot(str(runs_root / "smoothie"), str(runs_root / "ddpg"), f"--out={out}")
    assert (result.returncode, result.stderr) == (0, "")  # TensorFlow's start-up messages silenced
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("SmoothieBandit-v0")]
    assert [(row[1], row[2], row[3]) for row in rows] == [("ddpg", "2", "200"), ("smoothie", "2", "200")]
    assert result.stdout.splitlines()[0].split()[:4] == ["env", "configuration", "seeds", "step"]


def test_without_tensorflow_a_command_that_loads_it_fails(runs_root, tmp_path, tmp_path_factory):
    # What makes the refusals below proof that TensorFlow was not loaded: reading event files does.
    environment = without_tensorflow(tmp_path_factory.mktemp("no_tensorflow"))
    result = run_plot(str(runs_root), f"--out={tmp_path}/figure.png", environment=environment)
    assert result.returncode != 0 and "ImportError: tensorflow was imported" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "at least one run directory"),
        (["/nonexistent/runs"], "is not a directory"),
        (["{empty}"], "no runs"),
        (["{runs}", "--out={tmp}/figure.jpg"], "--out: must name a .png file, got {tmp}/figure.jpg"),
        (["{corrupt}"], "{corrupt}/seed0/hparams.json is not valid JSON: Expecting property name"),
        (["{runs}", "{corrupt}"], "{corrupt}/seed0/hparams.json is not valid JSON"),  # no run's events read
        # The output is checked before any run is read (the corrupt one would fail otherwise).
        (["{corrupt}", "--out={notes}/figure.png"], "--out: {notes} is a file, so {notes}/figure.png"),
        (["{corrupt}", "--out={empty}"], "--out: must name a .png file, got {empty}"),
        (["{corrupt}", "--out={tmp}/taken.png"], "--out: {tmp}/taken.png is a directory"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(runs_root, tmp_path, tmp_path_factory, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "taken.png").mkdir()
    (tmp_path / "notes").write_text("a file\n")
    (tmp_path / "corrupt" / "seed0").mkdir(parents=True)
    (tmp_path / "corrupt" / "seed0" / "hparams.json").write_text('{"env": "SmoothieBandit-v0", "seed": 0,\n')
    names = {"empty": tmp_path / "empty", "runs": runs_root, "tmp": tmp_path, "notes": tmp_path / "notes"}
    names["corrupt"] = tmp_path / "corrupt"
    # An --out of the case's own comes later and wins. Each is refused before TensorFlow loads.
    environment = without_tensorflow(tmp_path_factory.mktemp("no_tensorflow"))
    arguments = [f"--out={tmp_path}/figure.png", *(arg.format(**names) for arg in args)]
    result = run_plot(*arguments, environment=environment)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bin/plot: error:"), lines
    assert message.format(**names) in lines[0], lines
    inputs = ["corrupt", "corrupt/seed0", "corrupt/seed0/hparams.json", "empty", "notes", "taken.png"]
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == inputs  # no output


@pytest.mark.parametrize(
    "text, reason",
    [
        ("[1, 2]", "it holds a JSON array"),
        ("null", "it holds a JSON null"),
        ('{"env": "Hopper", "seed": 0}', "it lacks hparams"),
        ('{"hparams": {}}', "it lacks env, seed"),
        ('{"env": "H", "seed": "0", "hparams": {}}', "it has env 'H', seed '0', hparams a JSON object"),
        ('{"env": "Hopper", "seed": 0, "hparams": [1]}', "it has env 'Hopper', seed 0, hparams a JSON array"),
        ('{"env": null, "seed": 0, "hparams": {}}', "it has env None, seed 0, hparams a JSON object"),
    ],
)
def test_an_hparams_json_without_what_plotting_needs_is_refused_in_one_line(tmp_path, text, reason):
    (tmp_path / "hparams.json").write_text(text)
    with pytest.raises(plotting.PlotError) as raised:
        plotting.load_run(tmp_path)
    expected = f"{tmp_path / 'hparams.json'} is not a run record: a JSON object "
    assert str(raised.value).startswith(expected) and str(raised.value).endswith(f"; {reason}")
    assert "\n" not in str(raised.value)


def test_runs_that_share_a_seed_are_counted_as_runs_not_seeds(tmp_path):
    from test_aggregate import write_run

    # A population of seeds 0 and 1, and two more runs of seed 0: four runs, two seeds.
    finals = {"pop/seed0": (0, 10.0), "pop/seed1": (1, 20.0), "runA": (0, 30.0), "runB": (0, 40.0)}
    for logdir, (seed, final) in finals.items():
        write_run(tmp_path / "runs" / logdir, [100, 200], [final / 2, final], seed=seed)
    directories = [str(tmp_path / "runs" / name) for name in ("pop", "runA", "runB")]
    result = run_plot(*directories, f"--out={tmp_path / 'curves.png'}")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:4] == ["env", "configuration", "runs", "step"]
    std = np.std([10.0, 20.0, 30.0, 40.0])
    assert row.split()[-5:] == ["4", "200", "25.0", "±", f"{std:.1f}"]
    (group,) = plotting.group_runs([plotting.load_run(path) for path in plotting.find_runs(directories)])
    assert plotting.curve_label(group, np.array([100, 200])) == "pop / runA / runB (4 runs)"
    group.runs[-1].steps, group.runs[-1].returns = group.runs[-1].steps[:1], group.runs[-1].returns[:1]
    steps = group.curve()[0]
    assert plotting.curve_label(group, steps) == "pop / runA / runB (4 runs), cut at 100: a run ends there"


def test_a_curve_of_one_evaluation_is_a_point_with_its_spread(monkeypatch, tmp_path):
    import matplotlib.collections

    drawn = []
    monkeypatch.setattr(plotting, "save_figure", lambda figure, out, dpi: drawn.append(figure))
    one, two = synthetic_group((1, 1)), synthetic_group((2, 2))
    two.name = "longer"
    plotting.plot([one, two], tmp_path / "curves.png")
    (axis,) = drawn[0].axes
    point, line = axis.get_lines()[0], axis.get_lines()[-1]
    assert point.get_marker() == "o" and list(point.get_xdata()) == [100]
    _, center, low, high = one.curve()
    assert point.get_ydata()[0] == center[0]
    (bar,) = [c for c in axis.collections if isinstance(c, matplotlib.collections.LineCollection)]
    np.testing.assert_allclose(bar.get_segments(), [[[100, low[0]], [100, high[0]]]])
    assert line.get_marker() == "None" and list(line.get_xdata()) == [100, 200]  # two or more: a line
    plotting.plot([one], tmp_path / "iqm.png", aggregate="iqm", reps=200)
    point = drawn[1].axes[0].get_lines()[0]  # then the error bar's caps
    assert point.get_marker() == "o" and point.get_ydata()[0] == one.iqm_curve(200, 0)[1][0]


# --- IQM curves (--aggregate=iqm) ----------------------------------------------------------------


def synthetic_group(lengths=(4, 4, 4, 2)) -> plotting.Group:
    """Seeds evaluated at 100, 200, ... with returns 10·seed + step/100 + a seed-dependent wobble."""
    runs = []
    for seed, length in enumerate(lengths):
        steps = np.arange(1, length + 1) * 100
        returns = 10.0 * seed + steps / 100 + np.sin(seed * steps)
        runs.append(plotting.Run(ROOT / f"seed{seed}", "Hopper-v4", seed, {}, steps, returns))
    return plotting.Group("smoothie", "Hopper-v4", runs)


def test_iqm_curves_are_those_of_aggregate_and_a_cut_curve_says_so(tmp_path):
    from smoothie_tf import aggregate

    group = synthetic_group()
    steps, iqm, low, high = group.iqm_curve(reps=200, seed=1)
    expected = aggregate.iqm_curve(group.runs, reps=200, seed=1)
    np.testing.assert_array_equal(steps, [100, 200])  # seed 3 stops at 200
    for mine, theirs in ((iqm, expected.iqm), (low, expected.low), (high, expected.high)):
        np.testing.assert_array_equal(mine, theirs)
    values = np.stack([run.returns[:2] for run in group.runs])
    np.testing.assert_allclose(iqm, np.sort(values, axis=0)[1:3].mean(axis=0))  # of 4 runs, the middle 2
    assert plotting.curve_label(group, steps) == "smoothie (4 seeds), cut at 200: a seed ends there"
    assert plotting.curve_label(synthetic_group((3, 3)), np.array([100, 200, 300])) == "smoothie (2 seeds)"
    out = tmp_path / "iqm.png"
    plotting.plot([group], out, aggregate="iqm", reps=200)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(plotting.PlotError, match="unknown aggregate 'median'"):
        plotting.plot([group], tmp_path / "median.png", aggregate="median")
    assert not (tmp_path / "median.png").exists()


def test_bin_plot_aggregate_iqm_prints_the_final_iqm_and_its_interval(tmp_path):
    from test_aggregate import write_run

    from smoothie_tf import aggregate

    finals = [40.0, 10.0, 30.0, 20.0, 90.0]
    for seed, final in enumerate(finals):
        write_run(tmp_path / "runs" / "kl" / f"seed{seed}", [100, 200], [final / 2, final], seed=seed)
    out = tmp_path / "kl.png"
    result = run_plot(str(tmp_path / "runs"), f"--out={out}", "--aggregate=iqm", "--reps=200")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    interval = aggregate.iqm_interval(finals, reps=200)
    assert interval.point == 30.0  # 10, 20, 30, 40, 90: the middle three
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("Hopper-v4")]
    assert row.split()[1:] == ["kl", "5", "200", "30.0", f"[{interval.low:.1f},", f"{interval.high:.1f}]"]
    assert "final return (IQM [95% CI])" in result.stdout


def test_bin_plot_refuses_an_unknown_aggregate(tmp_path):
    result = run_plot(str(tmp_path), "--aggregate=median", f"--out={tmp_path}/figure.png")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bin/plot: error:") and "--aggregate" in lines[0], lines
    assert list(tmp_path.iterdir()) == []
