"""The losses against hand computations, closed forms and Theorem 1's expressions computed apart."""

import numpy as np
import pytest
import tensorflow as tf

from smoothie_tf import losses
from smoothie_tf.networks import GaussianPolicy

D, S, B = 3, 4, 6
CENTRE = np.array([0.5, -0.3, 0.2], np.float32)


def small_policy(log_variance=(-1.0, -0.5, 0.3)) -> GaussianPolicy:
    """One run's policy (members=None: means [B, d]; its φ variable is [1, d], see `phi`)."""
    keras_seed = np.random.default_rng(0)
    policy = GaussianPolicy(-2 * np.ones(D), 2 * np.ones(D), hidden=(8,), initial_seeds=[0])
    policy(tf.zeros([1, S]))
    for variable in policy.variables:  # larger last-layer weights than DDPG's ±3e-3, so μ varies with s
        variable.assign(keras_seed.normal(scale=0.5, size=variable.shape).astype(np.float32))
    policy.log_variance.assign(np.asarray(log_variance, np.float32)[None])
    return policy


def phi(policy: GaussianPolicy) -> tf.Tensor:
    """φ [d] of a members=None policy: the only member's row of its [1, d] variable."""
    return policy.log_variance[0]


def states(n=B, seed=1) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).normal(size=(n, S)), tf.float32)


def curvature(seed=2, convex=False) -> np.ndarray:
    """A symmetric positive-definite A with distinct diagonal entries (negated when convex)."""
    m = np.random.default_rng(seed).normal(size=(D, D)) * 0.3
    a = m @ m.T + np.diag([1.0, 2.0, 0.5])
    return (-a if convex else a).astype(np.float32)


def quadratic_critic_derivatives(actions: tf.Tensor, a: np.ndarray):
    """Q(a) = −(a − c)ᵀA(a − c): g = −2A(a − c) [B, d], H = −2A [B, d, d]."""
    g = -2.0 * tf.linalg.matvec(tf.constant(a), actions - CENTRE)
    h = tf.broadcast_to(-2.0 * tf.constant(a), [actions.shape[0], D, D])
    return g, h


# --- Theorem 1 ------------------------------------------------------------------------------


def test_surrogate_gradients_are_theorem_1():
    policy, s, a = small_policy(), states(), curvature()
    means = policy(s)
    g, h = quadratic_critic_derivatives(means, a)
    with tf.GradientTape() as tape:
        loss = losses.smoothie_policy_surrogate(policy(s), phi(policy), g, h)
    assert loss.shape == ()
    theta = policy.mean_variables
    grads = tape.gradient(loss, [*theta, policy.log_variance])

    # ∇θ O = E_s[(∂μθ(s)/∂θ)ᵀ g]: the per-example Jacobian of μ, contracted with g by hand.
    with tf.GradientTape(persistent=True) as tape:
        means = policy(s)
    for variable, grad in zip(theta, grads[:-1], strict=True):
        jacobian = tape.jacobian(means, variable).numpy()  # [B, d, *shape]
        expected = np.einsum("bi,bi...->...", g.numpy(), jacobian) / B
        np.testing.assert_allclose(grad.numpy(), -expected, rtol=1e-4, atol=1e-6)
    # ∂O/∂φ_i = ½ exp(φ_i) E_s[H_ii]
    log_variance = phi(policy).numpy()
    expected_phi = 0.5 * np.exp(log_variance) * np.mean(np.diagonal(h.numpy(), axis1=1, axis2=2), axis=0)
    np.testing.assert_allclose(grads[-1].numpy(), -expected_phi[None], rtol=1e-5)
    assert np.all(np.abs(expected_phi) > 0.1)  # not a trivially small case


def test_surrogate_takes_the_diagonal_and_holds_the_critic_fixed():
    policy, s = small_policy(), states()
    a = tf.Variable(curvature())
    with tf.GradientTape(persistent=True) as tape:
        g, h = quadratic_critic_derivatives(policy(s), a)
        full = losses.smoothie_policy_surrogate(policy(s), phi(policy), g, h)
        diagonal = losses.smoothie_policy_surrogate(policy(s), phi(policy), g, tf.linalg.diag_part(h))
    assert float(full) == pytest.approx(float(diagonal), rel=1e-6)
    assert tape.gradient(full, a) is None  # g and H are stop-gradient'ed
    g_np, h_np, mu = g.numpy(), h.numpy(), policy(s).numpy()
    by_hand = -np.mean(
        np.sum(g_np * mu, 1)
        + 0.5 * np.sum(np.diagonal(h_np, axis1=1, axis2=2) * np.exp(phi(policy).numpy()), 1)
    )
    assert float(full) == pytest.approx(by_hand, rel=1e-5)


