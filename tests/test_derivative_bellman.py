"""The derivative Bellman targets and losses (supplement C, eqs. 6–9, k = 1, 2) against hand
computations, against the closed-form derivatives of a Gaussian-smoothed reward (Monte Carlo),
in a critic fit, and wired into Smoothie's critic update."""

import dataclasses
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_agents import (
    HIGH,
    LOW,
    SMALL,
    S,
    agent_state,
    critic_derivatives_by_autodiff,
    momentum,
    random_batches,
    snapshot,
)

from smoothie_tf import hparams as hparams_lib
from smoothie_tf import losses
from smoothie_tf.agents import SmoothieAgent, make_agent, make_population
from smoothie_tf.networks import SmoothedCritic
from smoothie_tf.optimizers import BETA_1
from smoothie_tf.streams import MemberStreams

# --- hand computations ----------------------------------------------------------------------


def test_targets_and_loss_by_hand():
    replayed = tf.constant([[1.0, 3.0]])
    phantom = tf.constant([[0.0, -1.0]])
    variance = tf.Variable([1.0, 4.0])
    y = tf.Variable([3.0])
    with tf.GradientTape(persistent=True) as tape:
        x = losses.standardised_offsets(replayed, phantom, variance)  # (ã − a)/sqrt(v) = (1, 2)
        target_1 = losses.derivative_bellman_target_1(x, variance, y)
        target_2 = losses.derivative_bellman_target_2(x, variance, y)
        diagonal = losses.derivative_bellman_target_2_diagonal(x, variance, y)
        baseline = losses.baseline_targets(y, tf.constant([1.0]))
    np.testing.assert_allclose(x.numpy(), [[1.0, 2.0]])
    np.testing.assert_allclose(target_1.numpy(), [[3.0, 3.0]])  # (1/1, 2/2)·3
    # Σ^{-1/2}(xxᵀ − I)Σ^{-1/2}·y = diag(1, ½)·[[0, 2], [2, 3]]·diag(1, ½)·3
    np.testing.assert_allclose(target_2.numpy(), [[[0.0, 3.0], [3.0, 2.25]]])
    np.testing.assert_allclose(diagonal.numpy(), [[0.0, 2.25]])  # (x² − 1)/v·y
    np.testing.assert_allclose(baseline.numpy(), [2.0])
    for target in (target_1, target_2, diagonal, baseline):  # held fixed: no gradient to φ or y
        assert tape.gradient(target, [variance, y]) == [None, None]

    grad = tf.constant([[1.0, 1.0], [0.0, 2.0]])
    targets = tf.constant([[3.0, 3.0], [1.0, 0.0]])
    # mean over the batch of ‖·‖²: (4 + 4 + 1 + 4)/2
    assert float(losses.derivative_bellman_loss(grad, targets, action_axes=1)) == pytest.approx(6.5)
    hess = tf.zeros([1, 2, 2])
    assert float(losses.derivative_bellman_loss(hess, target_2, action_axes=2)) == pytest.approx(
        9 + 9 + 2.25**2
    )
    # The Hessian's diagonal is fitted as a vector: ‖(0, 0) − (0, 2.25)‖²
    assert float(losses.derivative_bellman_loss(tf.zeros([1, 2]), diagonal, action_axes=1)) == pytest.approx(
        2.25**2
    )
    with pytest.raises(ValueError, match="action_axes"):
        losses.derivative_bellman_loss(hess, target_2, action_axes=3)


# --- Monte Carlo: the targets' means are the smoothed reward's derivatives ------------------

D = 2
VARIANCE = np.array([0.3, 0.6])  # Σ = diag(v)
ACTION = np.array([0.4, -0.2])  # the fixed phantom action a


