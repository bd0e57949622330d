"""The linear-quadratic closed forms against independent truths: Monte Carlo rollouts of the
env (and of its dynamics, vectorised), finite differences, and policy iteration.

Monte Carlo checks allow 5 standard errors of the sample mean (SE = sample std / sqrt(N));
rollouts stop after T steps with γ^T·|V| far below that. Finite differences are central.
"""

import gymnasium as gym
import numpy as np
import pytest

from smoothie_tf import envs
from smoothie_tf.envs import make_env
from smoothie_tf.lqr import LinearQuadratic

DISCOUNT = 0.9
HORIZON = 300  # 0.9^300 ≈ 2e-14
# A stabilising gain well away from the optimum, and a diagonal policy covariance.
GAIN = np.array([[-0.3, -0.4, 0.1], [0.1, 0.25, -0.35]])
SIGMA = np.diag([0.3, 0.1])


def task(discount: float = DISCOUNT, **matrices) -> LinearQuadratic:
    return LinearQuadratic.from_env(gym.make(envs.LQR_ID, **matrices), discount)


def assert_within_standard_errors(samples: np.ndarray, expected, count: float = 5.0):
    """The mean of `samples` [N, ...] is within `count` standard errors of `expected` [...]."""
    mean = samples.mean(axis=0)
    standard_error = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
    assert np.all(np.abs(mean - expected) <= count * standard_error), (mean, expected, standard_error)
    return standard_error


def rollouts(lq, K, Sigma, states, rng, first_actions=None, first_noise=True, steps=HORIZON, moments=False):
    """Vectorised episodes of s' = As + Ba + w from `states` [N, n]: the first action is
    `first_actions` [N, m] (plus ε ~ N(0, Σ) if first_noise) or else K s + ε, later ones K s + ε.
    Returns per episode Σγ^t r_t [N]; with `moments`, also Σγ^t s_t s_tᵀ [N, n, n] and
    Σγ^t ∇aQ̃(s_t, K s_t) s_tᵀ [N, m, n]."""
    n, m = lq.state_dim, lq.action_dim
    policy_factor, noise_factor = np.linalg.cholesky(Sigma), np.linalg.cholesky(lq.W)
    returns = np.zeros(len(states))
    moment = np.zeros((len(states), n, n))
    gain_gradient = np.zeros((len(states), m, n))
    s = states
    for t in range(steps):
        weight = lq.discount**t
        mean = s @ K.T if t > 0 or first_actions is None else first_actions
        a = mean + rng.standard_normal((len(s), m)) @ policy_factor.T if t > 0 or first_noise else mean
        returns -= weight * (np.einsum("bi,ij,bj->b", s, lq.Q, s) + np.einsum("bi,ij,bj->b", a, lq.R, a))
        if moments:
            moment += weight * s[:, :, None] * s[:, None, :]
            q_gradient = lq.smoothed_q_gradient(s, s @ K.T, K, Sigma)
            gain_gradient += weight * q_gradient[:, :, None] * s[:, None, :]
        s = s @ lq.A.T + a @ lq.B.T + rng.standard_normal((len(s), n)) @ noise_factor.T
    return (returns, moment, gain_gradient) if moments else returns


def test_the_example_policy_is_stabilising_and_not_optimal():
    lq = task()
    assert lq.is_stabilising(GAIN) and 0.8 < lq.spectral_radius(GAIN) < 1.0
    assert np.abs(GAIN - lq.optimal_gain()).max() > 0.2
    assert lq.objective(GAIN, 0 * SIGMA) < lq.objective(lq.optimal_gain(), 0 * SIGMA) - 0.4