def run_sgd_on_quadratic(a: np.ndarray, steps: int, mean_lr: float, variance_lr: float):
    """Plain gradient descent on the surrogate of a fixed quadratic critic; returns the
    trajectory of mean distance to c and of φ."""
    policy, s = small_policy(), states(32)
    distances, phis = [], [phi(policy).numpy().copy()]
    for _ in range(steps):
        with tf.GradientTape() as tape:
            means = policy(s)
            g, h = quadratic_critic_derivatives(means, a)
            loss = losses.smoothie_policy_surrogate(means, phi(policy), g, h)
        distances.append(float(tf.reduce_mean(tf.norm(means - CENTRE, axis=1))))
        grads = tape.gradient(loss, [*policy.mean_variables, policy.log_variance])
        for variable, grad in zip(policy.mean_variables, grads[:-1], strict=True):
            variable.assign_sub(mean_lr * grad)
        policy.log_variance.assign_sub(variance_lr * grads[-1])
        phis.append(phi(policy).numpy().copy())
    return np.array(distances), np.array(phis)


# Under gradient ascent a convex critic grows φ by ∝ e^φ per step, which blows up in finite
# time; a smaller step keeps that case finite over the same number of steps.
@pytest.mark.parametrize("convex, eta", [(False, 0.2), (True, 0.005)])
def test_quadratic_critic_moves_the_mean_and_the_variance_at_the_predicted_rate(convex, eta):
    a = curvature(convex=convex)
    steps = 60
    distances, phis = run_sgd_on_quadratic(a, steps, mean_lr=0.02, variance_lr=eta)
    # The predicted rate, iterated by hand: dφ_i = η·½·exp(φ_i)·H_ii with H_ii = −2A_ii.
    expected = [phis[0].astype(np.float64)]
    for _ in range(steps):
        phi = expected[-1]
        expected.append(phi + eta * 0.5 * np.exp(phi) * (-2.0 * np.diag(a)))
    np.testing.assert_allclose(phis, np.array(expected), rtol=1e-5, atol=1e-5)
    variance_ratio = np.exp(phis[-1] - phis[0])
    steps_taken = np.diff(phis, axis=0)
    if convex:  # positive curvature: every variance grows, at every step
        assert np.all(variance_ratio > 1.1) and np.all(steps_taken > 0)
    else:  # concave: every variance shrinks, at every step
        assert np.all(variance_ratio < 0.9) and np.all(steps_taken < 0)
        assert distances[-1] < 0.2 * distances[0]  # and the mean moves to c
        assert np.all(np.diff(distances) < 1e-6)


# --- KL penalty -----------------------------------------------------------------------------


def kl_closed_form(mu, phi, mu_bar, phi_bar):
    v, v_bar = np.exp(phi), np.exp(phi_bar)
    per_state = 0.5 * np.sum(v / v_bar + (mu - mu_bar) ** 2 / v_bar - 1 + phi_bar - phi, axis=-1)
    return per_state.mean()


def test_kl_matches_the_closed_form_and_its_gradients():
    rng = np.random.default_rng(3)
    mu = tf.Variable(rng.normal(size=(B, D)).astype(np.float32))
    phi = tf.Variable(np.array([-1.0, 0.4, -0.2], np.float32))
    mu_bar = tf.Variable(rng.normal(size=(B, D)).astype(np.float32))
    phi_bar = tf.Variable(np.array([-0.5, 0.1, -1.3], np.float32))
    with tf.GradientTape() as tape:
        kl = losses.kl_to_target_policy(mu, phi, mu_bar, phi_bar)
    grads = tape.gradient(kl, [mu, phi, mu_bar, phi_bar])
    m, p, mb, pb = (x.numpy().astype(np.float64) for x in (mu, phi, mu_bar, phi_bar))
    assert float(kl) == pytest.approx(kl_closed_form(m, p, mb, pb), rel=1e-5)
    np.testing.assert_allclose(grads[0].numpy(), (m - mb) / np.exp(pb) / B, rtol=1e-5)  # ∂/∂μ
    np.testing.assert_allclose(grads[1].numpy(), 0.5 * (np.exp(p - pb) - 1), rtol=1e-5)  # ∂/∂φ
    assert grads[2] is None and grads[3] is None  # the target policy is held fixed
    assert float(losses.kl_to_target_policy(mu, phi, mu, phi)) == pytest.approx(0.0, abs=1e-6)


