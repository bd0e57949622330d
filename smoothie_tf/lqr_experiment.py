"""The linear-quadratic experiment: Smoothie and DDPG on SmoothieLQR-v0, measured against the
closed forms of `smoothie_tf.lqr` at every evaluation of the run.

At each evaluation the learned mean action μθ(s) is fitted by least squares with an affine map
K̂s + b̂ on states s ~ N(0, Σ0) (the task's initial distribution, the same states every time),
and the fit is compared with the optimum: the relative gain error ‖K̂ − K*‖_F / ‖K*‖_F and the
objective ratio J(K̂, 0) / J(K*, 0) (≥ 1, both negative; only when K̂ is stabilising). R² and the
residual of the fit say how linear μθ is on those states. The critic's action-derivatives at μθ
are compared with the closed forms for the fitted policy, and Smoothie's variances exp(φ) are
recorded. Rows go to `lqr.csv` in the run's directory (and to TensorBoard under `lqr/`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import pathlib
import re
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from smoothie_tf import envs, plotting
from smoothie_tf import hparams as hparams_lib
from smoothie_tf.lqr import LinearQuadratic
from smoothie_tf.training import Trainer, check_logdir

RECORD_FILE = "lqr.csv"
FIT_STATES = 4096
FIT_SEED = 20180710  # the fit's states are a function of this seed alone: every run, every step
TARGET_GAIN_ERROR, TARGET_OBJECTIVE_RATIO = 0.1, 1.05
ADAM_BETA_2 = 0.999  # Keras's default, which the agents' optimizers keep


@dataclasses.dataclass(frozen=True)
class AffineFit:
    """μ(s) ≈ K̂ s + b̂ by least squares over states [N, n]."""

    gain: np.ndarray  # K̂ [m, n]
    intercept: np.ndarray  # b̂ [m]
    r_squared: float  # 1 − Σ‖μ − K̂s − b̂‖² / Σ‖μ − mean μ‖², over every action dimension
    residual_rms: float  # sqrt(mean over states of ‖μ − K̂s − b̂‖²)


def fit_affine_policy(states: np.ndarray, actions: np.ndarray) -> AffineFit:
    """Least squares of actions [N, m] on [states, 1] ([N, n]), in float64."""
    states = np.asarray(states, dtype=np.float64)
    actions = np.asarray(actions, dtype=np.float64)
    design = np.concatenate([states, np.ones((len(states), 1))], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, actions, rcond=None)  # [n + 1, m]
    residuals = actions - design @ coefficients
    total = np.sum((actions - actions.mean(axis=0)) ** 2)
    residual_sum = float(np.sum(residuals**2))
    return AffineFit(
        gain=coefficients[:-1].T,
        intercept=coefficients[-1],
        r_squared=1.0 - residual_sum / total if total > 0 else math.nan,
        residual_rms=math.sqrt(residual_sum / len(states)),
    )


def fit_states(lq: LinearQuadratic, count: int = FIT_STATES, seed: int = FIT_SEED) -> np.ndarray:
    """count states [count, n] from N(0, Σ0), a function of `seed` alone."""
    factor = np.linalg.cholesky(lq.initial_covariance)
    return np.random.default_rng(seed).standard_normal((count, lq.state_dim)) @ factor.T


def gain_metrics(lq: LinearQuadratic, gain: np.ndarray, variance: np.ndarray | None = None) -> dict:
    """The fitted gain against the optimum (with Σ = 0 unless `variance` [m] is given):

    gain_error ‖K̂ − K*‖_F / ‖K*‖_F; spectral_radius sqrt(γ)·ρ(A + BK̂); objective_ratio
    J(K̂, 0) / J(K*, 0) and, with `variance`, objective_ratio_stochastic J(K̂, diag variance) /
    J(K*, 0) — both NaN when K̂ is not stabilising (J is −∞ there).
    """
    optimum = lq.optimal_gain()
    zero = np.zeros((lq.action_dim, lq.action_dim))
    best = lq.objective(optimum, zero)
    stabilising = lq.is_stabilising(gain)
    metrics = {
        "gain_error": float(np.linalg.norm(gain - optimum) / np.linalg.norm(optimum)),
        "spectral_radius": lq.spectral_radius(gain),
        "stabilising": int(stabilising),
        "objective_ratio": lq.objective(gain, zero) / best if stabilising else math.nan,
    }
    if variance is not None:
        sigma = np.diag(np.asarray(variance, dtype=np.float64))
        metrics["objective_ratio_stochastic"] = lq.objective(gain, sigma) / best if stabilising else math.nan
    return metrics


def critic_metrics(
    lq: LinearQuadratic,
    critic,
    states: np.ndarray,
    means: np.ndarray,
    gain: np.ndarray,
    reward_scale: float,
) -> dict:
    """The critic's action-derivatives at a = μθ(s), divided by the reward scale c (the critic
    learns c·Q̃), against the closed forms for the linear policy K̂ (whose ∇aQ̃ and ∇²aQ̃ do not
    depend on Σ, so Smoothie's Q̃ and DDPG's Q share them). NaN when K̂ is not stabilising.

    critic_gradient_error: RMS_s ‖(2M)⁻¹(g_w − ∇aQ̃)‖ / RMS_s ‖K* s‖ — the critic's gradient error
    as the shift of the maximiser of its quadratic model, relative to the optimal action's size;
    critic_hessian_error: mean_s ‖H_w − (−2M)‖_F / ‖2M‖_F; critic_hessian_{i}_{j}: mean_s H_w;
    hessian_{i}_{j}: −2M(K̂).
    """
    m = lq.action_dim
    names = [f"{i}_{j}" for i in range(m) for j in range(m)]
    if not lq.is_stabilising(gain):
        nan = {"critic_gradient_error": math.nan, "critic_hessian_error": math.nan}
        return (
            nan | {f"critic_hessian_{k}": math.nan for k in names} | {f"hessian_{k}": math.nan for k in names}
        )
    _, gradients, hessians = critic.value_grad_hess(  # one member: [1, N, ...]
        tf.constant(states[None], tf.float32), tf.constant(means[None], tf.float32), diagonal=False
    )
    gradients = gradients.numpy()[0].astype(np.float64) / reward_scale
    hessians = hessians.numpy()[0].astype(np.float64) / reward_scale
    zero = np.zeros((m, m))
    true_gradients = lq.smoothed_q_gradient(states, means, gain, zero)
    true_hessian = lq.smoothed_q_hessian(gain)
    shift = np.linalg.solve(-true_hessian, (gradients - true_gradients).T).T  # (2M)⁻¹(g_w − g) [N, m]
    optimal_actions = states @ lq.optimal_gain().T
    gradient_error = math.sqrt(np.mean(np.sum(shift**2, 1)) / np.mean(np.sum(optimal_actions**2, 1)))
    hessian_error = np.mean(np.linalg.norm(hessians - true_hessian, axis=(1, 2))) / np.linalg.norm(
        true_hessian
    )
    mean_hessian = hessians.mean(axis=0)
    return (
        {"critic_gradient_error": gradient_error, "critic_hessian_error": float(hessian_error)}
        | {f"critic_hessian_{k}": float(v) for k, v in zip(names, mean_hessian.reshape(-1), strict=True)}
        | {f"hessian_{k}": float(v) for k, v in zip(names, true_hessian.reshape(-1), strict=True)}
    )


def measure(lq: LinearQuadratic, agent, states: np.ndarray, hp: hparams_lib.HParams) -> dict:
    """One row of the record (step and evaluation return excepted): the affine fit of the
    agent's mean action on `states` [N, n], its metrics, the critic's, Smoothie's variances
    (NaN for DDPG, whose φ is never trained) and the entries of K̂ (gain_{i}_{j})."""
    means = agent.policy(tf.constant(states[None], tf.float32)).numpy()[0].astype(np.float64)
    fit = fit_affine_policy(states, means)
    smoothie = hp.agent == "smoothie"
    variance = agent.policy.variance().numpy()[0].astype(np.float64) if smoothie else None
    row = gain_metrics(lq, fit.gain, variance)
    row.setdefault("objective_ratio_stochastic", math.nan)
    row |= {
        "r_squared": fit.r_squared,
        "residual_rms": fit.residual_rms,
        "intercept_norm": float(np.linalg.norm(fit.intercept)),
    }
    for i in range(lq.action_dim):
        row[f"variance_{i}"] = float(variance[i]) if smoothie else math.nan
    row |= critic_metrics(lq, agent.critic, states, means, fit.gain, hp.reward_scale)
    for (i, j), value in np.ndenumerate(fit.gain):
        row[f"gain_{i}_{j}"] = float(value)
    return row


# --- the record ------------------------------------------------------------------------------


def read_record(logdir: pathlib.Path) -> list[dict]:
    """The rows of `lqr.csv` in logdir (numbers as float, step as int), by step; [] if none."""
    path = pathlib.Path(logdir) / RECORD_FILE
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = [{k: int(v) if k == "step" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return sorted(rows, key=lambda row: row["step"])


def write_row(logdir: pathlib.Path, row: dict) -> None:
    """Adds `row` to `lqr.csv`, dropping any row at or after its step (a resumed run recomputes
    them); atomic, so a crash leaves the previous file."""
    path = pathlib.Path(logdir) / RECORD_FILE
    rows = [r for r in read_record(logdir) if r["step"] < row["step"]] + [row]
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


SCALAR_TAGS = (
    "gain_error",
    "objective_ratio",
    "objective_ratio_stochastic",
    "r_squared",
    "critic_gradient_error",
    "critic_hessian_error",
)


def write_scalars(writer, row: dict) -> None:
    """The row's headline figures as TensorBoard scalars `lqr/...` (finite values only)."""
    with writer.as_default(step=row["step"]):
        for tag in SCALAR_TAGS:
            if math.isfinite(row[tag]):
                tf.summary.scalar(f"lqr/{tag}", row[tag])
    writer.flush()