class Quadratic:
    """r(ã) = c + bᵀã − ½ãᵀAã. Smoothing adds the constant −½ tr(AΣ): ∇ = b − Aa, ∇² = −A."""

    offset, linear = 3.0, np.array([0.7, -1.1])
    curvature = np.array([[1.5, 0.4], [0.4, 0.8]])

    def reward(self, actions):
        quadratic = np.einsum("bi,ij,bj->b", actions, self.curvature, actions)
        return self.offset + actions @ self.linear - 0.5 * quadratic

    def smoothed(self, a, variance):
        """(value [B], gradient [B, d], Hessian [B, d, d]) of E_{ã~N(a, Σ)} r(ã) at a [B, d]."""
        value = self.reward(a) - 0.5 * np.sum(np.diag(self.curvature) * variance)
        grad = self.linear - a @ self.curvature
        return value, grad, np.broadcast_to(-self.curvature, (len(a), D, D))


class GaussianBumps:
    """r(ã) = Σ_j h_j exp(−½ Σ_i (ã_i − m_ji)²/w_ji). Smoothed, bump j is a Gaussian of variance
    c_j = w_j + v: h_j Π_i sqrt(w_ji/c_ji) exp(−½ Σ_i (a_i − m_ji)²/c_ji), so with u = (a − m_j)/c_j
    its gradient is −f_j u and its Hessian f_j (uuᵀ − diag(1/c_j))."""

    heights = np.array([1.0, -0.6])
    centres = np.array([[0.3, -0.2], [-0.5, 0.6]])
    widths = np.array([[0.5, 0.4], [0.4, 0.6]]) ** 2  # per-axis variances w_j

    def reward(self, actions):
        squared = (actions[:, None, :] - self.centres) ** 2 / self.widths  # [B, bumps, d]
        return np.exp(-0.5 * squared.sum(-1)) @ self.heights

    def smoothed(self, a, variance):
        value, grad, hess = 0.0, 0.0, 0.0
        for height, centre, width in zip(self.heights, self.centres, self.widths, strict=True):
            c = width + variance
            f = height * np.sqrt(np.prod(width / c)) * np.exp(-0.5 * np.sum((a - centre) ** 2 / c, -1))
            u = (a - centre) / c
            value = value + f
            grad = grad - f[:, None] * u
            hess = hess + f[:, None, None] * (u[:, :, None] * u[:, None, :] - np.diag(1 / c))
        return value, grad, hess


PROBLEMS = {"quadratic": Quadratic(), "gaussian_bumps": GaussianBumps()}
SAMPLES = 400_000


def one_step_samples(problem, seed: int = 0):
    """ã ~ N(a, Σ) around the fixed a, and y = r(ã): the targets' inputs, float64."""
    rng = np.random.default_rng(seed)
    replayed = ACTION + np.sqrt(VARIANCE) * rng.normal(size=(SAMPLES, D))
    phantom = np.broadcast_to(ACTION, (SAMPLES, D))
    return tf.constant(replayed), tf.constant(phantom), tf.constant(problem.reward(replayed))