def test_kl_penalty_pulls_the_policy_toward_the_target():
    mu = tf.Variable(np.full((B, D), 0.8, np.float32))
    phi = tf.Variable(np.full(D, 0.5, np.float32))
    mu_bar, phi_bar = tf.zeros([B, D]), tf.fill([D], -1.0)
    zero = tf.zeros([B, D])  # a flat critic: the surrogate alone would not move anything
    start = kl_closed_form(mu.numpy(), phi.numpy(), 0.0, -1.0)
    for _ in range(20):
        with tf.GradientTape() as tape:
            loss = losses.smoothie_policy_surrogate(mu, phi, zero, zero)
            loss += 0.5 * losses.kl_to_target_policy(mu, phi, mu_bar, phi_bar)
        for variable, grad in zip([mu, phi], tape.gradient(loss, [mu, phi]), strict=True):
            variable.assign_sub(0.1 * grad)
    assert np.all(mu.numpy() < 0.8) and np.all(mu.numpy() > 0.0)
    assert np.all(phi.numpy() < 0.5) and np.all(phi.numpy() > -1.0)
    assert kl_closed_form(mu.numpy(), phi.numpy(), 0.0, -1.0) < 0.5 * start


# --- critic ---------------------------------------------------------------------------------


def test_phantom_actions_by_hand():
    replayed = tf.constant([[0.1, -0.2], [0.0, 1.0]])
    variance = tf.Variable([0.25, 4.0])
    noise = tf.constant([[1.0, -0.5], [-2.0, 0.25]])
    with tf.GradientTape() as tape:
        phantom = losses.phantom_actions(replayed, variance, noise)
    np.testing.assert_allclose(phantom.numpy(), [[0.6, -1.2], [-1.0, 1.5]], rtol=1e-6)
    assert tape.gradient(phantom, variance) is None  # no gradient to φ through the critic's inputs


def test_bellman_target_by_hand_terminated_stops_bootstrapping():
    rewards = tf.constant([1.0, 2.0, 3.0, 3.0])
    # Gymnasium's terminated; a time-limit truncation is stored as terminated = 0 (the last two).
    terminated = tf.constant([0.0, 1.0, 0.0, 0.0])
    next_values = tf.Variable([10.0, 10.0, -4.0, 7.0])
    with tf.GradientTape() as tape:
        y = losses.smoothed_bellman_target(rewards, terminated, next_values, reward_scale=0.1, discount=0.9)
    np.testing.assert_allclose(y.numpy(), [9.1, 0.2, -3.3, 6.6], rtol=1e-6)
    assert tape.gradient(y, next_values) is None  # y is held fixed