# --- one run ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    """One run's rows: agent, seed and the measurements at each evaluation step."""

    agent: str
    seed: int
    rows: list[dict]

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return np.array([r["step"] for r in self.rows]), np.array([r[key] for r in self.rows])

    @property
    def final(self) -> dict:
        return self.rows[-1]


def run_seed(
    hp: hparams_lib.HParams,
    seed: int,
    logdir: str | os.PathLike,
    env_id: str = envs.LQR_ID,
    on_row: Callable[[dict], None] | None = None,
) -> Record:
    """Trains (or resumes) one run in logdir with smoothie_tf.training.Trainer, measuring at
    step 0 and at every evaluation; a finished run is read back from its `lqr.csv`.
    Raises RunConfigError, as Trainer does, when logdir holds another run."""
    logdir = pathlib.Path(logdir)
    on_row = on_row or (lambda row: None)
    trainer = Trainer(env_id, hp, seed, logdir)
    check_logdir(logdir, trainer.config)  # before anything is written there
    rows = read_record(logdir)
    if (logdir / "policy").exists() and rows and rows[-1]["step"] == hp.total_steps:
        return Record(hp.agent, seed, rows)

    lq = LinearQuadratic.from_env(trainer.env, hp.discount)
    states = fit_states(lq)
    writer = None

    def measured(step: int) -> dict:
        row = {"step": step, **measure(lq, trainer.agent, states, hp), "eval_return": math.nan}
        if trainer.last_eval_return is not None and step > 0:
            row["eval_return"] = trainer.last_eval_return
        return row

    def keep(row: dict) -> None:
        nonlocal writer
        write_row(logdir, row)
        writer = writer or tf.summary.create_file_writer(str(logdir), filename_suffix=".lqr")
        write_scalars(writer, row)
        on_row(row)

    def evaluation_step(step: int) -> bool:
        return step % hp.eval_interval == 0 or step == hp.total_steps

    # A fresh run's step 0 (the initial networks) is measured now and kept once the trainer has
    # made logdir this run's (hparams.json first): nothing of it lands in a directory it refuses.
    # Stopped before its first step, the run saves checkpoint 0, whose row a resume measures.
    pending = None
    latest = trainer.checkpoints.latest()
    if latest is None:
        pending = measured(0)
    else:
        step = int(trainer.checkpoints.read_state(latest)["step"])
        if evaluation_step(step) and not any(r["step"] == step for r in rows):
            trainer.restore(step)  # stopped between the checkpoint and its row
            keep(measured(step))

    def on_progress(progress) -> None:
        nonlocal pending
        if pending is not None:
            keep(pending)
            pending = None
        if evaluation_step(progress.step):
            keep(measured(progress.step))

    trainer.on_progress = on_progress
    try:
        trainer.run()
    finally:
        if writer is not None:
            writer.close()
    return Record(hp.agent, seed, read_record(logdir))


