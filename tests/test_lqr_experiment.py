"""The linear-quadratic experiment's measurements against the closed forms, its record (one CSV
row per evaluation, exact on resume) and its script on a tiny budget."""

import csv
import json
import math
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from small_runs import ROOT, small_hparams

from smoothie_tf import envs, lqr_experiment
from smoothie_tf.lqr import LinearQuadratic

DISCOUNT = 0.9
# A stabilising gain well away from the optimum (as in tests/test_lqr.py).
GAIN = np.array([[-0.3, -0.4, 0.1], [0.1, 0.25, -0.35]])
LQR_BUDGET = {"batch_size": 8, "replay_capacity": 1000, "total_steps": 60, "warmup_steps": 0}
LQR_BUDGET |= {"eval_interval": 20, "eval_episodes": 1, "checkpoint_interval": 20}


def task() -> LinearQuadratic:
    return LinearQuadratic.from_env(gym.make(envs.LQR_ID), DISCOUNT)


def test_the_fit_recovers_an_affine_map_exactly():
    lq = task()
    states = lqr_experiment.fit_states(lq)
    assert states.shape == (lqr_experiment.FIT_STATES, 3)
    np.testing.assert_array_equal(states, lqr_experiment.fit_states(lq))  # the same states every time
    intercept = np.array([0.3, -0.2])
    fit = lqr_experiment.fit_affine_policy(states, states @ GAIN.T + intercept)
    np.testing.assert_allclose(fit.gain, GAIN, atol=1e-12)
    np.testing.assert_allclose(fit.intercept, intercept, atol=1e-12)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-12) and fit.residual_rms < 1e-12


def test_the_fit_of_a_tanh_squashed_linear_map_is_steins_average_slope():
    """For Gaussian s, the least-squares slope of f(s) = b·tanh(Ks/b) is E[∇f(s)] (Stein's lemma):
    row i of K times E[sech²(z/b)], z ~ N(0, K_i Σ0 K_iᵀ), by Gauss–Hermite quadrature. With
    b = 0.5 the squashing is strong, so the fit is well away from K and its R² below 1."""
    lq = task()
    bound = 0.5
    states = lqr_experiment.fit_states(lq, count=400_000, seed=1)
    fit = lqr_experiment.fit_affine_policy(states, bound * np.tanh(states @ GAIN.T / bound))
    nodes, weights = np.polynomial.hermite_e.hermegauss(100)  # ∫ f(x) e^{−x²/2} dx
    expected = np.empty_like(GAIN)
    for i, row in enumerate(GAIN):
        scale = math.sqrt(row @ lq.initial_covariance @ row)
        expected[i] = row * np.sum(weights / np.cosh(scale * nodes / bound) ** 2) / math.sqrt(2 * math.pi)
    assert np.abs(expected - GAIN).max() > 0.02
    np.testing.assert_allclose(fit.gain, expected, atol=2e-3)
    np.testing.assert_allclose(fit.intercept, 0.0, atol=2e-3)
    assert 0.9 < fit.r_squared < 0.999