def mean_and_standard_error(samples: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    samples = samples.numpy()
    return samples.mean(0), samples.std(0) / np.sqrt(len(samples))


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_target_means_are_the_smoothed_derivatives_and_the_sign_is_replayed_minus_phantom(name):
    """400k samples; every mean within 5 standard errors (computed from the samples) of the
    closed form. With x = Σ^{-1/2}(a − ã), eq. 9 as printed, the k = 1 mean is −∇ instead."""
    problem = PROBLEMS[name]
    replayed, phantom, y = one_step_samples(problem)
    variance = tf.constant(VARIANCE)
    value, grad, hess = (t[0] for t in problem.smoothed(ACTION[None], VARIANCE))
    y_mean, y_error = mean_and_standard_error(y)
    assert abs(y_mean - value) < 5 * y_error  # the closed forms themselves, at k = 0

    x = losses.standardised_offsets(replayed, phantom, variance)
    mean_1, error_1 = mean_and_standard_error(losses.derivative_bellman_target_1(x, variance, y))
    mean_2, error_2 = mean_and_standard_error(losses.derivative_bellman_target_2(x, variance, y))
    diagonal = losses.derivative_bellman_target_2_diagonal(x, variance, y)
    mean_diagonal, _ = mean_and_standard_error(diagonal)
    assert np.all(np.abs(mean_1 - grad) < 5 * error_1), (mean_1, grad, error_1)
    assert np.all(np.abs(mean_2 - hess) < 5 * error_2), (mean_2, hess, error_2)
    np.testing.assert_allclose(mean_diagonal, np.diag(mean_2), rtol=1e-12)
    # The truths are many standard errors from zero, so the comparisons above have power.
    assert np.all(np.abs(grad) > 10 * error_1) and np.all(np.abs(np.diag(hess)) > 10 * np.diag(error_2))

    wrong_x = losses.standardised_offsets(phantom, replayed, variance)  # Σ^{-1/2}(a − ã)
    wrong_1, wrong_error = mean_and_standard_error(losses.derivative_bellman_target_1(wrong_x, variance, y))
    assert np.all(np.abs(wrong_1 + grad) < 5 * wrong_error), (wrong_1, grad)
    assert np.all(np.abs(wrong_1 - grad) > 20 * wrong_error)


def control_variate_effect(problem, bootstrap: float) -> tuple[dict, dict, dict]:
    """For y = r(ã) + bootstrap (a one-step problem whose next state is worth γQ̃(s', μ(s')) =
    bootstrap) and the baseline Q̃(s, a) = the smoothed value at a (the critic's fixed point):
    per k, the targets' mean with the baseline, its standard error, and Var(with)/Var(without)."""
    replayed, phantom, y = one_step_samples(problem, seed=1)
    y += bootstrap
    value = problem.smoothed(ACTION[None], VARIANCE)[0][0] + bootstrap
    variance = tf.constant(VARIANCE)
    x = losses.standardised_offsets(replayed, phantom, variance)
    baseline = losses.baseline_targets(y, tf.fill([SAMPLES], tf.constant(value, tf.float64)))
    means, errors, ratios = {}, {}, {}
    for k, target in ((1, losses.derivative_bellman_target_1), (2, losses.derivative_bellman_target_2)):
        plain, controlled = target(x, variance, y), target(x, variance, baseline)
        means[k], errors[k] = mean_and_standard_error(controlled)
        ratios[k] = controlled.numpy().var(0) / plain.numpy().var(0)
    return means, errors, ratios


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_control_variate_keeps_the_means_and_lowers_the_variance(name):
    """With a bootstrap of 1: the means with the baseline stay within 5 standard errors of the
    closed forms, and every component's variance falls. Measured Var(with)/Var(without):
    quadratic k = 1 0.11, 0.16; k = 2 0.23–0.40; bumps k = 1 0.08, 0.08; k = 2 0.05–0.12."""
    problem = PROBLEMS[name]
    _, grad, hess = (t[0] for t in problem.smoothed(ACTION[None], VARIANCE))
    means, errors, ratios = control_variate_effect(problem, bootstrap=1.0)
    assert np.all(np.abs(means[1] - grad) < 5 * errors[1]), (means[1], grad)
    assert np.all(np.abs(means[2] - hess) < 5 * errors[2]), (means[2], hess)
    assert np.all(ratios[1] < 0.5) and np.all(ratios[2] < 0.5), ratios


def test_control_variate_can_raise_the_variance_when_y_has_no_constant_part():
    """The bumps' reward alone (mean 0.24 at a, peaks +1 and −0.6) with no bootstrap: the
    baseline is far from the best constant for x·y, and the variance rises (measured ratios
    1.6–4.0) while the means stay right. Why `derivative_bellman_baseline` is an option."""
    problem = PROBLEMS["gaussian_bumps"]
    _, grad, hess = (t[0] for t in problem.smoothed(ACTION[None], VARIANCE))
    means, errors, ratios = control_variate_effect(problem, bootstrap=0.0)
    assert np.all(np.abs(means[1] - grad) < 5 * errors[1]), (means[1], grad)
    assert np.all(np.abs(means[2] - hess) < 5 * errors[2]), (means[2], hess)
    assert np.all(ratios[1] > 1.2) and np.all(ratios[2] > 1.2), ratios


# --- a critic fitted with k = 0 alone or k = 0, 1, 2 ----------------------------------------

FIT_VARIANCE = np.array([0.2, 0.3], np.float32)
FIT_STEPS, FIT_BATCH = 400, 256


def fitted_critic_errors(k1: float, k2: float, seed: int) -> tuple[float, float, float]:
    """RMS errors of a small critic's value, ∇a and ∇²a (Frobenius) against the smoothed
    Gaussian bumps on a 9 × 9 grid over [−1, 1]², after FIT_STEPS Adam steps on
    Huber(Q̃w(a) − y) + k1·loss_1 + k2·loss_2 with phantom actions a = ã + sqrt(v)·ε and replayed
    actions ã uniform on [−2.5, 2.5]² (a flat behaviour density, the grid 3σ from its edges)."""
    bumps = PROBLEMS["gaussian_bumps"]
    critic = SmoothedCritic(D, state_embedding=4, hidden=(32,), initial_seeds=[seed])
    critic(tf.zeros([1, 1]), tf.zeros([1, D]))
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(critic.trainable_variables)
    generator = tf.random.Generator.from_seed(seed)
    variance = tf.constant(FIT_VARIANCE)
    heights, centres, widths = (
        tf.constant(t, tf.float32) for t in (bumps.heights, bumps.centres, bumps.widths)
    )
    states = tf.zeros([FIT_BATCH, 1])

    @tf.function(jit_compile=True)
    def step():
        replayed = generator.uniform([FIT_BATCH, D], -2.5, 2.5)
        squared = tf.square(replayed[:, None, :] - centres) / widths
        y = tf.linalg.matvec(tf.exp(-0.5 * tf.reduce_sum(squared, -1)), heights)
        phantom = losses.phantom_actions(replayed, variance, generator.normal([FIT_BATCH, D]))
        x = losses.standardised_offsets(replayed, phantom, variance)
        with tf.GradientTape() as tape:
            q, g, h = critic.value_grad_hess(states, phantom)
            loss = losses.critic_loss(q, y, 1.0)
            if k1 > 0:
                loss += k1 * losses.derivative_bellman_loss(
                    g, losses.derivative_bellman_target_1(x, variance, y), action_axes=1
                )
            if k2 > 0:
                loss += k2 * losses.derivative_bellman_loss(
                    h, losses.derivative_bellman_target_2(x, variance, y), action_axes=2
                )
        gradients, _ = tf.clip_by_global_norm(tape.gradient(loss, critic.trainable_variables), 4.0)
        optimizer.apply(gradients, critic.trainable_variables)

    for _ in range(FIT_STEPS):
        step()
    assert int(optimizer.iterations.numpy()) == FIT_STEPS
    axis = np.linspace(-1.0, 1.0, 9)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, D)
    q, g, h = critic.value_grad_hess(np.zeros((len(grid), 1), np.float32), grid.astype(np.float32))
    value, grad, hess = bumps.smoothed(grid, FIT_VARIANCE.astype(np.float64))

    def rms(error):
        return float(np.sqrt(np.mean(np.sum(np.reshape(error, (len(grid), -1)) ** 2, -1))))

    return rms(q.numpy() - value), rms(g.numpy() - grad), rms(h.numpy() - hess)