# --- across runs -----------------------------------------------------------------------------


def variance_predictions(lq: LinearQuadratic, hp: hparams_lib.HParams, steps: np.ndarray) -> dict:
    """Smoothie's variances exp(φ) [T, m] after `steps` [T] updates if the critic were exact
    (∇²aQ̃ = −2M, M = M(K*) held fixed), from φ0 = initial_log_variance, at φ's learning rate η:

    "adam": exp(φ0 − ρη t) — Adam moves a parameter whose gradient keeps its sign by about η per
        step, whatever the gradient's size; here the gradient shrinks with e^φ, so the running
        mean of g² (β2) lags above g²: in the steady state ρ² = 1 − 2ρη/(1 − β2), i.e.
        ρ = sqrt(1 + a²) − a with a = η/(1 − β2) (0.99 at η = 1e-5, 0.905 at η = 1e-4);
    "sgd_surrogate": 1 / (1/Σ0 + η M_ii t) — plain gradient descent on the agent's surrogate,
        whose φ-gradient is −½ e^φ H_ii = e^φ M_ii (dΣ/dt = −η M_ii Σ²);
    "sgd_objective": 1 / (1/Σ0 + η M_ii t / (1 − γ)) — gradient ascent on J itself, whose
        φ-gradient is e^φ diag(∇_Σ J) = −e^φ M_ii / (1 − γ).
    """
    rate = hp.log_variance_lr if hp.log_variance_lr > 0 else hp.actor_lr
    t = np.asarray(steps, dtype=np.float64)[:, None]
    curvature = np.diag(lq.action_curvature(lq.optimal_gain()))[None, :]
    initial = math.exp(hp.initial_log_variance)
    lag = rate / (1.0 - ADAM_BETA_2)
    adam_rate = rate * (math.sqrt(1.0 + lag**2) - lag)
    return {
        "adam": np.exp(hp.initial_log_variance - adam_rate * t) * np.ones_like(curvature),
        "sgd_surrogate": 1.0 / (1.0 / initial + rate * curvature * t),
        "sgd_objective": 1.0 / (1.0 / initial + rate * curvature * t / (1.0 - lq.discount)),
    }


