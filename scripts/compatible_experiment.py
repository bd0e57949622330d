#!/usr/bin/env python3
"""Compatible function approximation (supplement B) on SmoothieLQR-v0: the policy gradient of a
least squares critic fitted to noisy derivative Bellman targets (supplement C), against the closed
forms, as the number of samples grows, for the compatible critic and a non-compatible one with as
many parameters. See smoothie_tf/compatible.py for the estimator.

    .venv/bin/python scripts/compatible_experiment.py [--counts=10000,...] [--seeds=5]
        [--discount=0.9] [--out=results/compatible.md] [--figure=results/compatible.png]

For each seed it draws max(counts) independent samples and uses their first N for each count N
(so one seed's estimates at different counts share samples; seeds are independent). Writes the
table (mean relative error ± standard deviation over seeds) and a log-log figure. numpy only.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")  # one core, before numpy loads its BLAS

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from smoothie_tf import compatible, envs  # noqa: E402
from smoothie_tf.lqr import LinearQuadratic  # noqa: E402

# The example policy of tests/test_lqr.py: stabilising and away from the optimum.
GAIN = np.array([[-0.3, -0.4, 0.1], [0.1, 0.25, -0.35]])
VARIANCE = np.array([0.3, 0.1])
# Columns: (critic, which gradient); "compatible, Σ_K closed form" is W Σ_K with the exact Σ_K.
COLUMNS = [
    ("compatible", "K"),
    ("compatible, Σ_K closed form", "K"),
    ("non-compatible", "K"),
    ("compatible", "φ"),
    ("non-compatible", "φ"),
]


def column_errors(lq, policy, states, target_1, target_2, non_compatible) -> np.ndarray:
    """Both critics fitted to the same targets [N, m] on states [N, n]: their gradients' relative
    errors [len(COLUMNS)]."""
    true_gain = lq.objective_gradient_gain(policy.gain, policy.covariance)
    true_log_variance = lq.objective_gradient_log_variance(policy.gain, policy.log_variance)
    estimates = {}
    for features in (compatible.COMPATIBLE, non_compatible):
        weights = compatible.fit_critic(features, states, target_1, target_2, policy)
        estimates[features.name] = compatible.policy_gradient(features, weights, states, policy, lq.discount)
        if features is compatible.COMPATIBLE:
            state_moment = lq.state_moment(policy.gain, policy.covariance)
            closed = compatible.compatible_policy_gradient(weights, state_moment, policy, lq.discount)
    gains = [estimates["compatible"][0], closed[0], estimates[non_compatible.name][0]]
    log_variances = [estimates["compatible"][1], estimates[non_compatible.name][1]]
    return np.array(
        [compatible.relative_error(g, true_gain) for g in gains]
        + [compatible.relative_error(v, true_log_variance) for v in log_variances]
    )


def errors_for_seed(lq, policy, counts, seed, non_compatible) -> tuple[np.ndarray, compatible.Samples]:
    """Relative errors [len(counts), len(COLUMNS)] of one seed, and its samples."""
    samples = compatible.sample(lq, policy, max(counts), np.random.default_rng(seed))
    result = np.empty((len(counts), len(COLUMNS)))
    for row, count in enumerate(counts):
        subset = compatible.Samples(samples.states[:count], samples.noise[:count], samples.returns[:count])
        baseline = compatible.cross_fitted_baseline(subset.states, subset.returns)
        targets = compatible.hermite_targets(subset, policy, baseline)
        result[row] = column_errors(lq, policy, subset.states, *targets, non_compatible)
    return result, samples


def least_squares_limits(lq, policy, states, non_compatible) -> np.ndarray:
    """The errors [len(COLUMNS)] with exact derivative targets (the closed-form ∇aQ̃(s, Ks) and
    ∇²aQ̃) on the given states: what each fit tends to as the samples grow, up to the sampling of
    the states themselves."""
    gradient = lq.smoothed_q_gradient(states, states @ policy.gain.T, policy.gain, policy.covariance)
    hessian = np.tile(np.diag(lq.smoothed_q_hessian(policy.gain)), (len(states), 1))
    return column_errors(lq, policy, states, gradient, hessian, non_compatible)


def write_figure(counts, errors, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    styles = {
        "compatible": "tab:blue",
        "compatible, Σ_K closed form": "tab:cyan",
        "non-compatible": "tab:red",
    }
    for column, (critic, target) in enumerate(COLUMNS):
        axis = axes[0 if target == "K" else 1]
        mean, spread = errors[:, :, column].mean(axis=0), errors[:, :, column].std(axis=0)
        axis.errorbar(counts, mean, yerr=spread, marker="o", capsize=3, color=styles[critic], label=critic)
    # 1/√N through the compatible critic's error at the smallest count.
    for axis, target, column in zip(axes, ["∇_K J", "∇_φ J"], [0, 3], strict=True):
        reference = errors[:, 0, column].mean() * np.sqrt(counts[0] / np.asarray(counts))
        axis.plot(counts, reference, color="gray", linestyle=":", label="∝ 1/√N")
        axis.axhline(0.02, color="black", linewidth=0.6, linestyle="--", label="2%")
        axis.set(xscale="log", yscale="log", xlabel="samples N", title=f"relative error of {target}")
        axis.legend(fontsize=8)
    axes[0].set_ylabel("‖estimate − closed form‖ / ‖closed form‖")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_table(args, lq, policy, counts, errors, limits, clipped, seconds, non_compatible, path) -> str:
    true_gain = lq.objective_gradient_gain(policy.gain, policy.covariance)
    true_log_variance = lq.objective_gradient_log_variance(policy.gain, policy.log_variance)
    header = " | ".join(f"{critic} ∇{target}" for critic, target in COLUMNS)
    lines = [f"| N | {header} |", "|" + " --- |" * (len(COLUMNS) + 1)]
    for row, count in enumerate(counts):
        cells = [
            f"{100 * errors[:, row, c].mean():.2f} ± {100 * errors[:, row, c].std():.2f}%"
            for c in range(len(COLUMNS))
        ]
        lines.append(f"| {count:,} | " + " | ".join(cells) + " |")
    lines.append(
        f"| exact targets, {max(counts):,} states | " + " | ".join(f"{100 * e:.2f}%" for e in limits) + " |"
    )
    last = errors[:, -1, :]
    command = "    .venv/bin/python scripts/compatible_experiment.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    text = f"""# Compatible function approximation on SmoothieLQR-v0