@pytest.mark.parametrize("seed", [0, 1])
def test_derivative_losses_fit_the_smoothed_derivatives_better(seed):
    """Same critic, seed and number of updates (400). Measured RMS errors (value, ∇, ∇²; the
    truths' RMS are 0.34 for ∇ and 0.81 for ∇²), seeds 0 and 1: k = 0 alone (0.081, 0.208, 0.578)
    and (0.101, 0.250, 0.673); k = 0, 1, 2 with k1 = 1, k2 = 0.1 (0.067, 0.102, 0.229) and
    (0.068, 0.127, 0.333), ratios 0.40–0.51 (0.60 at worst over seeds 0–7; the value's error falls
    too, by 0.64–0.82). Asserted: < 0.6."""
    value_0, grad_0, hess_0 = fitted_critic_errors(0.0, 0.0, seed)
    value_012, grad_012, hess_012 = fitted_critic_errors(1.0, 0.1, seed)
    assert grad_012 < 0.6 * grad_0, (grad_012, grad_0)
    assert hess_012 < 0.6 * hess_0, (hess_012, hess_0)
    assert value_012 < value_0, (value_012, value_0)


# --- in Smoothie's critic update ------------------------------------------------------------

SWITCHES = {
    "derivative_bellman_k1": 0.0,
    "derivative_bellman_k2": 0.0,
    "derivative_bellman_diagonal": True,
    "derivative_bellman_baseline": True,
}