def log_variance_rate(record: Record, dimension: int) -> float:
    """The measured decrease of φ_i = log Σ_ii per update: minus the least-squares slope of
    log(variance_i) against steps over the run."""
    steps, variances = record.series(f"variance_{dimension}")
    return -float(np.polyfit(steps, np.log(variances), 1)[0])


def meets_target(row: dict) -> bool:
    """Relative gain error at most 0.1 and J(K̂, 0) within 5% of J*."""
    return row["gain_error"] <= TARGET_GAIN_ERROR and row["objective_ratio"] <= TARGET_OBJECTIVE_RATIO


def summary(records: list[Record]) -> dict:
    """agent -> final figures per seed (None where not finite: J of a gain that is not
    stabilising) and the number of seeds that meet the target."""
    out: dict[str, dict] = {}
    for r in records:
        agent = out.setdefault(r.agent, {"seeds": 0, "meet_target": 0, "final": []})
        agent["seeds"] += 1
        agent["meet_target"] += int(meets_target(r.final))
        keys = ("step", "gain_error", "objective_ratio", "r_squared")
        finite = {k: r.final[k] if math.isfinite(r.final[k]) else None for k in keys}
        agent["final"].append({"seed": r.seed, **finite})
    return out


def _cell(value: float, digits: int = 3) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}g}"


