"""Interval estimates across seeds, with rliable (Agarwal et al., "Deep Reinforcement Learning at
the Edge of the Statistical Precipice", NeurIPS 2021).

An *arm* is the seed runs of one configuration: every run directory (one holding hparams.json)
below one or more directories. A run's *score at step S* is its evaluation return at S (the
mean return of its deterministic evaluation episodes), or, with `window` W > 0, the mean of its
evaluations at steps in [S - W, S]. Either way the run must have an evaluation at S itself: a
run that stopped before S, or evaluates at other steps, has no score there; it is left out of
that estimate and named in `StepScores.missing`, never dropped silently.

- IQM (`rliable.metrics.aggregate_iqm`): scipy.stats.trim_mean(x, 0.25), the mean after
  cutting floor(n / 4) scores from each end: the middle 50% when 4 divides n (of 8 runs the
  middle 4, of 5 runs the middle 3).
- Probability of improvement (`rliable.metrics.probability_of_improvement`): P(X > Y) for a
  score X of one arm and Y of another drawn at random, a tie counting one half (the
  Mann-Whitney U statistic divided by n_x n_y).
- Intervals (`rliable.library.get_interval_estimates`): percentile bootstrap over `reps`
  resamples of the runs with replacement, stratified by task (here one task, Hopper-v4 say);
  for the probability of improvement each arm is resampled on its own.

rliable 1.2.0's bootstraps draw their indices from NumPy's global generator (np.random.choice),
not from the random_state they take; `_global_numpy_seed` seeds it for the call and puts its
state back afterwards, so the same `seed` gives the same intervals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from smoothie_tf import plotting
from smoothie_tf.plotting import Record

CONFIDENCE = 0.95


class AggregateError(ValueError):
    """Arms that cannot be compared, or no data where the caller pointed (bad input)."""


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval [low, high]."""

    point: float
    low: float
    high: float


@dataclasses.dataclass
class Arm:
    """The runs of one configuration, seeds apart."""

    name: str
    runs: list[plotting.Run]

    @property
    def env(self) -> str:
        return self.runs[0].env


def find_arm(name: str, directories: Sequence[str | pathlib.Path]) -> list[tuple[pathlib.Path, Record]]:
    """(run directory, record) of every run below `directories`, all of one env (AggregateError
    otherwise); no event file is read (plotting.find_records)."""
    try:
        records = plotting.find_records(directories)
    except plotting.PlotError as error:
        raise AggregateError(f"arm {name}: {error}") from error
    envs = sorted({env for _, (env, _, _) in records})
    if len(envs) > 1:
        raise AggregateError(f"arm {name} mixes environments: {', '.join(envs)}")
    return records


def arm_notes(arm: Arm) -> list[str]:
    """What a reader should know about an arm's runs: repeated seeds, differing hparams."""
    notes = []
    seeds = [run.seed for run in arm.runs]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        notes.append(f"arm {arm.name}: seed(s) {', '.join(map(str, repeated))} appear in more than one run")
    own = arm.runs[0].hparams
    differing = sorted(
        key for key in own.keys() | {k for run in arm.runs for k in run.hparams}
        if any(run.hparams.get(key) != own.get(key) for run in arm.runs)
    )  # fmt: skip
    if differing:
        notes.append(f"arm {arm.name}: its runs differ in {', '.join(differing)}")
    return notes


# --- scores at a step ---------------------------------------------------------------------------


@dataclasses.dataclass
class StepScores:
    step: int
    scores: np.ndarray  # [n] one per run that has a score at `step`
    seeds: list[int]  # [n] their seeds
    missing: list[str]  # one line per run without a score at `step`, saying why


def run_score_at(run: plotting.Run, step: int, window: int = 0) -> float | None:
    """The run's score at `step` (see the module docstring), None when it has no evaluation there."""
    if step not in run.steps:
        return None
    in_window = (run.steps >= step - window) & (run.steps <= step)
    return float(np.mean(run.returns[in_window]))


