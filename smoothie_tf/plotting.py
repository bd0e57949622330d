"""Learning curves from runs' TensorBoard event files: evaluation return against environment
steps, grouped by configuration (env and hparams, every seed of one configuration together),
with the mean across seeds and its spread (min to max), or (aggregate "iqm") the interquartile
mean across seeds and its 95% stratified-bootstrap interval (smoothie_tf.aggregate).

TensorFlow-free until the first event file is read (TensorBoard's reader loads it): every run
record is read before that, so bad input is refused without the seconds TensorFlow takes to load."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np

Record = tuple[str, int, dict]  # a run's env id, seed and hparams, from its hparams.json


class PlotError(ValueError):
    """No runs, or no evaluation data, where the caller pointed (bad input)."""


@dataclasses.dataclass
class Run:
    logdir: pathlib.Path
    env: str
    seed: int
    hparams: dict
    steps: np.ndarray  # [n] environment steps of the evaluations
    returns: np.ndarray  # [n] mean evaluation return at those steps


@dataclasses.dataclass
class Group:
    """The runs of one configuration (same env and hparams), seeds apart."""

    label: str
    env: str
    runs: list[Run]

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(steps, mean, min, max) over the steps every seed has reached."""
        common = self.runs[0].steps
        for run in self.runs[1:]:
            common = np.intersect1d(common, run.steps)
        values = np.stack([run.returns[np.searchsorted(run.steps, common)] for run in self.runs])
        return common, values.mean(axis=0), values.min(axis=0), values.max(axis=0)

    def iqm_curve(
        self, reps: int = 2000, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(steps, IQM, low, high) over the steps every seed has reached: the interquartile mean
        across seeds and its 95% stratified-bootstrap interval (`aggregate.iqm_curve`)."""
        from smoothie_tf import aggregate

        curve = aggregate.iqm_curve(self.runs, reps, seed)
        return curve.steps, curve.iqm, curve.low, curve.high

    def final(self) -> dict:
        """The last evaluation every run has: step, mean and std across runs, per-run values (in
        the order of the runs); "runs" counts the runs, which may share a seed (`run_unit`)."""
        steps, _, _, _ = self.curve()
        if len(steps) == 0:
            return {"step": None, "mean": None, "std": None, "runs": len(self.runs), "per_run": []}
        last = steps[-1]
        values = [float(run.returns[np.searchsorted(run.steps, last)]) for run in self.runs]
        return {
            "step": int(last),
            "mean": float(np.mean(values)),
            "std": float(np.std(values)),
            "runs": len(self.runs),
            "per_run": values,
        }


def find_runs(directories: Iterable[str | pathlib.Path]) -> list[pathlib.Path]:
    """Every run directory (one holding hparams.json) at or below the given directories."""
    found: list[pathlib.Path] = []
    for directory in directories:
        directory = pathlib.Path(directory)
        if not directory.is_dir():
            raise PlotError(f"{directory} is not a directory")
        runs = sorted(path.parent for path in directory.rglob("hparams.json"))
        if not runs:
            raise PlotError(f"no runs (directories with hparams.json) under {directory}")
        found.extend(run for run in runs if run not in found)
    return found


def eval_returns(logdir: str | pathlib.Path, tag: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a scalar tag (by default the evaluation return) in a run's event files,
    sorted by step; the latest write wins where a resumed run wrote a step twice."""
    from smoothie_tf.startup import import_tensorflow_quietly

    import_tensorflow_quietly()  # the event reader imports it; its start-up messages are silenced
    from tensorboard.backend.event_processing import event_accumulator

    from smoothie_tf.summaries import EVAL_RETURN

    tag = tag or EVAL_RETURN

    accumulator = event_accumulator.EventAccumulator(
        str(logdir), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0}
    )
    accumulator.Reload()
    by_step: dict[int, float] = {}
    tags = accumulator.Tags()
    if tag in tags.get("tensors", []):
        from tensorboard.util import tensor_util

        for event in accumulator.Tensors(tag):
            by_step[int(event.step)] = float(tensor_util.make_ndarray(event.tensor_proto))
    elif tag in tags.get("scalars", []):
        for event in accumulator.Scalars(tag):
            by_step[int(event.step)] = float(event.value)
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def load_run(logdir: pathlib.Path) -> Run:
    """The run in `logdir`: its env, seed and hparams from hparams.json (PlotError, naming the
    file, when that is not the JSON object bin/train writes) and its evaluations."""
    return load_events(logdir, read_run_record(pathlib.Path(logdir) / "hparams.json"))


def find_records(directories: Iterable[str | pathlib.Path]) -> list[tuple[pathlib.Path, Record]]:
    """(run directory, its record) for every run at or below `directories` (find_runs), records
    read (read_run_record): all bad input is refused here, before any event file is read."""
    return [(path, read_run_record(path / "hparams.json")) for path in find_runs(directories)]


def load_events(logdir: pathlib.Path, record: Record) -> Run:
    """The run in `logdir` with its record (env, seed, hparams) already read and its evaluations."""
    return Run(logdir, *record, *eval_returns(logdir))


def load_runs(directories: Iterable[str | pathlib.Path]) -> list[Run]:
    """Every run at or below `directories`, their records all read before any event file."""
    return [load_events(path, record) for path, record in find_records(directories)]