def test_objective_and_state_moment_match_rollouts_of_the_env():
    """J(K, Σ) and Σ_K = Σ_t γ^t E[s_t s_tᵀ] from 400 episodes of the registered env itself
    (truncated at 200 steps: γ^200 ≈ 7e-10 leaves a bias of order 1e-8)."""
    lq = task()
    env = make_env(envs.LQR_ID)
    rng = np.random.default_rng(0)
    returns, moments = [], []
    largest_action = 0.0
    for episode in range(400):
        observation, _ = env.reset(seed=episode)
        policy_noise = rng.standard_normal((200, 2)) @ np.linalg.cholesky(SIGMA).T
        total, moment, truncated, t = 0.0, np.zeros((3, 3)), False, 0
        while not truncated:
            s = observation.astype(np.float64)
            action = GAIN @ s + policy_noise[t]
            largest_action = max(largest_action, np.max(np.abs(action)))
            moment += DISCOUNT**t * np.outer(s, s)
            observation, reward, terminated, truncated, _ = env.step(action.astype(np.float32))
            assert not terminated
            total += DISCOUNT**t * reward
            t += 1
        assert t == 200
        returns.append(total)
        moments.append(moment)
    assert largest_action < envs.LQR_ACTION_BOUND  # never clipped, so the env follows the formula
    standard_error = assert_within_standard_errors(np.array(returns), lq.objective(GAIN, SIGMA))
    assert standard_error < 0.05 * abs(lq.objective(GAIN, SIGMA) - lq.objective(GAIN, 0 * SIGMA))
    assert_within_standard_errors(np.array(moments), lq.state_moment(GAIN, SIGMA))


STATES = np.array([[0.5, -0.3, 0.8], [-1.0, 0.6, 0.2]])
ACTIONS = np.array([[0.4, -0.7], [1.2, 0.3]])


@pytest.mark.parametrize("index", range(len(STATES)))
def test_value_and_action_values_match_vectorised_rollouts(index):
    """V(s), Qπ(s, a) and Q̃π(s, a) from 20000 episodes each that start at s; the first action
    is K s + ε, a, and a + ε respectively."""
    lq = task()
    rng = np.random.default_rng(index)
    episodes = 20_000
    s = np.repeat(STATES[index : index + 1], episodes, axis=0)
    a = np.repeat(ACTIONS[index : index + 1], episodes, axis=0)
    value = rollouts(lq, GAIN, SIGMA, s, rng)
    q = rollouts(lq, GAIN, SIGMA, s, rng, first_actions=a, first_noise=False)
    smoothed_q = rollouts(lq, GAIN, SIGMA, s, rng, first_actions=a, first_noise=True)
    expected_value = lq.value(STATES[index : index + 1], GAIN, SIGMA)[0]
    expected_q = lq.q_value(STATES[index : index + 1], ACTIONS[index : index + 1], GAIN, SIGMA)[0]
    expected_smoothed = lq.smoothed_q_value(
        STATES[index : index + 1], ACTIONS[index : index + 1], GAIN, SIGMA
    )[0]
    assert_within_standard_errors(value, expected_value)
    standard_error = assert_within_standard_errors(q, expected_q)
    assert_within_standard_errors(smoothed_q, expected_smoothed)
    # Q and Q̃ differ by tr(MΣ), which these samples resolve.
    assert expected_q - expected_smoothed > 10 * standard_error


def one_step_lookahead(lq, K, Sigma, s, actions, rng):
    """r(s, a) + γ V(As + Ba + w) [N] for sampled w ~ N(0, W), the first half of the samples
    (a, w) antithetic to the second; [n], [N, m] → [N / 2] pair averages."""
    half = len(actions) // 2
    w = rng.standard_normal((half, lq.state_dim)) @ np.linalg.cholesky(lq.W).T
    w = np.concatenate([w, -w])
    rewards = -(s @ lq.Q @ s) - np.einsum("bi,ij,bj->b", actions, lq.R, actions)
    targets = rewards + lq.discount * lq.value(s @ lq.A.T + actions @ lq.B.T + w, K, Sigma)
    return 0.5 * (targets[:half] + targets[half:])


