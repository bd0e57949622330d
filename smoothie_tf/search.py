"""The paper's random hyperparameter search (supplement Table 1) on Ray Tune.

Table 1 samples every searched key log-uniformly in its range, 100 trials. The OU noise keys
apply to DDPG only, and λ (`kl_penalty`) to Smoothie-KL only. Which variant a base hparams file
is: agent "ddpg" is DDPG; agent "smoothie" with `kl_penalty` > 0 is Smoothie-KL (λ is
searched); with `kl_penalty` = 0 it is plain Smoothie (λ stays 0). Every other key, Table 1's
fixed values included, comes from the base file.

A trial trains the base hparams with its sampled values for `seeds` seeds (0, 1, ...: the
same seeds in every trial, so configurations are compared on the same random numbers), each a
`training.Trainer` run in `<logdir>/trials/<trial id>/seed<k>`; after every evaluation the
trial reports it to Tune. Its score, which ranks it, is the mean over seeds of each seed's
score (`SCORES`, `run_score`): "last", the final evaluation return (the default), or
"second_half_mean", the mean evaluation return over the second half of the run. A trial that
diverges (a non-finite loss) stops there and ranks after every finished trial, whatever its
evaluations so far; one that errs or has not finished ranks after those. Tune's own experiment
state lives in `<logdir>/tune`; `run_search` on a logdir that holds one restores it
(`Tuner.restore`): finished trials are kept, unfinished ones start again and their runs resume
from their last checkpoints. A search is resumed only with the score it started with.

With `population` P > 1 a Tune trial trains P configurations at once, each with its seeds, as
one population (`training.PopulationTrainer`, one compiled step for all), in
`<logdir>/trials/<trial id>/member<k>/seed<s>`; each configuration is still one row of the
table (trial id `<trial id>_m<k>`), and one that diverges stops alone. The configurations are
drawn in groups of P, so a population search draws other configurations than a search of
single runs with the same sampler seed.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import logging
import math
import os
import pathlib
import signal
import socket
import urllib.parse

from smoothie_tf import hparams as hparams_lib

VARIANTS = ("smoothie", "smoothie_kl", "ddpg")
TRIALS_DIR = "trials"  # <logdir>/trials/<trial id>/seed<k>: one training run each
TUNE_DIR = "tune"  # <logdir>/tune: Tune's experiment state, what Tuner.restore reads
REQUEST_FILE = "search.json"
TABLE_FILE = "trials.csv"
BEST_FILE = "best_hparams.json"
_NO_AUTO_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


class SearchError(ValueError):
    """A search request that cannot run, with a one-line message naming the problem."""


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched hparam: `key` sampled log-uniformly in [low, high], for `variants`."""

    key: str
    low: float
    high: float
    variants: tuple[str, ...] = VARIANTS


TABLE_1 = (
    Dimension("actor_lr", 1e-6, 1e-3),
    Dimension("critic_lr", 1e-6, 1e-3),
    Dimension("reward_scale", 0.01, 0.3),
    Dimension("ou_damping", 1e-4, 1e-3, ("ddpg",)),
    Dimension("ou_stddev", 1e-3, 1.0, ("ddpg",)),
    Dimension("kl_penalty", 1e-6, 4e-2, ("smoothie_kl",)),  # λ
)
TABLE_1_FIXED = {
    "discount": 0.995,
    "target_lag": 0.01,
    "batch_size": 128,
    "grad_clip": 4.0,
    "updates_per_step": 1,
    "huber_delta": 1.0,
}


def variant(hp: hparams_lib.HParams) -> str:
    """'ddpg', 'smoothie_kl' (Smoothie with kl_penalty > 0) or 'smoothie'."""
    if hp.agent == "ddpg":
        return "ddpg"
    return "smoothie_kl" if hp.kl_penalty > 0 else "smoothie"


def dimensions_for(hp: hparams_lib.HParams, space: tuple[Dimension, ...] = TABLE_1) -> tuple[Dimension, ...]:
    """The dimensions of `space` that apply to `hp`'s variant."""
    return tuple(d for d in space if variant(hp) in d.variants)