def markdown_table(records: list[Record], steps: list[int]) -> str:
    """One line per run and step of `steps` (those it has): gain error, J ratio (or "not
    stabilising"), R² and residual of the fit, |b̂|, variances, critic errors."""
    lines = [
        "| agent | seed | step | ‖K̂−K*‖/‖K*‖ | J(K̂,0)/J* | R² | residual RMS | ‖b̂‖ | variances exp(φ) "
        "| critic ∇a error | critic ∇²a error |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        for row in (row for row in r.rows if row["step"] in steps):
            ratio = _cell(row["objective_ratio"], 4) if row["stabilising"] else "not stabilising"
            variances = [row[k] for k in sorted(row) if k.startswith("variance_")]
            variance = ", ".join(_cell(v) for v in variances) if r.agent == "smoothie" else "—"
            cells = [r.agent, str(r.seed), str(row["step"]), _cell(row["gain_error"]), ratio]
            cells += [_cell(row[key]) for key in ("r_squared", "residual_rms", "intercept_norm")]
            cells += [variance, _cell(row["critic_gradient_error"]), _cell(row["critic_hessian_error"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fitted_gain(row: dict) -> np.ndarray:
    """K̂ [m, n] of a record row, from its gain_{i}_{j} entries."""
    entries = {}
    for key, value in row.items():
        match = re.fullmatch(r"gain_(\d+)_(\d+)", key)
        if match:
            entries[int(match[1]), int(match[2])] = value
    m, n = (max(index) + 1 for index in zip(*entries, strict=True))
    return np.array([[entries[i, j] for j in range(n)] for i in range(m)])


def late_figures(record: Record, lq: LinearQuadratic, count: int = 10) -> dict:
    """Over the last `count` rows: the mean gain error; the gain error of the time-averaged K̂
    (what is left when the fluctuations average out: the bias); the fluctuations' size
    sqrt(mean ‖K̂ − mean K̂‖²_F) / ‖K*‖_F; and the critic's action-Hessian diagonal as a
    fraction of the closed form's, mean over the rows where K̂ is stabilising ([m])."""
    rows = record.rows[-count:]
    gains = np.stack([fitted_gain(row) for row in rows])
    optimum = lq.optimal_gain()
    scale = np.linalg.norm(optimum)
    average = gains.mean(axis=0)
    stable = [row for row in rows if row["stabilising"]]
    ratios = [
        [row[f"critic_hessian_{i}_{i}"] / row[f"hessian_{i}_{i}"] for i in range(lq.action_dim)]
        for row in stable
    ]
    return {
        "mean_gain_error": float(np.mean([row["gain_error"] for row in rows])),
        "gain_error_of_mean": float(np.linalg.norm(average - optimum) / scale),
        "fluctuation": float(np.sqrt(np.mean(np.sum((gains - average) ** 2, axis=(1, 2)))) / scale),
        "hessian_ratio": np.mean(ratios, axis=0) if ratios else np.full(lq.action_dim, math.nan),
    }


def diagnostics_table(records: list[Record], lq: LinearQuadratic, count: int = 10) -> str:
    """One line per run: `late_figures` over its last `count` rows and, for Smoothie, the
    measured decrease of each φ_i per step (`log_variance_rate`)."""
    lines = [
        f"| agent | seed | mean gain error (last {count}) | gain error of the mean K̂ | fluctuation "
        "| critic ∇²a / closed form (diagonal) | −dφ_i/dt per step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        late = late_figures(r, lq, count)
        rates = "—"
        if r.agent == "smoothie":
            rates = ", ".join(f"{log_variance_rate(r, i):.3g}" for i in range(lq.action_dim))
        cells = [r.agent, str(r.seed), _cell(late["mean_gain_error"]), _cell(late["gain_error_of_mean"])]
        cells += [_cell(late["fluctuation"]), ", ".join(_cell(x) for x in late["hessian_ratio"]), rates]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


COLOURS = {"smoothie": "tab:blue", "ddpg": "tab:red"}
MARKERS = ("o", "s", "^", "v", "D", "P")  # one per seed


def plot(records: list[Record], out: pathlib.Path, lq: LinearQuadratic, hp: hparams_lib.HParams) -> None:
    """Six panels against environment steps, one line per run (colour: agent, marker: seed):
    the relative gain error, the objective ratio J(K̂, 0)/J* − 1 (× where K̂ is not
    stabilising), Smoothie's variances with the rates of `variance_predictions` (hp: Smoothie's
    hparams), 1 − R² of the affine fit, and the critic's gradient and Hessian errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(17, 9))
    panels = [
        (axes[0, 0], "gain_error", "relative gain error ‖K̂ − K*‖_F / ‖K*‖_F", TARGET_GAIN_ERROR),
        (axes[0, 1], "objective_ratio", "J(K̂, 0) / J* − 1  (× : K̂ not stabilising)", TARGET_OBJECTIVE_RATIO),
        (axes[1, 0], "r_squared", "1 − R² of the affine fit of μθ on s ~ N(0, Σ0)", None),
        (axes[1, 1], "critic_gradient_error", "critic ∇aQ̃ error at μθ (shift of its maximiser, rel.)", None),
        (axes[1, 2], "critic_hessian_error", "critic ∇²aQ̃ error at μθ, ‖H_w + 2M‖_F / ‖2M‖_F", None),
    ]
    for axis, key, title, target in panels:
        for r in records:
            steps, values = r.series(key)
            if key == "objective_ratio":
                values = values - 1.0
                unstable = steps[~np.isfinite(values)]
                axis.plot(unstable, np.full(len(unstable), 10.0), "x", color=COLOURS.get(r.agent, "gray"))
            elif key == "r_squared":
                values = 1.0 - values
            axis.plot(
                steps,
                values,
                color=COLOURS.get(r.agent, "gray"),
                marker=MARKERS[r.seed % len(MARKERS)],
                markersize=3,
                alpha=0.7,
                label=f"{r.agent} seed {r.seed}",
            )
        if target is not None:
            axis.axhline(
                target - 1.0 if key == "objective_ratio" else target,
                color="black",
                linestyle="--",
                linewidth=0.8,
                label="target",
            )
        axis.set(title=title, xlabel="environment step", yscale="log")
        axis.grid(alpha=0.3)
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        axis.legend(unique.values(), unique.keys(), fontsize="small")

    axis = axes[0, 2]
    smoothie = [r for r in records if r.agent == "smoothie"]
    for r in smoothie:
        for i, style in zip(range(lq.action_dim), ("-", ":"), strict=False):
            steps, values = r.series(f"variance_{i}")
            axis.plot(
                steps,
                values,
                style,
                color=COLOURS["smoothie"],
                marker=MARKERS[r.seed % len(MARKERS)],
                markersize=3,
                alpha=0.7,
                label=f"Smoothie exp(φ_{i})",
            )
    if smoothie:
        steps = np.linspace(0, max(r.rows[-1]["step"] for r in smoothie), 100)
        predicted = variance_predictions(lq, hp, steps)
        for name, colour in (
            ("adam", "black"),
            ("sgd_surrogate", "tab:green"),
            ("sgd_objective", "tab:orange"),
        ):
            for i, style in zip(range(lq.action_dim), ("--", "-."), strict=False):
                axis.plot(
                    steps,
                    predicted[name][:, i],
                    style,
                    color=colour,
                    linewidth=0.9,
                    label=f"exact critic, {name.replace('_', ' on ')}" if i == 0 else None,
                )
    axis.set(title="Smoothie's variances (optimum Σ = 0)", xlabel="environment step", yscale="log")
    axis.grid(alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    unique = {label: handle for label, handle in zip(labels, handles, strict=True) if label}
    axis.legend(unique.values(), unique.keys(), fontsize="small")
    figure.tight_layout()
    plotting.save_figure(figure, out, dpi=110)