def read_run_record(path: pathlib.Path) -> Record:
    """(env id, seed, hparams) of a run's hparams.json, or PlotError in one line naming `path`."""
    try:
        record = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PlotError(f"{path} is not valid JSON: {error}") from error
    except OSError as error:
        raise PlotError(f"{path} cannot be read: {error.strerror or error}") from error
    expected = 'a run record: a JSON object {"env": string, "seed": integer, "hparams": object, ...}'
    if not isinstance(record, dict):
        raise PlotError(f"{path} is not {expected}; it holds a JSON {_json_type(record)}")
    missing = [key for key in ("env", "seed", "hparams") if key not in record]
    if missing:
        raise PlotError(f"{path} is not {expected}; it lacks {', '.join(missing)}")
    env, seed, hparams = record["env"], record["seed"], record["hparams"]
    if not isinstance(env, str) or not isinstance(hparams, dict) or type(seed) is not int:
        found = f"env {env!r}, seed {seed!r}, hparams a JSON {_json_type(hparams)}"
        raise PlotError(f"{path} is not {expected}; it has {found}")
    return env, seed, hparams


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")


def _label(runs: Sequence[Run]) -> str:
    """The name the runs' directories share above their seed directories, e.g. "smoothie"."""
    names = {(run.logdir.parent if run.logdir.name.startswith("seed") else run.logdir).name for run in runs}
    return names.pop() if len(names) == 1 else " / ".join(sorted(names))


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs with the same env and hparams form a group; labels come from their directories,
    made unique with the hparams that tell groups of the same name apart."""
    keyed: dict[str, list[Run]] = {}
    for run in runs:
        keyed.setdefault(json.dumps([run.env, run.hparams], sort_keys=True), []).append(run)
    groups = [
        Group(_label(members), members[0].env, sorted(members, key=lambda run: run.seed))
        for members in keyed.values()
    ]
    base = {id(group): group.label for group in groups}
    for group in groups:
        own = group.runs[0].hparams
        others = [g.runs[0].hparams for g in groups if g is not group and base[id(g)] == base[id(group)]]
        differing = [key for key in own if any(other.get(key) != own[key] for other in others)]
        if differing:
            group.label += " (" + ", ".join(f"{key}={own[key]}" for key in differing) + ")"
    return sorted(groups, key=lambda g: (g.env, g.label))


AGGREGATES = ("mean", "iqm")


def run_unit(runs: Sequence[Run]) -> str:
    """What a group's runs are counted as: "seeds" when their seeds differ, else "runs" (e.g. a
    search's configurations, all trained with seed 0)."""
    seeds = [run.seed for run in runs]
    return "seeds" if len(set(seeds)) == len(seeds) else "runs"


def curve_label(group: Group, steps: np.ndarray) -> str:
    """The legend of a group's curve over `steps`, saying where a lagging run cuts it short."""
    count, unit = len(group.runs), run_unit(group.runs)
    label = f"{group.label} ({count} {unit if count > 1 else unit[:-1]})"
    if len(steps) and steps[-1] < max(run.steps[-1] for run in group.runs if len(run.steps)):
        label += f", cut at {steps[-1]}: a {unit[:-1]} ends there"
    return label


def plot(
    groups: Sequence[Group],
    out: str | pathlib.Path,
    title: str | None = None,
    aggregate: str = "mean",
    reps: int = 2000,
    seed: int = 0,
) -> None:
    """One panel per environment: each group's mean curve and its min-max band across seeds, or
    (aggregate "iqm") its IQM curve and 95% interval band, of `reps` bootstrap resamples."""
    if aggregate not in AGGREGATES:
        raise PlotError(f"unknown aggregate {aggregate!r}; choose one of {', '.join(AGGREGATES)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({group.env for group in groups})
    figure, axes = plt.subplots(1, len(envs), figsize=(6.5 * len(envs), 4.5), squeeze=False)
    for axis, env in zip(axes[0], envs, strict=True):
        for group in (g for g in groups if g.env == env):
            steps, center, low, high = group.curve() if aggregate == "mean" else group.iqm_curve(reps, seed)
            if len(steps) == 0:
                continue
            label = curve_label(group, steps)
            if len(steps) == 1:  # one evaluation: a point, its spread an error bar
                spread = np.maximum([center - low, high - center], 0.0)  # rounding may put it outside
                axis.errorbar(steps, center, yerr=spread, fmt="o", capsize=4, label=label)
                continue
            (line,) = axis.plot(steps, center, label=label)
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        axis.set_title(title or env)
        axis.set_xlabel("environment steps")
        units = {run_unit(g.runs) for g in groups if g.env == env}
        across = "across seeds" if units == {"seeds"} else "across runs"
        spread = f"mean {across}, min-max band" if aggregate == "mean" else f"IQM {across}, 95% CI band"
        axis.set_ylabel(f"evaluation return (mean action)\n{spread}")
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    save_figure(figure, out, dpi=120)


def save_figure(figure, out: str | pathlib.Path, dpi: int) -> None:
    """Writes `figure` to `out` (its parents created) atomically, and closes it."""
    import matplotlib.pyplot as plt

    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.stem + ".tmp" + out.suffix)
    figure.savefig(temporary, dpi=dpi)
    plt.close(figure)
    temporary.replace(out)