Supplement B's compatible critic for the linear-Gaussian policy a = K s + ε, ε ~ N(0, diag e^φ),
fitted by least squares to noisy derivative Bellman targets (supplement C), and the policy gradient
it implies (Theorem 1), against the closed forms `objective_gradient_gain` and
`objective_gradient_log_variance` of `smoothie_tf/lqr.py`. Made by

{command.rstrip()}

in {seconds[0] / 60:.1f} minutes of CPU on one thread ({seconds[1] / 60:.1f} minutes wall clock;
{args.seeds} seeds, seed s draws max N samples and each count uses the first N of them).

Task: SmoothieLQR-v0's default matrices, discount γ = {lq.discount:g}. Policy:
K = {policy.gain.tolist()}, e^φ = {np.round(policy.variance, 6).tolist()}.
Closed forms: ∇_K J = {np.round(true_gain, 4).tolist()}, ∇_φ J = {np.round(true_log_variance, 4).tolist()}.

Each sample: s from the discounted state distribution (t ~ Geometric(1 − γ), then t steps of the
policy from s0 ~ N(0, Σ0)), ã ~ π(·|s), and y the discounted return of a rollout from (s, ã)
following the policy for {compatible.horizon(lq.discount)} steps (γ^H ≤ 1e-6). Targets
target_1 = Σ^(-1/2) x (y − b(s)), target_2 = (x² − 1)/e^φ (y − b(s)), x = Σ^(-1/2)(ã − Ks), with b a
quadratic regression of y on s fitted on the other half of the samples (a control variate: the
targets' means are unchanged, tests/test_compatible.py). Actions clipped by the env's bounds:
{clipped} of all simulated steps.

Critics, with the same number of parameters (m·n + m = 8):

- compatible: ∇aQ̃w(s, Ks) = W s, ∇²aQ̃w(s, Ks) = diag(e^φ ⊙ w_Σ), giving
  ∇_K J ≈ W · mean(s sᵀ)/(1 − γ) (Σ_K from the samples; the "Σ_K closed form" column uses
  `LinearQuadratic.state_moment` instead) and ∇_φ J ≈ ½ e^φ ⊙ e^φ ⊙ w_Σ/(1 − γ);
- non-compatible: ∇aQ̃w(s, Ks) = W tanh(s/{args.scale:g}), ∇²aQ̃w(s, Ks) = diag(e^φ ⊙ w_Σ) ‖s‖²
  ({non_compatible.name}), fitted and turned into a gradient the same way.

Relative error ‖estimate − closed form‖/‖closed form‖, mean ± standard deviation over {args.seeds} seeds:

{chr(10).join(lines)}

![relative error against the number of samples](compatible.png)

At N = {max(counts):,} the compatible critic's gradient is within
{100 * last[:, 0].mean():.2f}% (∇_K J, worst seed {100 * last[:, 0].max():.2f}%) and
{100 * last[:, 3].mean():.2f}% (∇_φ J, worst seed {100 * last[:, 3].max():.2f}%) of the closed form,
and its error falls like 1/√N: the targets are unbiased and the true ∇aQ̃(s, Ks) = G s and
∇²aQ̃ = −2M lie in the critic's span, so least squares recovers them exactly in the limit
(supplement B). The non-compatible critic is fitted to the same targets, but its least squares
solution is the projection of G s onto tanh(s/{args.scale:g}) and of the constant −2M onto ‖s‖²:
its error levels off at its limit ({100 * limits[2]:.1f}% for ∇_K J, {100 * limits[4]:.1f}% for ∇_φ J;
last row: the same fits to the exact ∇aQ̃(s, Ks) and ∇²aQ̃ on the last seed's states), whatever the
number of samples.

With Σ_K taken from the same samples, the compatible critic's ∇_K J equals the plain
likelihood-ratio average mean(target_1 sᵀ)/(1 − γ) exactly (W = T₁ᵀS(SᵀS)⁻¹, times SᵀS/N); with the
closed-form Σ_K (second column) it is a regression estimate W Σ_K instead.
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="10000,30000,100000,300000,1000000,2000000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--discount", type=float, default=0.9)
    parser.add_argument("--scale", type=float, default=0.1, help="the non-compatible critic's tanh(s/scale)")
    parser.add_argument("--out", default="results/compatible.md")
    parser.add_argument("--figure", default="results/compatible.png")
    args = parser.parse_args()
    counts = sorted(int(float(c)) for c in args.counts.split(","))

    lq = LinearQuadratic.from_env(gym.make(envs.LQR_ID), args.discount)
    policy = compatible.GaussianPolicy(GAIN, np.log(VARIANCE))
    non_compatible = compatible.non_compatible_features(args.scale)
    start, cpu_start = time.time(), time.process_time()
    errors, clipped = [], 0
    for seed in range(args.seeds):
        result, samples = errors_for_seed(lq, policy, counts, seed, non_compatible)
        errors.append(result)
        clipped += samples.clipped
        print(f"seed {seed}: {time.time() - start:.0f}s", flush=True)
    errors = np.array(errors)  # [seeds, counts, columns]
    limits = least_squares_limits(lq, policy, samples.states, non_compatible)
    seconds = (time.process_time() - cpu_start, time.time() - start)
    table = write_table(
        args, lq, policy, counts, errors, limits, clipped, seconds, non_compatible, ROOT / args.out
    )
    write_figure(counts, errors, ROOT / args.figure)
    print(table)


if __name__ == "__main__":
    main()