def _why_missing(run: plotting.Run, step: int) -> str:
    where = f"{run.logdir} (seed {run.seed})"
    if len(run.steps) == 0:
        return f"{where} has no evaluation"
    if run.steps[-1] < step:
        return f"{where} has evaluations up to step {run.steps[-1]} only"
    return f"{where} has no evaluation at step {step}"


def step_scores(arm: Arm, step: int, window: int = 0) -> StepScores:
    scores, seeds, missing = [], [], []
    for run in arm.runs:
        score = run_score_at(run, step, window)
        if score is None:
            missing.append(_why_missing(run, step))
        else:
            scores.append(score)
            seeds.append(run.seed)
    return StepScores(step, np.array(scores, dtype=np.float64), seeds, missing)


# --- rliable ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    # The global generator on purpose: it is the one rliable's bootstraps draw from.
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _interval_estimates(data, func, reps: int, seed: int, confidence: float) -> list[Interval]:
    """rliable's point estimates and stratified-bootstrap intervals of func(data), one per output."""
    from rliable import library

    with _global_numpy_seed(seed):
        points, intervals = library.get_interval_estimates(
            {"estimate": data}, func, reps=reps, confidence_interval_size=confidence
        )
    point, interval = np.atleast_1d(points["estimate"]), intervals["estimate"].reshape(2, -1)
    return [Interval(float(p), float(lo), float(hi)) for p, lo, hi in zip(point, *interval, strict=True)]