def test_gain_metrics_are_the_closed_forms():
    lq = task()
    optimum = lq.optimal_gain()
    zero = np.zeros((2, 2))
    at_optimum = lqr_experiment.gain_metrics(lq, optimum, variance=np.zeros(2))
    assert at_optimum["gain_error"] == 0.0 and at_optimum["objective_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert at_optimum["objective_ratio_stochastic"] == pytest.approx(1.0, abs=1e-12)
    assert at_optimum["stabilising"] == 1
    assert lqr_experiment.gain_metrics(lq, 1.1 * optimum)["gain_error"] == pytest.approx(0.1, abs=1e-12)

    variance = np.array([0.3, 0.1])
    metrics = lqr_experiment.gain_metrics(lq, GAIN, variance)
    best = lq.objective(optimum, zero)
    assert metrics["gain_error"] == pytest.approx(np.linalg.norm(GAIN - optimum) / np.linalg.norm(optimum))
    assert metrics["objective_ratio"] == pytest.approx(lq.objective(GAIN, zero) / best, rel=1e-12)
    assert metrics["objective_ratio"] > 1.1  # J is negative: a worse gain has a larger ratio
    assert metrics["objective_ratio_stochastic"] == pytest.approx(
        lq.objective(GAIN, np.diag(variance)) / best, rel=1e-12
    )
    # J(K, Σ) − J(K, 0) = −tr(MΣ)/(1 − γ), the cost of the policy's noise.
    noise_cost = np.trace(lq.action_curvature(GAIN) @ np.diag(variance)) / (1 - DISCOUNT)
    assert (metrics["objective_ratio_stochastic"] - metrics["objective_ratio"]) * best == pytest.approx(
        -noise_cost, rel=1e-10
    )

    unstable = np.array([[0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])  # A + BK has eigenvalues near 3.9
    metrics = lqr_experiment.gain_metrics(lq, unstable, variance)
    assert metrics["stabilising"] == 0 and metrics["spectral_radius"] > 1
    assert math.isnan(metrics["objective_ratio"]) and math.isnan(metrics["objective_ratio_stochastic"])


class ClosedFormCritic:
    """A stand-in for the agent's critic (a population of one: states [1, N, n], actions [1, N, m]
    -> q [1, N], g [1, N, m], H [1, N, m, m]) whose action-derivatives are c times the closed forms
    for the policy K, plus a constant error `shift_gradient` [m] on the gradient."""

    def __init__(self, lq, gain, reward_scale, shift_gradient):
        self.lq, self.gain, self.c, self.shift = lq, gain, reward_scale, shift_gradient

    def value_grad_hess(self, states, actions, diagonal=False):
        assert not diagonal
        assert states.shape[0] == actions.shape[0] == 1, (states.shape, actions.shape)
        states, actions = states.numpy()[0].astype(np.float64), actions.numpy()[0].astype(np.float64)
        zero = np.zeros((2, 2))
        q = self.lq.smoothed_q_value(states, actions, self.gain, zero)
        g = self.lq.smoothed_q_gradient(states, actions, self.gain, zero) + self.shift
        h = np.broadcast_to(self.lq.smoothed_q_hessian(self.gain), (len(states), 2, 2))
        return tuple(tf.constant(self.c * x[None], tf.float64) for x in (q, g, h))


def test_critic_metrics_against_a_critic_of_known_error():
    lq = task()
    states = lqr_experiment.fit_states(lq, count=2000)
    means = states @ GAIN.T
    exact = lqr_experiment.critic_metrics(lq, ClosedFormCritic(lq, GAIN, 0.1, 0.0), states, means, GAIN, 0.1)
    # float32 inputs to the critic: the errors are at float32 rounding, not zero.
    assert exact["critic_gradient_error"] < 1e-5 and exact["critic_hessian_error"] < 1e-12
    M = lq.action_curvature(GAIN)
    for i in range(2):
        for j in range(2):
            assert exact[f"critic_hessian_{i}_{j}"] == pytest.approx(-2 * M[i, j], rel=1e-12)
            assert exact[f"hessian_{i}_{j}"] == pytest.approx(-2 * M[i, j], rel=1e-12)
    # A gradient error e shifts the maximiser of the quadratic model by (2M)⁻¹e.
    shift = np.array([0.2, -0.1])
    biased = lqr_experiment.critic_metrics(
        lq, ClosedFormCritic(lq, GAIN, 0.1, shift), states, means, GAIN, 0.1
    )
    expected = np.linalg.norm(np.linalg.solve(2 * M, shift)) / math.sqrt(
        np.mean(np.sum((states @ lq.optimal_gain().T) ** 2, axis=1))
    )
    assert biased["critic_gradient_error"] == pytest.approx(expected, rel=1e-4)
    unstable = lqr_experiment.critic_metrics(lq, None, states, means, 3 * np.eye(2, 3, 1), 0.1)
    assert all(math.isnan(v) for v in unstable.values())


def test_record_keeps_one_row_per_step_and_drops_later_ones(tmp_path):
    for step in (0, 20, 40):
        lqr_experiment.write_row(
            tmp_path, {"step": step, "gain_error": step / 100, "objective_ratio": math.nan}
        )
    lqr_experiment.write_row(tmp_path, {"step": 20, "gain_error": 0.5, "objective_ratio": 1.5})
    rows = lqr_experiment.read_record(tmp_path)
    assert [r["step"] for r in rows] == [0, 20]
    assert rows[1] == {"step": 20, "gain_error": 0.5, "objective_ratio": 1.5} and math.isnan(
        rows[0]["objective_ratio"]
    )


def gain_row(step, gain, **values):
    return {"step": step, **{f"gain_{i}_{j}": v for (i, j), v in np.ndenumerate(gain)}, **values}


def test_late_figures_split_the_gain_error_into_bias_and_fluctuation():
    lq = task()
    optimum = lq.optimal_gain()
    offset = np.array([[0.1, 0.0, -0.05], [0.0, 0.2, 0.0]])
    hessian = lq.smoothed_q_hessian(optimum)
    rows = []
    for k in range(10):
        gain = optimum + (offset if k % 2 else -offset) + 0.03  # ±offset around a bias of 0.03
        errors = lqr_experiment.gain_metrics(lq, gain)
        critic = {f"critic_hessian_{i}_{i}": 0.25 * hessian[i, i] for i in range(2)}
        rows.append(
            gain_row(
                1000 * k, gain, **errors, **critic, **{f"hessian_{i}_{i}": hessian[i, i] for i in range(2)}
            )
        )
    record = lqr_experiment.Record("smoothie", 0, rows)
    np.testing.assert_array_equal(lqr_experiment.fitted_gain(rows[1]), optimum + offset + 0.03)
    late = lqr_experiment.late_figures(record, lq, count=10)
    scale = np.linalg.norm(optimum)
    assert late["gain_error_of_mean"] == pytest.approx(0.03 * math.sqrt(6) / scale, rel=1e-9)
    assert late["fluctuation"] == pytest.approx(np.linalg.norm(offset) / scale, rel=1e-9)
    assert late["mean_gain_error"] == pytest.approx(np.mean([r["gain_error"] for r in rows]))
    np.testing.assert_allclose(late["hessian_ratio"], [0.25, 0.25], rtol=1e-12)


def test_variance_predictions_match_adam_and_gradient_steps_on_the_exact_gradient():
    """Iterate φ ← φ − η·step with the exact φ-gradient e^φ M_ii (the surrogate's) or
    e^φ M_ii / (1 − γ) (J's), by plain steps and by Adam (Keras's defaults), against the
    closed-form rates; and read a known rate back from a record."""
    lq = task()
    hp = small_hparams("lqr_smoothie", LQR_BUDGET, actor_lr=1e-4)
    curvature = np.diag(lq.action_curvature(lq.optimal_gain()))
    steps = 20_000
    predicted = lqr_experiment.variance_predictions(lq, hp, np.array([steps]))
    for name, scale in (("sgd_surrogate", 1.0), ("sgd_objective", 1.0 / (1.0 - DISCOUNT))):
        phi = np.full(2, hp.initial_log_variance)
        for _ in range(steps):
            phi -= hp.actor_lr * np.exp(phi) * curvature * scale
        np.testing.assert_allclose(np.exp(phi), predicted[name][0], rtol=2e-3)
    phi, m, v = np.full(2, hp.initial_log_variance), np.zeros(2), np.zeros(2)
    for t in range(1, steps + 1):
        gradient = np.exp(phi) * curvature / (1.0 - DISCOUNT)
        m, v = 0.9 * m + 0.1 * gradient, 0.999 * v + 0.001 * gradient**2
        phi -= hp.actor_lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-7)
    np.testing.assert_allclose(np.log(predicted["adam"][0]), phi, rtol=0, atol=0.03)  # 2% of its 1.8

    rows = [{"step": t, "variance_0": math.exp(-1 - 3e-5 * t)} for t in range(0, 5000, 1000)]
    assert lqr_experiment.log_variance_rate(lqr_experiment.Record("smoothie", 0, rows), 0) == pytest.approx(
        3e-5
    )


SMALL_NETWORKS = {"actor_hidden": [16], "critic_hidden": [16], "critic_state_embedding": 8}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def lqr(*flags: str, **overrides) -> list[str]:
    """The bin/lqr command with these flags, on the tiny budget with small networks (and overrides)."""
    hparams = {**LQR_BUDGET, **SMALL_NETWORKS, **overrides}
    return [
        sys.executable,
        str(ROOT / "bin" / "lqr"),
        *flags,
        *[f"--hparam={key}={json.dumps(value)}" for key, value in hparams.items()],
    ]


@pytest.fixture(scope="module")
def script_run(tmp_path_factory):
    """bin/lqr on a tiny budget, one seed of each agent: (its JSON report, its directory, its stdout)."""
    directory = tmp_path_factory.mktemp("lqr_script")
    command = lqr("--seeds=1", f"--logdir={directory / 'runs'}", f"--out={directory / 'lqr.png'}")
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), directory, result.stdout