def fixed_value_differences(hp: hparams_lib.HParams) -> dict[str, tuple]:
    """key -> (value in hp, Table 1's fixed value), for the fixed keys where they differ."""
    return {k: (getattr(hp, k), v) for k, v in TABLE_1_FIXED.items() if getattr(hp, k) != v}


def with_ranges(
    items: list[str], base: hparams_lib.HParams, space: tuple[Dimension, ...] = TABLE_1
) -> tuple[Dimension, ...]:
    """`space` with "KEY=LOW:HIGH" ranges applied: a key of `space` gets the new range, any
    other float key of HParams is added (for every variant). Values are checked by `validate`."""
    dimensions = list(space)
    for item in items:
        key, sep, text = item.partition("=")
        low, colon, high = text.partition(":")
        key = key.strip()
        if not sep or not colon or not key:
            raise SearchError(f"--range {item!r} must look like KEY=LOW:HIGH, e.g. actor_lr=1e-5:1e-3")
        try:
            bounds = float(low), float(high)
        except ValueError as error:
            raise SearchError(f"--range {item!r}: LOW and HIGH must be numbers") from error
        if key not in hparams_lib.FIELDS:
            close = difflib.get_close_matches(key, hparams_lib.FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SearchError(f"--range: unknown hparam key {key!r}{hint}")
        if hparams_lib.TYPES[key] is not float:
            raise SearchError(f"--range: {key} is not a real-valued hparam; only those are searched")
        existing = [i for i, d in enumerate(dimensions) if d.key == key]
        if existing:
            old = dimensions[existing[0]]
            if variant(base) not in old.variants:
                hint = " (Smoothie-KL: a base file with kl_penalty > 0)" if key == "kl_penalty" else ""
                raise SearchError(
                    f"--range: {key} is searched for {' and '.join(old.variants)} only{hint}, "
                    f"and the base hparams are {variant(base)}"
                )
            dimensions[existing[0]] = dataclasses.replace(old, low=bounds[0], high=bounds[1])
        else:
            dimensions.append(Dimension(key, *bounds))
    return tuple(dimensions)


@dataclasses.dataclass(frozen=True)
class SearchRequest:
    """What a search runs. `base.total_steps` is each run's length."""

    env_id: str
    base: hparams_lib.HParams
    logdir: pathlib.Path
    trials: int = 100
    seeds: int = 1
    space: tuple[Dimension, ...] = TABLE_1
    cpus_per_trial: float = 1.0
    sampler_seed: int = 0
    score: str = "last"  # what ranks the trials: a key of SCORES
    population: int = 1  # configurations trained together in one process (one Tune trial)

    def dimensions(self) -> tuple[Dimension, ...]:
        return dimensions_for(self.base, self.space)

    def record(self) -> dict:
        """What identifies the search (compared when a logdir is reused)."""
        return {
            "env": self.env_id,
            "base_hparams": dataclasses.asdict(self.base),
            "space": {d.key: [d.low, d.high] for d in self.dimensions()},
            "trials": self.trials,
            "seeds": self.seeds,
            "sampler_seed": self.sampler_seed,
            "score": self.score,
            "population": self.population,
        }


def validate(request: SearchRequest) -> None:
    """Raises SearchError (or HParamsError for the base hparams) when the request cannot run."""
    hparams_lib.validate(request.base)
    if request.score not in SCORES:
        raise SearchError(f"unknown score {request.score!r}; choose one of {', '.join(SCORES)}")
    for name in ("trials", "seeds", "population"):
        if not (isinstance(getattr(request, name), int) and getattr(request, name) >= 1):
            raise SearchError(f"{name} must be an integer >= 1, got {getattr(request, name)!r}")
    if request.trials % request.population:
        raise SearchError(
            f"trials ({request.trials}) must be a multiple of the population ({request.population}): "
            "each Tune trial trains that many configurations"
        )
    if not (request.cpus_per_trial > 0 and math.isfinite(request.cpus_per_trial)):
        raise SearchError(f"cpus_per_trial must be > 0, got {request.cpus_per_trial}")
    if not request.dimensions():
        raise SearchError(f"no search dimension applies to {variant(request.base)}")
    for d in request.dimensions():
        if d.key not in hparams_lib.FIELDS or hparams_lib.TYPES[d.key] is not float:
            raise SearchError(f"search key {d.key!r} is not a real-valued hparam")
        if not (math.isfinite(d.low) and math.isfinite(d.high) and d.low > 0):
            raise SearchError(
                f"range of {d.key} must be finite and > 0 (log sampling), got [{d.low}, {d.high}]"
            )
        if not d.low < d.high:
            raise SearchError(f"range of {d.key} is empty: low {d.low} >= high {d.high}")
        for bound in (d.low, d.high):
            try:
                hparams_lib.validate(dataclasses.replace(request.base, **{d.key: bound}))
            except hparams_lib.HParamsError as error:
                raise SearchError(f"range of {d.key} [{d.low}, {d.high}] is not valid: {error}") from error


def param_space(hp: hparams_lib.HParams, space: tuple[Dimension, ...] = TABLE_1, population: int = 1) -> dict:
    """Tune's param_space: key -> tune.loguniform(low, high), for the keys of hp's variant; with
    a population P > 1, member<k> -> such a space, for k < P (one Tune trial, P configurations)."""
    from ray import tune

    def one() -> dict:
        return {d.key: tune.loguniform(d.low, d.high) for d in dimensions_for(hp, space)}

    if population == 1:
        return one()
    return {member_key(k): one() for k in range(population)}


def member_key(k: int) -> str:
    """The key of configuration k in a population trial's config (and its directory)."""
    return f"member{k}"


def trial_configs(config: dict) -> list[dict]:
    """The configurations of a Tune trial's config: one, or one per member of a population."""
    if member_key(0) not in config:
        return [config]
    return [config[member_key(k)] for k in range(len(config))]


def trial_hparams(base: hparams_lib.HParams, config: dict) -> hparams_lib.HParams:
    """The base hparams with a trial's sampled values, validated."""
    values = {**dataclasses.asdict(base), **{key: float(value) for key, value in config.items()}}
    hp = hparams_lib.from_dict(values, "trial config")
    hparams_lib.validate(hp)
    return hp


# --- a trial's score ----------------------------------------------------------------------------

SCORES = {  # name -> what it is, per seed; a trial's score is its mean over seeds
    "last": "the final evaluation return",
    "second_half_mean": "the mean evaluation return at steps > total_steps / 2",
}


def run_score(steps: list[int], returns: list[float], total_steps: int, score: str) -> float:
    """One run's score from its evaluations: `steps` ascending, `returns` the mean evaluation
    returns at those steps (any sequences, NumPy arrays included).

    last: the return of the latest evaluation.
    second_half_mean: the mean return of the evaluations at steps strictly greater than
        total_steps / 2. A run evaluates every eval_interval steps and at total_steps, so a run
        that finished always has one: 300000 steps evaluated every 10000 count the 15 at
        160000, 170000, ..., 300000 (not the one at 150000).
    NaN when no evaluation counts (a run with none, or stopped before its second half); a run
    stopped within its second half scores the evaluations it has there. A trial does not score a
    run that diverged: the trial stops and ranks after every finished one (`trial_rows`)."""
    if score not in SCORES:
        raise SearchError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    if len(steps) != len(returns):
        raise ValueError(f"{len(steps)} evaluation steps but {len(returns)} returns")
    if score == "last":
        return float(returns[-1]) if len(returns) else math.nan
    counted = [float(value) for step, value in zip(steps, returns, strict=True) if step > total_steps / 2]
    return math.fsum(counted) / len(counted) if counted else math.nan


# --- one trial, inside a Ray worker -------------------------------------------------------------


def _import_tensorflow(threads: int) -> None:
    """Imports TensorFlow in a trial's worker with stderr closed (its C++ start-up notices, about
    CUDA on a CPU machine, would be forwarded to the search's console once per trial), and gives
    its thread pools the trial's CPUs: trials share the machine."""
    from smoothie_tf.startup import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran something in this worker
        pass


def run_trial(config: dict, setup: dict) -> None:
    """Tune's trainable: `config` the sampled values, `setup` the search (see `_trial_setup`)."""
    import warnings

    import numpy as np
    from ray import tune

    _import_tensorflow(setup["threads"])
    from smoothie_tf import plotting, training

    warnings.filterwarnings("ignore", message=r".*is out of date\. You should consider upgrading")

    class ReportingTrainer(training.Trainer):
        def evaluated(self, member, returns):
            report(seed, self.step, float(np.mean(returns)))

    def report(seed: int, step: int, eval_return: float) -> None:
        tune.report(
            {"seed": seed, "step": step, "eval_return": eval_return, "seeds_done": len(finals)}
            | {"final_return": math.nan, "score": math.nan, "outcome": "running"}
        )

    trial_dir = pathlib.Path(setup["logdir"]) / TRIALS_DIR / tune.get_context().get_trial_id()
    if member_key(0) in config:
        run_population_trial(config, setup, trial_dir)
        return
    hp = trial_hparams(hparams_lib.from_dict(setup["base"]), config)
    finals: list[float] = []
    scores: list[float] = []
    outcome = "done"
    for seed in range(setup["seeds"]):
        run_dir = trial_dir / f"seed{seed}"
        trainer = ReportingTrainer(setup["env"], hp, seed, run_dir)
        try:
            finals.append(float(trainer.run()["last_eval_return"]))
        except training.NonFiniteLossError:
            finals.append(math.nan)  # a configuration that diverges ranks last; no more seeds
            scores.append(math.nan)
            outcome = "diverged"
            break
        # From the run's event files: a run resumed from a checkpoint reports to this worker only
        # the evaluations after it.
        scores.append(run_score(*plotting.eval_returns(run_dir), hp.total_steps, setup["score"]))
    tune.report(
        {"seed": seed, "step": trainer.step, "eval_return": finals[-1], "seeds_done": len(finals)}
        | {"final_return": float(np.mean(finals)), "final_return_std": float(np.std(finals))}
        | {"score": float(np.mean(scores)), "score_std": float(np.std(scores)), "seed_scores": scores}
        | {"seed_returns": finals, "ranked_by": setup["score"], "outcome": outcome}
    )


def run_population_trial(config: dict, setup: dict, trial_dir: pathlib.Path) -> None:
    """A population trial: its P configurations x `seeds` seeds as one PopulationTrainer, each
    configuration's outcome and score reported as `member<k>_...` metrics. A configuration with
    a run that diverged (now, or before the trial started again: its `diverged.json`) is
    "diverged"."""
    import numpy as np
    from ray import tune

    from smoothie_tf import plotting, training

    base = hparams_lib.from_dict(setup["base"])
    hps = [trial_hparams(base, values) for values in trial_configs(config)]
    seeds = list(range(setup["seeds"]))
    members = [(k, seed) for k in range(len(hps)) for seed in seeds]
    logdirs = [trial_dir / member_key(k) / f"seed{seed}" for k, seed in members]

    class ReportingTrainer(training.PopulationTrainer):
        def evaluated(self, member, returns):
            if member is self.running[-1]:  # once per evaluation round
                known = [m.last_eval_return for m in self.running if m.last_eval_return is not None]
                tune.report(
                    {"step": self.step, "eval_return": float(np.mean(known)), "outcome": "running"}
                    | {"final_return": math.nan, "score": math.nan}
                )

    records = [logdir / training.DIVERGED for logdir in logdirs]
    if all(record.exists() for record in records):
        # A trial started again (the search resumed, or its worker lost) after every run had
        # diverged, before its final report reached Tune: nothing is left to train (the trainer
        # refuses to start), and the outcome is the one the report would have carried.
        trainer = None
        step = max(json.loads(record.read_text())["step"] for record in records)
        stopped = [True] * len(members)
    else:
        trainer = ReportingTrainer(
            setup["env"], [hps[k] for k, _ in members], [seed for _, seed in members], logdirs
        )
        trainer.run()
        step = trainer.step
        stopped = [m.stopped is not None for m in trainer.members]
    metrics: dict = {"step": step, "outcome": "done", "ranked_by": setup["score"]}
    finals_all = []
    for k, hp in enumerate(hps):
        own = [i for i, (member, _) in enumerate(members) if member == k]
        if any(stopped[i] for i in own):
            metrics[f"{member_key(k)}_outcome"] = "diverged"
            continue
        finals = [float(trainer.members[i].last_eval_return) for i in own]
        scores = [run_score(*plotting.eval_returns(logdirs[i]), hp.total_steps, setup["score"]) for i in own]
        finals_all.extend(finals)
        metrics |= {
            f"{member_key(k)}_outcome": "done",
            f"{member_key(k)}_final_return": float(np.mean(finals)),
            f"{member_key(k)}_final_return_std": float(np.std(finals)),
            f"{member_key(k)}_score": float(np.mean(scores)),
            f"{member_key(k)}_score_std": float(np.std(scores)),
            f"{member_key(k)}_seed_scores": scores,
            f"{member_key(k)}_seed_returns": finals,
        }
    metrics["eval_return"] = float(np.mean(finals_all)) if finals_all else math.nan
    tune.report(metrics)


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _trial_setup(request: SearchRequest) -> dict:
    return {
        "env": request.env_id,
        "base": dataclasses.asdict(request.base),
        "logdir": str(request.logdir.resolve()),
        "seeds": request.seeds,
        "threads": max(1, round(request.cpus_per_trial)),
        "score": request.score,
    }


# --- the search, on the driver ------------------------------------------------------------------


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """A local Ray with the machine's CPUs (or `num_cpus`), or the cluster at `address`
    (SearchError when nothing answers there); workers import smoothie_tf from this checkout (on a
    cluster it is uploaded with the job)."""
    import ray

    package = pathlib.Path(__file__).resolve().parent
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, runtime_env={"py_modules": [str(package)]})
        except (ConnectionError, ray.exceptions.AuthenticationError) as error:
            raise SearchError(
                f"cannot connect to the Ray cluster at {address} ({' '.join(str(error).split())[:200]}); "
                "a cluster with token authentication also needs RAY_AUTH_MODE=token and its token"
            ) from error
    else:
        cpus = num_cpus or len(os.sched_getaffinity(0))
        path = os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH")) if p)
        # Ray's processes inherit SIGTERM blocked, as Ray blocks SIGINT in them: a SIGTERM to the
        # whole process group (timeout, kill -- -PGID) then stops the search, not its Ray.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            ray.init(
                address="local",  # a new Ray even when this machine has a running one (ray start)
                num_cpus=cpus,
                include_dashboard=False,
                runtime_env={"env_vars": {"PYTHONPATH": path}},
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Ray retries an unreachable head for minutes; a plain TCP connect answers at once."""
    if address == "auto":  # Ray finds the cluster this machine belongs to
        return
    host, _, port = urllib.parse.urlsplit(address if "://" in address else f"//{address}").netloc.rpartition(
        ":"
    )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except ValueError as error:
        raise SearchError(f"Ray address {address!r} must look like HOST:PORT (or ray://HOST:PORT)") from error
    except OSError as error:
        raise SearchError(f"nothing answers at Ray address {address}: {error}") from error


def check_logdir(request: SearchRequest) -> bool:
    """True when request.logdir holds this search already (it continues); SearchError when it
    holds another one. Writes nothing."""
    saved = request.logdir / REQUEST_FILE
    if not saved.exists():
        return False
    try:
        previous = json.loads(saved.read_text())
    except json.JSONDecodeError as error:
        raise SearchError(f"{saved} is not valid JSON: {error}") from error
    record = json.loads(json.dumps(request.record()))  # tuples as lists, as when read back
    if isinstance(previous, dict):
        previous.setdefault("score", "last")  # a search recorded before scores could be chosen
        previous.setdefault("population", 1)  # ... or before populations
        if previous["score"] != record["score"] and {**previous, "score": record["score"]} == record:
            raise SearchError(
                f"{request.logdir} holds this search ranked by --score={previous['score']}; resume it "
                f"with --score={previous['score']}, or choose another --logdir for --score={record['score']}"
            )
    if previous != record:
        changed = sorted(k for k in record.keys() | previous.keys() if previous.get(k) != record.get(k))
        raise SearchError(
            f"{request.logdir} holds a different search (changed: {', '.join(changed)}); "
            "choose another --logdir"
        )
    return True


@dataclasses.dataclass
class SearchOutcome:
    rows: list[dict]  # one per trial, best first (see `trial_rows`)
    table_path: pathlib.Path
    best_path: pathlib.Path | None  # None while no trial has finished
    finished: bool  # every requested trial ended (done, diverged or error)


def run_search(request: SearchRequest, verbose: int = 0) -> SearchOutcome:
    """Runs (or continues) the search on the connected Ray; writes the table and the best hparams.

    Returns when every trial has ended, or early when Tune was interrupted (SIGINT): then
    `finished` is False and running `run_search` again continues the search. `verbose` is
    Tune's console output (0 silent, 1 a status table now and then); a restored search keeps
    the setting it started with."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.search.basic_variant import BasicVariantGenerator

    validate(request)
    for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
        logging.getLogger(name).addFilter(_misleading_tune_message)
    request = dataclasses.replace(request, logdir=request.logdir.resolve())
    if not check_logdir(request):
        request.logdir.mkdir(parents=True, exist_ok=True)
        _write_atomically(request.logdir / REQUEST_FILE, json.dumps(request.record(), indent=2))
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, setup=_trial_setup(request)), {"cpu": request.cpus_per_trial}
    )
    experiment = request.logdir / TUNE_DIR
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(request.base, request.space, request.population),
            tune_config=tune.TuneConfig(
                num_samples=request.trials // request.population,
                search_alg=BasicVariantGenerator(random_state=request.sampler_seed),
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=TUNE_DIR,
                storage_path=str(request.logdir),
                callbacks=[CSVLoggerCallback(), JsonLoggerCallback()],
                verbose=verbose,
            ),
        )
    # Tune adds a TensorBoardX logger of its own unless told not to; the trials' runs already
    # write full TensorBoard logs under the same logdir, and duplicates would crowd them.
    previous = os.environ.get(_NO_AUTO_LOGGERS)
    os.environ[_NO_AUTO_LOGGERS] = "1"
    try:
        results = tuner.fit()
    finally:
        if previous is None:
            del os.environ[_NO_AUTO_LOGGERS]
        else:
            os.environ[_NO_AUTO_LOGGERS] = previous
    rows = trial_rows(results, request)
    table_path = request.logdir / TABLE_FILE
    write_table(rows, table_path)
    best_path = None
    if rows and rows[0]["status"] == "done":
        best_path = request.logdir / BEST_FILE
        best = trial_hparams(request.base, {d.key: rows[0][d.key] for d in request.dimensions()})
        _write_atomically(best_path, hparams_lib.to_json(best) + "\n")
    finished = len(rows) == request.trials and all(r["status"] != "unfinished" for r in rows)
    return SearchOutcome(rows, table_path, best_path, finished)


