"""Compatible function approximation (supplement B) on the linear-quadratic task, against the
closed forms of smoothie_tf/lqr.py: the critics' action derivatives by finite differences, the
policy gradient formula with the exact critic, the sampled states, returns and derivative targets
by Monte Carlo (5 standard errors of the sample mean, as tests/test_lqr.py), and the fitted
critics' gradients at a fixed seed.
"""

import copy

import gymnasium as gym
import numpy as np
import pytest

from smoothie_tf import compatible, envs
from smoothie_tf.lqr import LinearQuadratic

DISCOUNT = 0.9
# The example policy of tests/test_lqr.py: stabilising, away from the optimum; Σ = diag(0.3, 0.1).
GAIN = np.array([[-0.3, -0.4, 0.1], [0.1, 0.25, -0.35]])
POLICY = compatible.GaussianPolicy(GAIN, np.log([0.3, 0.1]))
NON_COMPATIBLE = compatible.non_compatible_features()


@pytest.fixture(scope="module")
def lq() -> LinearQuadratic:
    return LinearQuadratic.from_env(gym.make(envs.LQR_ID), DISCOUNT)


def true_gradients(lq: LinearQuadratic) -> tuple[np.ndarray, np.ndarray]:
    return (
        lq.objective_gradient_gain(GAIN, POLICY.covariance),
        lq.objective_gradient_log_variance(GAIN, POLICY.log_variance),
    )