def test_the_options_reach_the_agent_from_the_hparams():
    """Through `make_population`, as the training loop (`bin/train`) builds agents, and
    `make_agent`, as evaluation does; in a population, each member's own weights."""
    options = {**SWITCHES, "derivative_bellman_k1": 0.5, "derivative_bellman_k2": 0.25}
    networks = {"actor_hidden": [8], "critic_state_embedding": 4, "critic_hidden": [8]}
    hp = dataclasses.replace(hparams_lib.HParams(), **networks, **options)
    space = types.SimpleNamespace(low=LOW, high=HIGH)
    for agent in (make_population([hp], S, space, seeds=[0]), make_agent(hp, S, space, seed=0)):
        assert {key: getattr(agent.config, key) for key in options} == options
        assert agent.fits_action_derivatives
    other = dataclasses.replace(hp, derivative_bellman_k1=0.0, derivative_bellman_baseline=False)
    population = make_population([hp, other], S, space, seeds=[0, 1])
    assert [config.derivative_bellman_k1 for config in population.configs] == [0.5, 0.0]
    np.testing.assert_array_equal(population.member_values["derivative_bellman_k1"], [0.5, 0.0])
    np.testing.assert_array_equal(population.member_values["derivative_bellman_baseline"], [1.0, 0.0])


def test_with_k1_k2_zero_the_step_is_the_default_one_and_with_them_it_is_not():
    """The switches without weights change nothing, bit for bit; weights > 0 change the critic."""
    batches = random_batches(3, seed=20)
    default = SmoothieAgent(S, LOW, HIGH, seed=4, **SMALL)
    switched = SmoothieAgent(S, LOW, HIGH, seed=4, **SMALL, **SWITCHES)
    weighted = SmoothieAgent(
        S, LOW, HIGH, seed=4, **SMALL, derivative_bellman_k1=1.0, derivative_bellman_k2=0.1
    )
    assert not switched.fits_action_derivatives and weighted.fits_action_derivatives
    for batch in batches:
        default_metrics = default.train_step(batch)
        switched_metrics = switched.train_step(batch)
        weighted_metrics = weighted.train_step(batch)
        assert default_metrics.keys() == switched_metrics.keys()
        for key in default_metrics:
            np.testing.assert_array_equal(default_metrics[key], switched_metrics[key], err_msg=key)
    for a, b in zip(agent_state(default), agent_state(switched), strict=True):
        np.testing.assert_array_equal(a, b)
    assert "loss/derivative_bellman_k1" not in default_metrics
    assert set(weighted_metrics) == set(default_metrics) | {
        "loss/derivative_bellman_k1",
        "loss/derivative_bellman_k2",
    }
    assert all(np.all(np.isfinite(value.numpy())) for value in weighted_metrics.values())
    # Same seed, same batches and noise: the derivative losses alone move the critic elsewhere.
    pairs = zip(snapshot(default.critic.variables), snapshot(weighted.critic.variables), strict=True)
    moved = [np.max(np.abs(a - b)) for a, b in pairs]
    assert min(moved) > 0 and max(moved) > 1e-4, moved