def _misleading_tune_message(record: logging.LogRecord) -> bool:
    """False for two of Tune's messages at an interrupt that mislead here: the metrics it could
    not fetch from trials that never started (one line each; the table says "unfinished"), and
    its recipe for resuming with `Tuner.restore`, where the same command resumes the search."""
    message = record.getMessage()
    return not (message.startswith("Failed to fetch metrics") or "Resume experiment with:" in message)


def _write_atomically(path: pathlib.Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def trial_rows(results, request: SearchRequest) -> list[dict]:
    """One dict per trial of a Tune ResultGrid (per configuration, for a population search),
    best first: finished trials by their score (`request.score`, named in the column
    `ranked_by`), highest first, then the diverged ones, then the others in Tune's order.
    `status`: done, diverged (a non-finite loss), error (the trial raised) or unfinished; only
    a done trial has a score. `final_return` is the mean final evaluation return over seeds
    whatever the score."""
    keys = [d.key for d in request.dimensions()]
    rows = []
    for result in results:
        if request.population > 1:
            rows.extend(_population_rows(result, request, keys))
            continue
        metrics = result.metrics or {}
        status = metrics.get("outcome") if metrics.get("outcome") in ("done", "diverged") else "unfinished"
        if result.error is not None:
            status = "error"
        trial_id = metrics.get("trial_id") or pathlib.Path(result.path).name
        final = metrics.get("final_return", math.nan) if status == "done" else math.nan
        score = metrics.get("score", final if request.score == "last" else math.nan)  # (older trials)
        rows.append(
            {
                "trial_id": trial_id,
                "status": status,
                "ranked_by": request.score,
                "score": score if status == "done" else math.nan,
                "score_std": metrics.get("score_std", math.nan) if status == "done" else math.nan,
                "seed_scores": " ".join(f"{x:.6g}" for x in metrics.get("seed_scores", [])),
                "final_return": final,
                "final_return_std": metrics.get("final_return_std", math.nan)
                if status == "done"
                else math.nan,
                "seed_returns": " ".join(f"{x:.6g}" for x in metrics.get("seed_returns", [])),
                **{key: (result.config or {}).get(key) for key in keys},  # None: not started yet
                "logdir": str(request.logdir / TRIALS_DIR / trial_id),
                "error": "" if result.error is None else " ".join(str(result.error).split())[:300],
            }
        )
    # Finished trials by score, then diverged ones, then the rest in Tune's order (sort is stable).
    rows.sort(
        key=lambda r: (
            math.isnan(r["score"]),
            r["status"] != "diverged",
            -r["score"] if r["status"] == "done" else 0,
        )
    )
    return rows


def _population_rows(result, request: SearchRequest, keys: list[str]) -> list[dict]:
    """The rows of one population trial: one per configuration (see `trial_rows`)."""
    metrics = result.metrics or {}
    trial_id = metrics.get("trial_id") or pathlib.Path(result.path).name
    config = result.config or {}
    rows = []
    for k in range(request.population):
        name = member_key(k)
        status = metrics.get(f"{name}_outcome")
        if status not in ("done", "diverged"):
            status = "unfinished"
        if result.error is not None:
            status = "error"
        done = status == "done"
        rows.append(
            {
                "trial_id": f"{trial_id}_m{k}",
                "status": status,
                "ranked_by": request.score,
                "score": metrics.get(f"{name}_score", math.nan) if done else math.nan,
                "score_std": metrics.get(f"{name}_score_std", math.nan) if done else math.nan,
                "seed_scores": " ".join(f"{x:.6g}" for x in metrics.get(f"{name}_seed_scores", [])),
                "final_return": metrics.get(f"{name}_final_return", math.nan) if done else math.nan,
                "final_return_std": metrics.get(f"{name}_final_return_std", math.nan) if done else math.nan,
                "seed_returns": " ".join(f"{x:.6g}" for x in metrics.get(f"{name}_seed_returns", [])),
                **{key: config.get(name, {}).get(key) for key in keys},  # None: not started yet
                "logdir": str(request.logdir / TRIALS_DIR / trial_id / name),
                "error": "" if result.error is None else " ".join(str(result.error).split())[:300],
            }
        )
    return rows


def write_table(rows: list[dict], path: pathlib.Path) -> None:
    """The rows as CSV, ranked (rank 1 = best score)."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="") as f:
        writer = csv.DictWriter(f, ["rank", *(rows[0] if rows else ())])
        writer.writeheader()
        writer.writerows({"rank": rank, **row} for rank, row in enumerate(rows, 1))
    os.replace(temporary, path)


def format_table(rows: list[dict], limit: int | None = None) -> str:
    """The best `limit` rows (all by default) as aligned text, without the columns that only the
    CSV file keeps (the score's name, the spread and per-seed values of the final returns,
    logdirs and errors)."""
    if not rows:
        return "no trials"
    hidden = ("ranked_by", "final_return_std", "seed_returns", "logdir", "error")
    columns = [c for c in rows[0] if c not in hidden]
    cells = [["rank", *columns]]
    for rank, row in enumerate(rows[:limit], 1):
        cells.append([str(rank), *(_cell(row[c]) for c in columns)])
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def _cell(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return "-" if value is None or value == "" else str(value)