def test_huber_by_hand():
    x = tf.constant([0.5, -2.0, 1.0, 0.0])
    np.testing.assert_allclose(losses.huber(x, 1.0).numpy(), [0.125, 1.5, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(losses.huber(tf.constant([3.0, -1.0]), 2.0).numpy(), [4.0, 0.5], rtol=1e-6)


def test_critic_loss_gradient_is_the_clipped_error_and_targets_are_fixed():
    q = tf.Variable([0.0, 3.0, -0.4])
    y = tf.Variable([0.5, 0.0, 2.0])
    with tf.GradientTape() as tape:
        loss = losses.critic_loss(q, y, delta=1.0)
    grad_q, grad_y = tape.gradient(loss, [q, y])
    assert float(loss) == pytest.approx((0.125 + 2.5 + 1.9) / 3, rel=1e-6)
    np.testing.assert_allclose(grad_q.numpy(), np.array([-0.5, 1.0, -1.0]) / 3, rtol=1e-6)
    assert grad_y is None


def test_ddpg_actor_loss_ascends_the_critic():
    a = curvature()
    actions = tf.Variable(np.zeros((B, D), np.float32))
    for _ in range(3):
        with tf.GradientTape() as tape:
            q = -tf.einsum("bi,ij,bj->b", actions - CENTRE, a, actions - CENTRE)
            loss = losses.ddpg_actor_loss(q)
        assert float(loss) == pytest.approx(-float(tf.reduce_mean(q)), rel=1e-6)
        g, _ = quadratic_critic_derivatives(actions, a)
        grad = tape.gradient(loss, actions)
        np.testing.assert_allclose(grad.numpy(), -g.numpy() / B, rtol=1e-5, atol=1e-7)
        actions.assign_sub(0.5 * grad)
    assert float(tf.reduce_mean(tf.norm(actions - CENTRE, axis=1))) < float(np.linalg.norm(CENTRE))


# --- a population: every loss is each member's own ------------------------------------------

P = 3
# Per-member constants, far apart, so that a value mixed across members would show.
REWARD_SCALES = np.array([0.1, 1.0, 5.0], np.float32)
DISCOUNTS = np.array([0.5, 0.9, 0.99], np.float32)
HUBER_DELTAS = np.array([0.3, 1.0, 4.0], np.float32)


def population_inputs(seed: int = 5) -> dict[str, np.ndarray]:
    """Inputs of every loss for P members: [P, B, ...] and [P, d], each member's on its own scale."""
    rng = np.random.default_rng(seed)

    def draw(*shape) -> np.ndarray:
        scales = np.array([0.5, 1.0, 3.0]).reshape([P] + [1] * (len(shape) - 1))
        return (scales * rng.normal(size=shape)).astype(np.float32)

    hessians = draw(P, B, D, D)
    return {
        "replayed": draw(P, B, D),
        "phantom": draw(P, B, D),
        "noise": draw(P, B, D),
        "variance": np.exp(draw(P, D)),
        "rewards": draw(P, B),
        "terminated": (rng.uniform(size=(P, B)) < 0.3).astype(np.float32),
        "next_values": 5 * draw(P, B),
        "q": 3 * draw(P, B),  # errors against the targets on both sides of every δ
        "targets": 3 * draw(P, B),
        "grad": draw(P, B, D),
        "hess": hessians + np.swapaxes(hessians, -1, -2),
        "hess_diagonal": draw(P, B, D),
        "target_1": draw(P, B, D),
        "target_2": draw(P, B, D, D),
        "means": draw(P, B, D),
        "log_variance": draw(P, D),
        "target_means": draw(P, B, D),
        "target_log_variance": draw(P, D),
    }


def population_constants() -> dict[str, tf.Tensor]:
    """c, γ, δ of the P members as [P, 1] columns, as the agents pass them."""
    columns = {"reward_scale": REWARD_SCALES, "discount": DISCOUNTS, "delta": HUBER_DELTAS}
    return {name: tf.constant(values[:, None]) for name, values in columns.items()}


def member_constants(k: int) -> dict[str, float]:
    """Member k's c, γ, δ as the plain numbers of a single run."""
    return {
        "reward_scale": float(REWARD_SCALES[k]),
        "discount": float(DISCOUNTS[k]),
        "delta": float(HUBER_DELTAS[k]),
    }


# Each loss of the module on inputs x and constants c (a population's, or one member's).
POPULATION_LOSSES = {
    "phantom_actions": lambda x, c: losses.phantom_actions(x["replayed"], x["variance"], x["noise"]),
    "smoothed_bellman_target": lambda x, c: losses.smoothed_bellman_target(
        x["rewards"], x["terminated"], x["next_values"], c["reward_scale"], c["discount"]
    ),
    "huber": lambda x, c: losses.huber(x["q"] - x["targets"], c["delta"]),
    "critic_loss": lambda x, c: losses.critic_loss(x["q"], x["targets"], c["delta"]),
    "standardised_offsets": lambda x, c: losses.standardised_offsets(
        x["replayed"], x["phantom"], x["variance"]
    ),
    "baseline_targets": lambda x, c: losses.baseline_targets(x["targets"], x["q"]),
    "derivative_bellman_target_1": lambda x, c: losses.derivative_bellman_target_1(
        x["noise"], x["variance"], x["targets"]
    ),
    "derivative_bellman_target_2": lambda x, c: losses.derivative_bellman_target_2(
        x["noise"], x["variance"], x["targets"]
    ),
    "derivative_bellman_target_2_diagonal": lambda x, c: losses.derivative_bellman_target_2_diagonal(
        x["noise"], x["variance"], x["targets"]
    ),
    "derivative_bellman_loss_1": lambda x, c: losses.derivative_bellman_loss(x["grad"], x["target_1"], 1),
    "derivative_bellman_loss_2": lambda x, c: losses.derivative_bellman_loss(x["hess"], x["target_2"], 2),
    "smoothie_policy_surrogate": lambda x, c: losses.smoothie_policy_surrogate(
        x["means"], x["log_variance"], x["grad"], x["hess"]
    ),
    "smoothie_policy_surrogate_diagonal": lambda x, c: losses.smoothie_policy_surrogate(
        x["means"], x["log_variance"], x["grad"], x["hess_diagonal"]
    ),
    "kl_to_target_policy": lambda x, c: losses.kl_to_target_policy(
        x["means"], x["log_variance"], x["target_means"], x["target_log_variance"]
    ),
    "ddpg_actor_loss": lambda x, c: losses.ddpg_actor_loss(x["q"]),
}
# The losses the agents minimise (one number per member), and the inputs they are minimised through.
MINIMISED = {
    "critic_loss": ("q",),
    "derivative_bellman_loss_1": ("grad",),
    "derivative_bellman_loss_2": ("hess",),
    "smoothie_policy_surrogate": ("means", "log_variance"),
    "smoothie_policy_surrogate_diagonal": ("means", "log_variance"),
    "kl_to_target_policy": ("means", "log_variance"),
    "ddpg_actor_loss": ("q",),
}


@pytest.mark.parametrize("name", sorted(POPULATION_LOSSES))
def test_each_loss_of_a_population_is_each_members_loss_computed_alone(name):
    """P = 3 members with their own inputs and their own c, γ, δ ([P, 1]): the population's output
    [P, ...] is, member by member, the single-run output of that member's slice and numbers."""
    x, loss = population_inputs(), POPULATION_LOSSES[name]
    together = loss({key: tf.constant(value) for key, value in x.items()}, population_constants()).numpy()
    alone = np.stack(
        [
            loss({key: tf.constant(value[k]) for key, value in x.items()}, member_constants(k)).numpy()
            for k in range(P)
        ]
    )
    assert together.shape == alone.shape
    if name in MINIMISED:
        assert together.shape == (P,)  # one loss per member, nothing reduced over the members
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-6)
    assert not np.allclose(alone[0], alone[1]) and not np.allclose(alone[1], alone[2])  # a mix would show


@pytest.mark.parametrize("name", sorted(MINIMISED))
def test_a_members_loss_has_no_gradient_to_another_members_inputs(name):
    """∂L_j/∂x_k of the population's losses [P] is member k's own gradient, computed alone, for
    j = k and exactly 0 for j ≠ k: minimising the sum of the P losses is minimising each apart."""
    x, loss = population_inputs(), POPULATION_LOSSES[name]
    variables = {key: tf.Variable(x[key]) for key in MINIMISED[name]}
    with tf.GradientTape(persistent=True) as tape:
        together = loss(
            {**{key: tf.constant(v) for key, v in x.items()}, **variables}, population_constants()
        )
    jacobians = {key: tape.jacobian(together, v).numpy() for key, v in variables.items()}  # [P, P, ...]
    for k in range(P):
        own = {key: tf.Variable(x[key][k]) for key in MINIMISED[name]}
        with tf.GradientTape() as tape:
            alone = loss({**{key: tf.constant(v[k]) for key, v in x.items()}, **own}, member_constants(k))
        gradients = tape.gradient(alone, own)
        for key, jacobian in jacobians.items():
            assert np.any(np.abs(gradients[key].numpy()) > 1e-3), key  # not a trivially zero case
            for j in range(P):
                expected = gradients[key].numpy() if j == k else np.zeros_like(x[key][k])
                np.testing.assert_allclose(
                    jacobian[j, k], expected, rtol=1e-5, atol=1e-7, err_msg=(key, j, k)
                )