@pytest.mark.parametrize(
    "k1, k2, diagonal, baseline",
    [(1.0, 0.1, False, False), (0.5, 0.2, True, True), (1.0, 0.0, False, True), (0.0, 0.3, False, True)],
)
def test_agent_critic_step_applies_the_derivative_bellman_gradient(k1, k2, diagonal, baseline):
    """The agent's losses and clipped gradient, recomputed apart: the same phantom noise (the next
    draw of a copy of the training stream), y from the target networks, ∇a and ∇²a by autodiff,
    the targets written out with NumPy."""
    options = {
        "derivative_bellman_k1": k1,
        "derivative_bellman_k2": k2,
        "derivative_bellman_diagonal": diagonal,
        "derivative_bellman_baseline": baseline,
    }
    agent = SmoothieAgent(S, LOW, HIGH, seed=5, reward_scale=1.0, **SMALL, **options)
    agent.policy.log_variance.assign([[-0.5, -1.5]])  # [P = 1, d]
    batch = random_batches(1, seed=21)[0]
    copy = MemberStreams([0], name="copy")
    copy.keys.assign(agent.training_streams.keys)
    copy.counters.assign(agent.training_streams.counters)
    noise = copy.normal([SMALL["batch_size"], D]).numpy()[0]

    variance = np.exp(agent.policy.log_variance.numpy()[0].astype(np.float64))
    phantom = (batch.actions + np.sqrt(variance) * noise).astype(np.float32)
    x = (batch.actions - phantom) / np.sqrt(variance)
    c, gamma, delta = agent.config.reward_scale, agent.config.discount, agent.config.huber_delta
    next_observations = batch.next_observations[None]  # one member: [1, B, S]
    next_q = agent.target_critic(next_observations, agent.target_policy(next_observations))[0]
    y = c * batch.rewards + gamma * (1 - batch.terminated) * next_q.numpy()
    variables = agent.critic.trainable_variables
    with tf.GradientTape() as tape:
        q, grad, hess = critic_derivatives_by_autodiff(
            agent.critic, tf.constant(batch.observations), tf.constant(phantom, tf.float32)
        )
        error = q - y
        huber = tf.reduce_mean(
            tf.where(tf.abs(error) <= delta, 0.5 * error**2, delta * (tf.abs(error) - 0.5 * delta))
        )
        scale = y - q.numpy() if baseline else y
        target_1 = (x / np.sqrt(variance) * scale[:, None]).astype(np.float32)
        outer = x[:, :, None] * x[:, None, :] - np.eye(D)
        target_2 = outer / np.sqrt(variance[:, None] * variance[None, :]) * scale[:, None, None]
        target_2 = target_2.astype(np.float32)
        if diagonal:
            hess, target_2 = tf.linalg.diag_part(hess), np.diagonal(target_2, axis1=1, axis2=2)
        loss_1 = tf.reduce_mean(tf.reduce_sum(tf.square(grad - target_1), -1))
        loss_2 = tf.reduce_mean(tf.reduce_sum(tf.reshape(tf.square(hess - target_2), [len(y), -1]), -1))
        total = huber + k1 * loss_1 + k2 * loss_2
    grads = [g.numpy() for g in tape.gradient(total, variables)]
    norm = np.sqrt(sum(np.sum(g**2) for g in grads))
    m_before = [momentum(agent.critic_optimizer, v) for v in variables]

    metrics = agent.train_step(batch)
    assert float(metrics["loss/critic"]) == pytest.approx(float(huber), rel=1e-4)
    assert ("loss/derivative_bellman_k1" in metrics) == (k1 > 0)
    assert ("loss/derivative_bellman_k2" in metrics) == (k2 > 0)
    if k1 > 0:
        assert float(metrics["loss/derivative_bellman_k1"]) == pytest.approx(float(loss_1), rel=1e-4)
    if k2 > 0:
        assert float(metrics["loss/derivative_bellman_k2"]) == pytest.approx(float(loss_2), rel=1e-4)
    assert float(metrics["grad_norm/critic"]) == pytest.approx(norm, rel=1e-3)
    clip = min(1.0, agent.config.grad_clip / norm)
    for v, old, g in zip(variables, m_before, grads, strict=True):
        applied = (momentum(agent.critic_optimizer, v) - BETA_1 * old) / (1 - BETA_1)
        np.testing.assert_allclose(applied, g * clip, rtol=2e-3, atol=1e-5 * norm)