def exact_targets(lq: LinearQuadratic, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """∇aQ̃(s, Ks) [N, m] and diag ∇²aQ̃ [N, m] from the closed forms."""
    gradient = lq.smoothed_q_gradient(states, states @ GAIN.T, GAIN, POLICY.covariance)
    return gradient, np.tile(np.diag(lq.smoothed_q_hessian(GAIN)), (len(states), 1))


def assert_within_standard_errors(samples: np.ndarray, expected, count: float = 5.0) -> np.ndarray:
    mean = samples.mean(axis=0)
    standard_error = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
    assert np.all(np.abs(mean - expected) <= count * standard_error), (mean, expected, standard_error)
    return standard_error


@pytest.mark.parametrize("features", [compatible.COMPATIBLE, NON_COMPATIBLE], ids=lambda f: f.name)
def test_critic_action_derivatives_at_the_mean_are_its_features(features):
    rng = np.random.default_rng(0)
    states = rng.standard_normal((4, 3))
    weights = compatible.CriticWeights(rng.standard_normal((2, 3)), rng.standard_normal(2))
    mean, step = states @ GAIN.T, 1e-4

    def value(actions):
        return compatible.critic_action_value(features, weights, POLICY, states, actions)

    unit = np.eye(2) * step
    gradient = np.stack([(value(mean + e) - value(mean - e)) / (2 * step) for e in unit], axis=1)
    curvature = np.stack(
        [(value(mean + e) - 2 * value(mean) + value(mean - e)) / step**2 for e in unit], axis=1
    )
    np.testing.assert_allclose(gradient, features.mean(states) @ weights.mean.T, rtol=1e-8, atol=1e-8)
    expected_curvature = features.curvature(states)[:, None] * POLICY.variance * weights.curvature
    np.testing.assert_allclose(curvature, expected_curvature, rtol=1e-5, atol=1e-5)


def test_compatible_critic_meets_condition_1_of_supplement_b():
    # ∇aQ̃w(s, Ks) = ∇θμ(s)ᵀ w for θ = vec K (row-major), ∇²aQ̃w = ∇φΣᵀ w_Σ on diag Σ.
    rng = np.random.default_rng(1)
    s = rng.standard_normal(3)
    weights = compatible.CriticWeights(rng.standard_normal((2, 3)), rng.standard_normal(2))
    mean_jacobian = np.kron(np.eye(2), s[None, :])  # ∂(Ks)_i / ∂K_jk = δ_ij s_k: [m, m·n]
    np.testing.assert_allclose(
        compatible.COMPATIBLE.mean(s[None])[0] @ weights.mean.T, mean_jacobian @ weights.mean.reshape(-1)
    )
    covariance_jacobian = np.diag(POLICY.variance)  # ∂Σ_ii / ∂φ_j = δ_ij e^φ_i
    np.testing.assert_allclose(
        POLICY.variance * weights.curvature * compatible.COMPATIBLE.curvature(s[None])[0],
        covariance_jacobian.T @ weights.curvature,
    )


def test_the_exact_compatible_critic_gives_the_closed_form_policy_gradient(lq):
    # W = G with ∇aQ̃(s, Ks) = G s (read off the closed form at unit states), w_Σ = diag(−2M) / e^φ.
    G = exact_targets(lq, np.eye(3))[0].T
    w_sigma = np.diag(lq.smoothed_q_hessian(GAIN)) / POLICY.variance
    exact = compatible.CriticWeights(G, w_sigma)
    gain, log_variance = compatible.compatible_policy_gradient(
        exact, lq.state_moment(GAIN, POLICY.covariance), POLICY, DISCOUNT
    )
    true_gain, true_log_variance = true_gradients(lq)
    np.testing.assert_allclose(gain, true_gain, rtol=1e-10)
    np.testing.assert_allclose(log_variance, true_log_variance, rtol=1e-10)

    # Condition 2: least squares on exact derivative targets recovers that critic (the targets lie in
    # its span), and `policy_gradient` with the sampled E_d[s sᵀ] gives the same as W Σ_K up to the
    # sampling of the states.
    states = compatible.discounted_states(lq, POLICY, 100_000, np.random.default_rng(2))[0]
    fitted = compatible.fit_critic(compatible.COMPATIBLE, states, *exact_targets(lq, states), POLICY)
    np.testing.assert_allclose(fitted.mean, G, rtol=1e-9)
    np.testing.assert_allclose(fitted.curvature, w_sigma, rtol=1e-9)
    gain, log_variance = compatible.policy_gradient(compatible.COMPATIBLE, fitted, states, POLICY, DISCOUNT)
    assert compatible.relative_error(gain, true_gain) < 0.02
    np.testing.assert_allclose(log_variance, true_log_variance, rtol=1e-9)

    # The non-compatible critic cannot represent the targets: exact targets still leave its
    # gradient far off (its least squares limit).
    weights = compatible.fit_critic(NON_COMPATIBLE, states, *exact_targets(lq, states), POLICY)
    gain, log_variance = compatible.policy_gradient(NON_COMPATIBLE, weights, states, POLICY, DISCOUNT)
    assert compatible.relative_error(gain, true_gain) > 0.2
    assert compatible.relative_error(log_variance, true_log_variance) > 0.35


def test_the_compatible_gradient_with_sampled_moment_is_the_likelihood_ratio_average(lq):
    # W = T₁ᵀS(SᵀS)⁻¹ times mean(s sᵀ) = mean(target_1 sᵀ): the fitted compatible critic returns
    # exactly the plain Monte Carlo estimate of Theorem 1 on the same samples.
    samples = compatible.sample(lq, POLICY, 2_000, np.random.default_rng(8))
    target_1, target_2 = compatible.hermite_targets(samples, POLICY)
    weights = compatible.fit_critic(compatible.COMPATIBLE, samples.states, target_1, target_2, POLICY)
    gain, log_variance = compatible.policy_gradient(
        compatible.COMPATIBLE, weights, samples.states, POLICY, DISCOUNT
    )
    np.testing.assert_allclose(gain, target_1.T @ samples.states / len(samples) / (1 - DISCOUNT), rtol=1e-9)
    np.testing.assert_allclose(
        log_variance, 0.5 * POLICY.variance * target_2.mean(axis=0) / (1 - DISCOUNT), rtol=1e-9
    )


def test_sampled_states_have_the_discounted_state_moment(lq):
    states, clipped = compatible.discounted_states(lq, POLICY, 100_000, np.random.default_rng(3))
    # E_d[s sᵀ] = (1 − γ) Σ_K.
    products = (states[:, :, None] * states[:, None, :]).reshape(len(states), -1)
    expected = (1 - DISCOUNT) * lq.state_moment(GAIN, POLICY.covariance).reshape(-1)
    standard_error = assert_within_standard_errors(products, expected)
    assert np.all(standard_error < 0.02 * np.abs(expected).max())
    assert clipped == 0


@pytest.fixture(scope="module")
def fixed_state_samples(lq):
    """20 000 rollouts from each of two fixed states."""
    rng = np.random.default_rng(4)
    states = np.repeat(np.array([[0.5, -0.3, 0.8], [-0.4, -0.8, -0.9]]), 20_000, axis=0)
    noise, returns, clipped = compatible.rollout_returns(lq, POLICY, states, rng)
    assert clipped == 0
    return compatible.Samples(states, noise, returns)


def test_returns_are_unbiased_for_q(lq, fixed_state_samples):
    samples = fixed_state_samples
    actions = samples.states @ GAIN.T + np.sqrt(POLICY.variance) * samples.noise
    error = samples.returns - lq.q_value(samples.states, actions, GAIN, POLICY.covariance)
    for rows in np.split(np.arange(len(samples)), 2):
        standard_error = assert_within_standard_errors(error[rows], 0.0)
        assert standard_error < 0.05


def test_hermite_targets_have_the_smoothed_q_derivatives_as_means(lq, fixed_state_samples):
    samples = fixed_state_samples
    baseline = compatible.cross_fitted_baseline(samples.states, samples.returns)
    target_1, target_2 = compatible.hermite_targets(samples, POLICY, baseline)
    gradient, hessian_diagonal = exact_targets(lq, samples.states)
    for rows in np.split(np.arange(len(samples)), 2):
        # Tight enough that the opposite sign, x = Σ^{-1/2}(a − ã), would fail by far.
        standard_error = assert_within_standard_errors(target_1[rows], gradient[rows[0]])
        assert np.all(standard_error < 0.1 * np.linalg.norm(gradient[rows[0]]))
        standard_error = assert_within_standard_errors(target_2[rows], hessian_diagonal[rows[0]])
        assert np.all(standard_error < 0.1 * np.linalg.norm(hessian_diagonal[rows[0]]))


def test_the_baseline_is_cross_fitted_and_leaves_the_targets_means_unchanged(lq):
    samples = compatible.sample(lq, POLICY, 40_000, np.random.default_rng(5))
    baseline = compatible.cross_fitted_baseline(samples.states, samples.returns)
    # b(s_n) does not depend on sample n's own return (so not on its action either) ...
    # (folds alternate: a change to sample 0, in fold 0, moves exactly fold 1's baselines).
    changed = samples.returns.copy()
    changed[0] += 100.0
    moved = np.flatnonzero(compatible.cross_fitted_baseline(samples.states, changed) != baseline)
    np.testing.assert_array_equal(moved, np.arange(1, len(samples), 2))
    # ... hence the targets' means are unchanged: the difference x b(s) / √v (and (x² − 1) b(s) / v)
    # averages to zero within its standard error, and the baseline cuts the targets' variance.
    with_baseline = compatible.hermite_targets(samples, POLICY, baseline)
    without = compatible.hermite_targets(samples, POLICY)
    for plain, reduced in zip(without, with_baseline, strict=True):
        assert_within_standard_errors(plain - reduced, np.zeros(2))
        assert np.all(reduced.var(axis=0) < 0.2 * plain.var(axis=0))


def test_vectorised_dynamics_match_the_env(lq):
    env = gym.make(envs.LQR_ID)
    env.reset(seed=6)
    task = env.unwrapped
    dynamics = compatible._Dynamics(lq, POLICY, task.action_space.high)
    for noise in [np.array([0.4, -1.2]), np.array([30.0, -2.0])]:  # the second action is clipped
        state = task.state.copy()
        action = GAIN @ state + np.sqrt(POLICY.variance) * noise
        rng = copy.deepcopy(task.np_random)  # the env draws its w from this generator next
        next_state, reward = dynamics.step(state[None], noise[None], rng)
        _, env_reward, *_ = env.step(action)
        np.testing.assert_allclose(next_state[0], task.state, rtol=1e-12, atol=1e-12)
        assert reward[0] == pytest.approx(env_reward, rel=1e-12)
    assert dynamics.clipped == 1


def test_the_compatible_critic_converges_and_a_non_compatible_one_stays_biased(lq):
    # 400 000 samples, and the same split into 80 disjoint blocks of 5 000: the compatible critic's
    # error shrinks like 1/√N (expected ratio √80 ≈ 9), the non-compatible one's does not.
    samples = compatible.sample(lq, POLICY, 400_000, np.random.default_rng(7))
    assert samples.clipped == 0  # the linear-Gaussian policy is what acted
    true_gain, true_log_variance = true_gradients(lq)

    def errors(features, rows) -> np.ndarray:
        subset = compatible.Samples(samples.states[rows], samples.noise[rows], samples.returns[rows])
        gain, log_variance = compatible.estimate_gradient(features, subset, POLICY, DISCOUNT)
        return np.array(
            [
                compatible.relative_error(gain, true_gain),
                compatible.relative_error(log_variance, true_log_variance),
            ]
        )

    blocks = np.split(np.arange(len(samples)), 80)
    for features in [compatible.COMPATIBLE, NON_COMPATIBLE]:
        small = np.sqrt(np.mean([errors(features, rows) ** 2 for rows in blocks], axis=0))  # rms, K and φ
        large = errors(features, slice(None))
        print(f"{features.name}: rms error at 5 000 {small}, error at 400 000 {large}")
        if features is compatible.COMPATIBLE:
            # Measured at this seed: 1.3% (K) and 0.6% (φ); the 2% of results/compatible.md.
            assert np.all(large < 0.02) and np.all(large < small / 4)
        else:
            assert np.all(large > 0.2) and np.all(large > small / 4)