def test_lqr_script_runs_end_to_end_on_a_tiny_budget(script_run):
    report, directory, stdout = script_run
    assert {agent: report["summary"][agent]["seeds"] for agent in ("smoothie", "ddpg")} == {
        "smoothie": 1,
        "ddpg": 1,
    }
    assert (directory / "lqr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for agent in ("smoothie", "ddpg"):
        run = directory / "runs" / agent / "seed0"
        assert (run / "hparams.json").exists() and (run / "policy").exists()
        with open(run / lqr_experiment.RECORD_FILE, newline="") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["step"]) for r in rows] == [0, 20, 40, 60]
        assert report["summary"][agent]["final"][0]["gain_error"] == pytest.approx(
            float(rows[-1]["gain_error"])
        )
        variances = [float(r["variance_0"]) for r in rows]
        assert all(math.isnan(v) for v in variances) == (agent == "ddpg")
        # One line per measured row, the final one included once.
        shown = [
            line.split(":")[0] for line in stdout.splitlines() if line.startswith(f"{agent} seed 0 step")
        ]
        assert shown == [f"{agent} seed 0 step {step}" for step in (0, 20, 40, 60)]


class Stop(Exception):
    pass


def test_run_seed_resumes_exactly_and_reads_a_finished_run_back(tmp_path, script_run):
    """The script's Smoothie run (uninterrupted) against the same run stopped at step 20 (after
    its row), then at step 40 with its row lost (its checkpoint is there): the resumed record is
    the same, row for row."""
    _, directory, _ = script_run
    straight = lqr_experiment.read_record(directory / "runs" / "smoothie" / "seed0")
    assert straight[0]["variance_0"] == pytest.approx(math.exp(-1.0), rel=1e-6)
    assert all(math.isfinite(r["eval_return"]) for r in straight[1:])
    hp = small_hparams("lqr_smoothie", LQR_BUDGET, **SMALL_NETWORKS)

    def stop_at(step):
        def on_row(row):
            if row["step"] == step:
                raise Stop

        return on_row

    with pytest.raises(Stop):
        lqr_experiment.run_seed(hp, 0, tmp_path, on_row=stop_at(20))
    with pytest.raises(Stop):
        lqr_experiment.run_seed(hp, 0, tmp_path, on_row=stop_at(40))
    rows = lqr_experiment.read_record(tmp_path)
    assert [r["step"] for r in rows] == [0, 20, 40]
    lqr_experiment.write_row(tmp_path, rows[1])  # drops the row of step 40
    resumed = lqr_experiment.run_seed(hp, 0, tmp_path)
    np.testing.assert_equal(resumed.rows, straight)  # NaN (step 0's eval_return) equals NaN here

    def no_rows(row):
        raise AssertionError("a finished run is read back, not measured again")

    np.testing.assert_equal(lqr_experiment.run_seed(hp, 0, tmp_path, on_row=no_rows).rows, straight)


def test_lqr_script_refuses_a_bad_override(tmp_path):
    command = [sys.executable, str(ROOT / "bin" / "lqr"), "--hparam=discount=2", f"--logdir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["bin/lqr: error: discount must be in (0, 1], got 2.0"]
    assert not any(tmp_path.iterdir())


def test_lqr_script_checks_every_run_directory_before_training(tmp_path, script_run):
    """ddpg's seed 0 of a new root is not trained when smoothie's seed 0 holds a run of other
    hparams (the fixture's run, 60 steps, against 80 now)."""
    _, directory, _ = script_run
    (tmp_path / "smoothie" / "seed0").mkdir(parents=True)
    saved = (directory / "runs" / "smoothie" / "seed0" / "hparams.json").read_bytes()
    (tmp_path / "smoothie" / "seed0" / "hparams.json").write_bytes(saved)
    flags = ("--seeds=1", "--agents=ddpg,smoothie", f"--logdir={tmp_path}", f"--out={tmp_path / 'lqr.png'}")
    result = subprocess.run(lqr(*flags, total_steps=80), capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"bin/lqr: error: {tmp_path / 'smoothie' / 'seed0'} holds a different run "
        "(hparams.total_steps: saved 60, now 80); choose another --logdir"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoothie"]