@pytest.mark.parametrize("index", range(len(STATES)))
def test_action_values_satisfy_the_bellman_equation_of_the_value(index):
    """Qπ(s, a) = r(s, a) + γ E_w V(s') and Q̃π(s, a) = E_{ã~N(a, Σ)} [r(s, ã) + γ E_w V(s')],
    with V (checked by rollouts above) and 400000 antithetic samples: their standard error is
    below 1% of the dynamics-noise term γ tr(PW) ≈ 0.09, which the rollouts cannot resolve."""
    lq = task()
    rng = np.random.default_rng(10 + index)
    s, a, samples = STATES[index], ACTIONS[index], 400_000
    q = one_step_lookahead(lq, GAIN, SIGMA, s, np.repeat(a[None], samples, axis=0), rng)
    standard_error = assert_within_standard_errors(q, lq.q_value(s[None], a[None], GAIN, SIGMA)[0])
    assert standard_error < 0.01 * lq.discount * np.trace(lq.value_matrix(GAIN) @ lq.W)
    epsilon = rng.standard_normal((samples // 2, 2)) @ np.linalg.cholesky(SIGMA).T
    perturbed = a + np.concatenate([epsilon, -epsilon])
    smoothed_q = one_step_lookahead(lq, GAIN, SIGMA, s, perturbed, rng)
    assert_within_standard_errors(smoothed_q, lq.smoothed_q_value(s[None], a[None], GAIN, SIGMA)[0])


def test_smoothed_q_value_is_the_gaussian_average_of_q_value():
    lq = task()
    rng = np.random.default_rng(3)
    samples = 200_000
    for s, a in zip(STATES, ACTIONS, strict=True):
        perturbed = a + rng.standard_normal((samples, 2)) @ np.linalg.cholesky(SIGMA).T
        q = lq.q_value(np.repeat(s[None], samples, axis=0), perturbed, GAIN, SIGMA)
        assert_within_standard_errors(q, lq.smoothed_q_value(s[None], a[None], GAIN, SIGMA)[0])


def test_smoothed_q_derivatives_match_finite_differences():
    lq = task()
    step = 1e-3

    def smoothed_q(s, a):
        return lq.smoothed_q_value(s[None], a[None], GAIN, SIGMA)[0]

    for s, a in zip(STATES, ACTIONS, strict=True):
        eye = np.eye(2)
        gradient = [(smoothed_q(s, a + step * e) - smoothed_q(s, a - step * e)) / (2 * step) for e in eye]
        hessian = [
            [
                (
                    smoothed_q(s, a + step * (e + f))
                    - smoothed_q(s, a + step * (e - f))
                    - smoothed_q(s, a - step * (e - f))
                    + smoothed_q(s, a - step * (e + f))
                )
                / (4 * step**2)
                for f in eye
            ]
            for e in eye
        ]
        np.testing.assert_allclose(
            lq.smoothed_q_gradient(s[None], a[None], GAIN, SIGMA)[0], gradient, rtol=1e-7
        )
        np.testing.assert_allclose(lq.smoothed_q_hessian(GAIN), hessian, rtol=1e-6)


def central_difference(function, point: np.ndarray, direction: np.ndarray, step: float = 1e-5) -> float:
    return (function(point + step * direction) - function(point - step * direction)) / (2 * step)


def basis(shape):
    for index in np.ndindex(*shape):
        direction = np.zeros(shape)
        direction[index] = 1.0
        yield index, direction


def covariance_gradient_by_differences(lq, K, Sigma) -> np.ndarray:
    """∂J/∂Σ_ij [m, m] by central differences of J, which is linear in Σ: along the symmetric
    direction E_ij + E_ji, the derivative is 2·∂J/∂Σ_ij off the diagonal."""
    gradient = np.zeros_like(Sigma)
    for (i, j), direction in basis(Sigma.shape):
        symmetric = direction + direction.T
        gradient[i, j] = central_difference(lambda S: lq.objective(K, S), Sigma, symmetric) / 2
    return gradient


@pytest.mark.parametrize("discount", [0.9, 0.99])
def test_objective_gradients_match_finite_differences(discount):
    lq = task(discount)
    gradient = lq.objective_gradient_gain(GAIN, SIGMA)
    for index, direction in basis(GAIN.shape):
        difference = central_difference(lambda K: lq.objective(K, SIGMA), GAIN, direction)
        assert gradient[index] == pytest.approx(difference, rel=1e-6, abs=1e-7)
    np.testing.assert_allclose(
        lq.objective_gradient_covariance(GAIN), covariance_gradient_by_differences(lq, GAIN, SIGMA), rtol=1e-7
    )
    log_variance = np.log(np.diag(SIGMA))
    gradient = lq.objective_gradient_log_variance(GAIN, log_variance)
    for (i,), direction in basis(log_variance.shape):
        difference = central_difference(
            lambda phi: lq.objective(GAIN, np.diag(np.exp(phi))), log_variance, direction
        )
        assert gradient[i] == pytest.approx(difference, rel=1e-7)


def propagated_moments(lq, K, Sigma, mean, covariance, first_action=None, steps=HORIZON):
    """Σ_t γ^t E[r_t] and Σ_t γ^t E[s_t s_tᵀ] by carrying the state's Gaussian mean and covariance
    forward step by step (s' = (A + BK)s + Bε + w, or A s + B a for a first action a given), with
    no closed form: an exact check of V, Qπ, J and Σ_K, sharper than any rollout."""
    total, moment = 0.0, np.zeros_like(covariance)
    for t in range(steps):
        second = covariance + np.outer(mean, mean)
        if t == 0 and first_action is not None:
            reward = -np.trace(lq.Q @ second) - first_action @ lq.R @ first_action
            mean, covariance = lq.A @ mean + lq.B @ first_action, lq.A @ covariance @ lq.A.T + lq.W
        else:
            reward = -np.trace((lq.Q + K.T @ lq.R @ K) @ second) - np.trace(lq.R @ Sigma)
            A_K = lq.A + lq.B @ K
            mean, covariance = A_K @ mean, A_K @ covariance @ A_K.T + lq.B @ Sigma @ lq.B.T + lq.W
        total += lq.discount**t * reward
        moment += lq.discount**t * second
    return total, moment


def test_value_objective_and_state_moment_match_propagated_moments():
    """J, Σ_K, V(s) and Qπ(s, a) against the step-by-step Gaussian propagation (0.9^300 ≈ 2e-14):
    unlike the rollouts, this resolves the noise term γ·tr(PW) of c (about 0.1) to 1e-9."""
    lq = task()
    n = lq.state_dim
    total, moment = propagated_moments(lq, GAIN, SIGMA, np.zeros(n), lq.initial_covariance)
    assert lq.objective(GAIN, SIGMA) == pytest.approx(total, rel=1e-10)
    np.testing.assert_allclose(lq.state_moment(GAIN, SIGMA), moment, rtol=1e-10)
    for s, a in zip(STATES, ACTIONS, strict=True):
        value, _ = propagated_moments(lq, GAIN, SIGMA, s, np.zeros((n, n)))
        assert lq.value(s[None], GAIN, SIGMA)[0] == pytest.approx(value, rel=1e-10)
        q, _ = propagated_moments(lq, GAIN, SIGMA, s, np.zeros((n, n)), first_action=a)
        assert lq.q_value(s[None], a[None], GAIN, SIGMA)[0] == pytest.approx(q, rel=1e-10)
    assert np.trace(lq.value_matrix(GAIN) @ lq.W) * DISCOUNT > 0.05  # the term this test resolves


def test_the_test_rollouts_step_like_the_env():
    """The dynamics and reward that `rollouts` vectorises (s' = A s + B a + w, r = −(sᵀQs + aᵀRa),
    on the env's matrices) against env.step: with the env's own noise draws they give the same
    rewards and states, to float64 rounding."""
    env = gym.make(envs.LQR_ID).unwrapped
    lq = LinearQuadratic.from_env(env, DISCOUNT)
    env.reset(seed=3)
    start = env.state.copy()
    actions = np.random.default_rng(4).normal(size=(20, lq.action_dim))
    expected = 0.0
    for t, a in enumerate(actions):
        _, reward, *_ = env.step(a)
        expected += DISCOUNT**t * reward
    env.reset(seed=3)  # the same s0 and noise stream for the replay through `rollouts`
    noise = []
    for a in actions:  # recover the env's noise draws w_t = s_{t+1} − A s_t − B a_t
        before = env.state.copy()
        env.step(a)
        noise.append(env.state - lq.A @ before - lq.B @ a)
    total, s = 0.0, start
    for t, a in enumerate(actions):
        total += DISCOUNT**t * -(s @ lq.Q @ s + a @ lq.R @ a)
        s = lq.A @ s + lq.B @ a + noise[t]
    assert total == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(s, env.state, rtol=1e-12, atol=1e-12)


def test_theorem_1_for_the_objective():
    """½ Σ_t γ^t E[∇²aQ̃(s_t, a_t)], summed over 500 steps (γ^500 ≈ 1e-23; the Hessian is the
    same at every visited pair), is ∇_Σ J by its closed form and by finite differences of J.
    The Hessian is constant here, so the sum is an identity of the closed forms; the version with
    sampled states, ½ e^φ · Σ_t γ^t E[Hermite target_2] against ∇_φ J, is in test_compatible.py."""
    lq = task()
    half_hessian_sum = sum(0.5 * DISCOUNT**t * lq.smoothed_q_hessian(GAIN) for t in range(500))
    np.testing.assert_allclose(half_hessian_sum, lq.objective_gradient_covariance(GAIN), rtol=1e-12)
    np.testing.assert_allclose(
        half_hessian_sum, covariance_gradient_by_differences(lq, GAIN, SIGMA), rtol=1e-7
    )


def test_state_moment_and_gain_gradient_match_rollouts_at_a_long_discount():
    """At γ = 0.97 (horizon 1000, γ^1000 ≈ 6e-14): Σ_K = Σ_t γ^t E[s_t s_tᵀ] and the
    deterministic policy gradient Σ_t γ^t E[∇aQ̃(s_t, K s_t) s_tᵀ] = ∇_K J, from 4000 episodes."""
    lq = task(0.97)
    rng = np.random.default_rng(5)
    states = rng.standard_normal((4000, 3)) @ np.linalg.cholesky(lq.initial_covariance).T
    _, moment, gain_gradient = rollouts(lq, GAIN, SIGMA, states, rng, steps=1000, moments=True)
    assert_within_standard_errors(moment, lq.state_moment(GAIN, SIGMA))
    standard_error = assert_within_standard_errors(gain_gradient, lq.objective_gradient_gain(GAIN, SIGMA))
    assert np.all(np.abs(lq.objective_gradient_gain(GAIN, SIGMA)) > 10 * standard_error)


@pytest.mark.parametrize("discount", [0.9, 0.99])
def test_optimum_is_the_riccati_fixed_point_and_a_maximum(discount):
    lq = task(discount)
    P, K = lq.optimal_value_matrix(), lq.optimal_gain()
    A, B, Q, R, gamma = lq.A, lq.B, lq.Q, lq.R, discount
    riccati = (
        Q
        + gamma * A.T @ P @ A
        - gamma**2 * A.T @ P @ B @ np.linalg.solve(R + gamma * B.T @ P @ B, B.T @ P @ A)
    )
    np.testing.assert_allclose(riccati, P, rtol=1e-11, atol=1e-11 * np.abs(P).max())
    np.testing.assert_allclose(K, -gamma * np.linalg.solve(R + gamma * B.T @ P @ B, B.T @ P @ A), rtol=1e-12)
    np.testing.assert_allclose(lq.value_matrix(K), P, rtol=1e-9)
    assert np.abs(lq.objective_gradient_gain(K, np.zeros((2, 2)))).max() < 1e-8
    rng = np.random.default_rng(6)
    sigma = np.diag([0.2, 0.05])
    best = lq.objective(K, sigma)
    checked = 0
    for _ in range(30):
        perturbed = K + rng.normal(scale=rng.choice([0.01, 0.1, 0.3]), size=K.shape)
        if lq.is_stabilising(perturbed):
            assert lq.objective(perturbed, sigma) < best
            checked += 1
    assert checked >= 20
    assert lq.objective(K, 0 * sigma) > best  # Σ* = 0


@pytest.mark.parametrize("discount", [0.9, 0.99])
def test_optimal_gain_agrees_with_policy_iteration(discount):
    lq = task(discount)
    K = np.zeros((2, 3))  # stabilising: sqrt(γ)·ρ(A) = sqrt(γ) < 1
    for _ in range(50):
        P = lq.value_matrix(K)
        improved = -discount * np.linalg.solve(lq.R + discount * lq.B.T @ P @ lq.B, lq.B.T @ P @ lq.A)
        if np.abs(improved - K).max() < 1e-14:
            break
        K = improved
    np.testing.assert_allclose(lq.optimal_gain(), K, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(lq.optimal_value_matrix(), lq.value_matrix(K), rtol=1e-9)


def test_non_stabilising_gains_are_refused():
    lq = task()
    K = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # A + BK has eigenvalues beyond 1/sqrt(0.9)
    assert not lq.is_stabilising(K) and lq.spectral_radius(K) > 1
    calls = [
        lambda: lq.value_matrix(K),
        lambda: lq.action_curvature(K),
        lambda: lq.value_constant(K, SIGMA),
        lambda: lq.value(STATES, K, SIGMA),
        lambda: lq.q_value(STATES, ACTIONS, K, SIGMA),
        lambda: lq.smoothed_q_value(STATES, ACTIONS, K, SIGMA),
        lambda: lq.smoothed_q_gradient(STATES, ACTIONS, K, SIGMA),
        lambda: lq.smoothed_q_hessian(K),
        lambda: lq.objective(K, SIGMA),
        lambda: lq.state_moment(K, SIGMA),
        lambda: lq.objective_gradient_gain(K, SIGMA),
        lambda: lq.objective_gradient_covariance(K),
        lambda: lq.objective_gradient_log_variance(K, np.zeros(2)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="not stabilising"):
            call()
    unstable = task(A=[[1.2, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]])  # sqrt(0.9)·1.2 ≈ 1.14
    assert not unstable.is_stabilising(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"sqrt\(γ\)·ρ\(A \+ BK\) = 1.13"):
        unstable.objective(np.zeros((2, 3)), SIGMA)


def test_from_env_reads_the_envs_matrices_and_checks_its_arguments():
    R = [[2.0, 0.5], [0.5, 1.0]]
    lq = task(0.95, R=R)
    np.testing.assert_array_equal(lq.R, R)
    assert lq.state_dim == 3 and lq.action_dim == 2 and lq.discount == 0.95
    np.testing.assert_array_equal(lq.A, np.array(envs.LQR_DEFAULTS["A"]))
    with pytest.raises(ValueError, match="discount must be in"):
        task(1.0)
    with pytest.raises(ValueError, match="R must be positive definite"):
        LinearQuadratic(lq.A, lq.B, lq.Q, -lq.R, lq.W, lq.initial_covariance, 0.9)
    with pytest.raises(ValueError, match="K must have shape"):
        lq.objective(GAIN.T, SIGMA)
    with pytest.raises(ValueError, match="Sigma must be positive semidefinite"):
        lq.objective(GAIN, -SIGMA)


def test_riccati_refuses_tasks_that_no_gain_stabilises():
    # The mode 1.2 is untouched by the actions: the iteration diverges.
    uncontrollable = task(A=np.diag([1.2, 0.5, 0.5]))
    with pytest.raises(ValueError, match="Riccati iteration diverged"):
        uncontrollable.optimal_gain()
    # Controllable, but Q does not see the mode 1.2: the fixed point leaves it alone.
    unseen = task(
        A=np.diag([1.2, 0.5, 0.5]), B=[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], Q=np.diag([0.0, 1.0, 1.0])
    )
    with pytest.raises(ValueError, match="not stabilising"):
        unseen.optimal_value_matrix()