def iqm(scores: Sequence[float] | np.ndarray) -> float:
    """The interquartile mean of runs' scores `[n]` (rliable's aggregate_iqm)."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(_runs_by_tasks(scores)))


def probability_of_improvement(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """P(X > Y), ties one half, for scores x `[n_x]` and y `[n_y]` (rliable's)."""
    from rliable import metrics

    return float(metrics.probability_of_improvement(_runs_by_tasks(x), _runs_by_tasks(y)))


def _runs_by_tasks(scores) -> np.ndarray:
    """Scores [n] as rliable's [num_runs, num_tasks] with one task."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0:
        raise AggregateError(f"expected a non-empty vector of scores, got shape {scores.shape}")
    return scores[:, None]


def iqm_interval(
    scores: Sequence[float] | np.ndarray, reps: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> Interval:
    """The IQM of runs' scores `[n]` with its stratified-bootstrap interval."""
    from rliable import metrics

    def func(x):
        return np.array([metrics.aggregate_iqm(x)])

    return _interval_estimates(_runs_by_tasks(scores), func, reps, seed, confidence)[0]


def improvement_interval(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Interval:
    """P(X > Y) for scores x `[n_x]`, y `[n_y]`, with its bootstrap interval (x and y resampled
    independently)."""
    from rliable import metrics

    def func(a, b):
        return np.array([metrics.probability_of_improvement(a, b)])

    return _interval_estimates((_runs_by_tasks(x), _runs_by_tasks(y)), func, reps, seed, confidence)[0]


@dataclasses.dataclass
class Curve:
    steps: np.ndarray  # [T] the evaluation steps every run has
    iqm: np.ndarray  # [T]
    low: np.ndarray  # [T] the interval's bounds
    high: np.ndarray  # [T]


def iqm_curve(
    runs: Sequence[plotting.Run], reps: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> Curve:
    """The IQM learning curve of runs and its interval band, over the evaluation steps that every
    run has (a run that lags cuts the curve short: see `step_scores` for the steps it lacks). One
    bootstrap resamples whole runs, so the band at each step is of the same resamples."""
    from rliable import metrics

    steps = runs[0].steps
    for run in runs[1:]:
        steps = np.intersect1d(steps, run.steps)
    if len(steps) == 0:
        empty = np.zeros(0)
        return Curve(steps, empty, empty, empty)
    values = np.stack([run.returns[np.searchsorted(run.steps, steps)] for run in runs])[:, None, :]

    def func(x):  # x: [runs, 1 task, T steps]
        return np.array([metrics.aggregate_iqm(x[..., t]) for t in range(x.shape[-1])])

    estimates = _interval_estimates(values, func, reps, seed, confidence)
    return Curve(
        steps,
        np.array([e.point for e in estimates]),
        np.array([e.low for e in estimates]),
        np.array([e.high for e in estimates]),
    )


# --- a report -----------------------------------------------------------------------------------


@dataclasses.dataclass
class ArmResult:
    arm: Arm
    at: dict[int, StepScores]  # step -> scores
    iqm: dict[int, Interval | None]  # step -> IQM and interval (None: no run has a score there)
    improvement: dict[int, Interval | None]  # step -> P(arm > baseline); None: baseline or no data


@dataclasses.dataclass
class Report:
    steps: list[int]
    baseline: str | None
    reps: int
    seed: int
    window: int
    results: list[ArmResult]
    notes: list[str]

    def missing(self) -> list[str]:
        return [
            f"{result.arm.name} at step {step}: {line}"
            for result in self.results
            for step in self.steps
            for line in result.at[step].missing
        ]


def compare(
    arms: Sequence[Arm],
    steps: Sequence[int],
    baseline: str | None = None,
    reps: int = 2000,
    seed: int = 0,
    window: int = 0,
) -> Report:
    """IQM with intervals of every arm at every step, and P(arm > baseline) when a baseline arm
    is named. Every arm must be on one env (scores of different tasks are not comparable)."""
    if not arms:
        raise AggregateError("no arms")
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise AggregateError(f"arm names repeat: {', '.join(names)}")
    if baseline is not None and baseline not in names:
        raise AggregateError(f"baseline {baseline!r} is not an arm; the arms are {', '.join(names)}")
    envs = sorted({arm.env for arm in arms})
    if len(envs) > 1:
        raise AggregateError(f"the arms are on different environments: {', '.join(envs)}")
    if not steps or any(step < 1 for step in steps):
        raise AggregateError(f"steps must be positive, got {list(steps)}")
    if window < 0:
        raise AggregateError(f"window must be >= 0, got {window}")
    owners: dict[pathlib.Path, str] = {}
    for arm in arms:
        for run in arm.runs:
            other = owners.setdefault(run.logdir.resolve(), arm.name)
            if other != arm.name:
                raise AggregateError(f"run {run.logdir} is in arms {other} and {arm.name}")

    at = {arm.name: {step: step_scores(arm, step, window) for step in steps} for arm in arms}
    results = []
    for arm in arms:
        iqms, improvements = {}, {}
        for step in steps:
            scores = at[arm.name][step].scores
            iqms[step] = iqm_interval(scores, reps, seed) if len(scores) else None
            improvements[step] = None
            if baseline is not None and arm.name != baseline:
                others = at[baseline][step].scores
                if len(scores) and len(others):
                    improvements[step] = improvement_interval(scores, others, reps, seed)
        results.append(ArmResult(arm, at[arm.name], iqms, improvements))
    notes = [note for arm in arms for note in arm_notes(arm)]
    return Report(list(steps), baseline, reps, seed, window, results, notes)


def markdown(report: Report, per_run: bool = False) -> str:
    """The report as a markdown table, with how it was computed and what is missing below it;
    with `per_run`, also every run's score at every step (`per_run_markdown`)."""
    percent = f"{CONFIDENCE:.0%}"
    units = {plotting.run_unit(result.arm.runs) for result in report.results}
    header = ["arm", "seeds" if units == {"seeds"} else "runs"]
    header += [f"IQM at {step} [{percent} CI]" for step in report.steps]
    if report.baseline is not None:
        header += [f"P(arm > {report.baseline}) at {step} [{percent} CI]" for step in report.steps]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:"] + ["---"] * (len(header) - 2)) + "|",
    ]
    for result in report.results:
        runs = len(result.arm.runs)
        cells = [result.arm.name, str(runs)]
        for step in report.steps:
            cells.append(_cell(result.iqm[step], "{:.1f}", len(result.at[step].scores), runs))
        if report.baseline is not None:
            for step in report.steps:
                if result.arm.name == report.baseline:
                    cells.append("(baseline)")
                else:
                    cells.append(_cell(result.improvement[step], "{:.2f}", len(result.at[step].scores), runs))
        lines.append("| " + " | ".join(cells) + " |")
    score = (
        "its evaluation return at that step"
        if report.window == 0
        else f"the mean of its evaluation returns at steps in [step - {report.window}, step]"
    )
    lines += [
        "",
        f"A run's score at a step: {score} (deterministic policy). IQM: interquartile mean of the runs' "
        "scores (rliable; the 25% trimmed mean). "
        + (
            f"P(arm > {report.baseline}): the probability that a run of the arm scores higher than a run "
            f"of {report.baseline}, ties counting one half. "
            if report.baseline is not None
            else ""
        )
        + f"[lo, hi]: {percent} stratified-bootstrap percentile intervals, {report.reps} resamples, "
        f"seed {report.seed}. (n=k): only k of the arm's runs have a score at that step.",
    ]
    missing = report.missing()
    if missing:
        lines += ["", "Missing (left out of the estimates above):", *(f"- {line}" for line in missing)]
    if report.notes:
        lines += ["", "Notes:", *(f"- {note}" for note in report.notes)]
    if per_run:
        lines += ["", per_run_markdown(report)]
    return "\n".join(lines) + "\n"


def per_run_markdown(report: Report) -> str:
    """Every run's score at every step of the report, one row per run ("-": no score there):
    the numbers behind each IQM. A run is named by its seed and the last two parts of its path."""
    header = ["arm", "seed", "run", *(f"score at {step}" for step in report.steps)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:", "---"] + ["---:"] * len(report.steps)) + "|",
    ]
    for result in report.results:
        for run in result.arm.runs:
            scores = [run_score_at(run, step, report.window) for step in report.steps]
            cells = [result.arm.name, str(run.seed), "/".join(run.logdir.parts[-2:])]
            cells += ["-" if score is None else f"{score:.1f}" for score in scores]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(interval: Interval | None, number: str, present: int, runs: int) -> str:
    if interval is None:
        return "-"
    text = f"{number.format(interval.point)} [{number.format(interval.low)}, {number.format(interval.high)}]"
    return text if present == runs else f"{text} (n={present})"


def arm_directories(items: Sequence[str]) -> dict[str, list[str]]:
    """{name: directories} from "NAME=DIR[,DIR...]" items; a name given twice gathers both."""
    arms: dict[str, list[str]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        directories = [d for d in text.split(",") if d]
        if not sep or not name or not directories:
            raise AggregateError(f"arm {item!r} must look like NAME=DIR or NAME=DIR1,DIR2")
        arms.setdefault(name, []).extend(directories)
    return arms


def load_arms(spec: Mapping[str, Sequence[str | pathlib.Path]]) -> list[Arm]:
    """The arms {name: directories}; every arm's runs are found and their records read before any
    event file, so bad input is refused before TensorFlow loads."""
    found = {name: find_arm(name, directories) for name, directories in spec.items()}
    arms = []
    for name, records in found.items():
        runs = [plotting.load_events(path, record) for path, record in records]
        arms.append(Arm(name, sorted(runs, key=lambda run: (run.seed, str(run.logdir)))))
    return arms


def last_step(arms: Sequence[Arm]) -> int:
    """The last evaluation step of any run: where an experiment's runs were meant to end."""
    ends = [int(run.steps[-1]) for arm in arms for run in arm.runs if len(run.steps)]
    if not ends:
        raise AggregateError("none of the runs has an evaluation yet (tag eval/mean_return)")
    return max(ends)
