"""The actor updates of the compiled train steps against autodiff, and the critic's Huber update
with δ ≠ 1.

Each test takes one `agent.train_step` on a fresh agent (a single run: a population of one, every
variable [1, ...]) and recovers the gradient the step applied from Adam's first moment, the "m"
slots of the agent's MemberAdams: m starts at 0 and m ← m + (1 − β1)(g − m), as Keras's Adam, so
after exactly one step g = m/(1 − β1). It compares that gradient, variable by variable, with one
computed apart in float32 by tf.GradientTape from the formulas of docs/design.md section 2:

- DDPG: −∇θ mean_s Q_w(s, μθ(s));
- Smoothie: the gradient in θ and φ of −mean_s[g·μθ(s) + ½ Σ_i H_ii e^φ_i] + λ·mean_s KL(π ‖ π̄), with
  g and diag H by nested tapes on the critic (not the jets) and the KL by tensorflow-probability;
- both critics: ∇w mean Huber_δ(Q_w(s, a) − y), δ = `huber_delta` = 0.3, y from the target networks,
  clipped to global norm `grad_clip`.

θ and φ have Adams of their own; φ's runs at `log_variance_lr`, or at the actor's rate when that is
0 (then the same update as the paper's one Adam over θ and φ, Adam acting elementwise): the
Smoothie test checks φ's rate and the step it took besides φ's applied gradient.

`grad_clip` is 0.1, below the norms of both the critic's and the actor's gradients (asserted), so
the critic's clip binds and a clip of the actor's gradient (which Table 1 does not have) would show.

Which networks: the step updates the critic first, then the actor uses the critic *as just updated*
(the target networks move only after both). The critic's values after the step are therefore the
ones the actor used, and are read from the agent after the step; the policy and the target policy
in force during the step are the ones from before it, put back for the reference computation by
`holding`. The critic's reference gradient is computed before the step, at the phantom actions the
step will draw (Smoothie), redrawn from a copy of `agent.training_streams` (its keys and counters:
a counter-based stream draws the same numbers eagerly as inside the compiled step).

Tolerances: the step runs XLA-compiled and the reference eagerly, both in float32, so they agree
to a few float32 roundings over a handful of layers (measured: at most 3.1e-7 relative). The tests
allow 1e-4 relative to each variable's largest gradient entry, and check that each wrong version
considered (the sign, the ½, the target critic, the critic before its update, g and H at a sampled
action, λ) is off by far more (measured: 39% or more).
"""

import contextlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from test_agents import (
    HIGH,
    LOW,
    S,
    critic_derivatives_by_autodiff,
    member_batch,
    momentum,
    random_batches,
    snapshot,
)

from smoothie_tf.agents import DDPGAgent, SmoothieAgent
from smoothie_tf.optimizers import BETA_1, BETA_2, EPSILON
from smoothie_tf.streams import MemberStreams

D = len(LOW)
B = 16
NETWORKS = {"actor_hidden": [16, 16], "critic_state_embedding": 16, "critic_hidden": [16], "batch_size": B}
# Below every gradient norm of these tests (measured: critics 0.35 (DDPG) and 0.58, actors 0.69 and 0.90).
GRAD_CLIP = 0.1
# δ = 0.3 with errors of order 1 (rewards ~ N(0, 1), c = 1): some on each side of δ, asserted below.
HUBER_DELTA = 0.3
KL_PENALTY = 0.3
# A large critic step, so that the critic before and after its update differ clearly.
CRITIC_LR = 0.05
TOLERANCE = 1e-4  # relative to each variable's largest gradient entry (see the module docstring)


@contextlib.contextmanager
def holding(variables, values):
    """`variables` set to `values` inside the block, and back to what they were after it."""
    saved = snapshot(variables)
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)
    try:
        yield
    finally:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)


def perturb(variables, scale: float, seed: int) -> None:
    """Adds N(0, scale²) noise to each variable: the target networks then differ from the online ones."""
    rng = np.random.default_rng(seed)
    for variable in variables:
        variable.assign(variable + scale * rng.normal(size=variable.shape).astype(np.float32))


def applied_gradients(optimizer, variables) -> list[np.ndarray]:
    """The gradient of the optimizer's one and only Adam step, from its first moment: [1, ...] each."""
    np.testing.assert_array_equal(optimizer.iterations.numpy(), [1])
    return [momentum(optimizer, v) / (1.0 - BETA_1) for v in variables]


def optimizer_variables(optimizer) -> set:
    """The ids of the variables the MemberAdam was built over (holds m and v slots for)."""
    return set(optimizer._slot_of)


def global_norm(gradients: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in gradients)))


def clipped(gradients: list[np.ndarray], clip_norm: float) -> list[np.ndarray]:
    """g·min(1, c/‖g‖), ‖g‖ the global norm over all of them."""
    return [g * min(1.0, clip_norm / global_norm(gradients)) for g in gradients]


def relative_error(actual: list[np.ndarray], expected: list[np.ndarray]) -> float:
    """max over variables of max|actual − expected| / max|expected|."""
    return max(
        float(np.max(np.abs(a - e)) / np.max(np.abs(e))) for a, e in zip(actual, expected, strict=True)
    )


def assert_gradients_equal(actual, expected) -> None:
    for a, e in zip(actual, expected, strict=True):
        assert np.max(np.abs(e)) > 0  # every variable gets a gradient
        np.testing.assert_allclose(a, e, rtol=0, atol=TOLERANCE * np.max(np.abs(e)))


def huber(error: tf.Tensor, delta: float) -> tf.Tensor:
    return tf.where(tf.abs(error) <= delta, 0.5 * error**2, delta * (tf.abs(error) - 0.5 * delta))


def bellman_targets(agent, batch) -> np.ndarray:
    """y = c·r + γ(1 − terminated)·Q̄(s', μ̄(s')) from the agent's target networks, eagerly, for a
    batch with the member axis: [1, B]."""
    c, gamma = agent.config.reward_scale, agent.config.discount
    next_means = agent.target_policy(batch.next_observations)
    next_q = agent.target_critic(batch.next_observations, next_means).numpy()
    return c * batch.rewards + gamma * (1.0 - batch.terminated) * next_q


def critic_gradient(agent, batch, actions) -> tuple[list[np.ndarray], np.ndarray]:
    """∇w mean Huber_δ(Q_w(s, a) − y), clipped to global norm grad_clip, at the critic as it is
    (batch: [B, ...], actions a: [B, d]); and the errors Q_w(s, a) − y: [1, B]. The clip binds: the
    gradient's norm exceeds grad_clip."""
    batch = member_batch(batch)
    y = bellman_targets(agent, batch)
    variables = agent.critic.trainable_variables
    with tf.GradientTape() as tape:
        error = agent.critic(batch.observations, actions[None]) - y
        loss = tf.reduce_mean(huber(error, agent.config.huber_delta))
    grads = [g.numpy() for g in tape.gradient(loss, variables)]
    assert agent.config.grad_clip == GRAD_CLIP and global_norm(grads) > 2 * GRAD_CLIP, global_norm(grads)
    return clipped(grads, GRAD_CLIP), error.numpy()


def assert_critic_step_applied(agent, expected: list[np.ndarray]) -> None:
    """The critic's step applied `expected`, the clipped gradient: of global norm grad_clip."""
    applied = applied_gradients(agent.critic_optimizer, agent.critic.trainable_variables)
    assert_gradients_equal(applied, expected)
    assert global_norm(applied) == pytest.approx(GRAD_CLIP, rel=1e-4)


def assert_actor_gradient_unclipped(applied: list[np.ndarray], expected: list[np.ndarray]) -> None:
    """The actor's gradient exceeds grad_clip, and the step applied it whole: Table 1 clips Q's
    gradients only, and the same gradient clipped to grad_clip is off by far more than the tolerance."""
    assert global_norm(expected) > 2 * GRAD_CLIP, global_norm(expected)
    assert relative_error(applied, clipped(expected, GRAD_CLIP)) > 1.0


def assert_errors_on_both_sides_of_delta(errors: np.ndarray, delta: float) -> None:
    """Both branches of Huber_δ are used, and some errors lie between δ and 1, where a δ of 1 in
    its place would give them another gradient."""
    inside = np.sum(np.abs(errors) < delta)
    between = np.sum((np.abs(errors) > delta) & (np.abs(errors) < 1.0))
    assert inside >= 2 and between >= 2, errors


def trained_once(agent, batch):
    """Copies of every variable the step reads, taken before `agent.train_step(batch)`, then the step."""
    before = {
        "policy": snapshot(agent.policy.variables),
        "target_policy": snapshot(agent.target_policy.variables),
        "critic": snapshot(agent.critic.variables),
        "target_critic": snapshot(agent.target_critic.variables),
    }
    agent.train_step(batch)
    return before


# --- DDPG -----------------------------------------------------------------------------------


def ddpg_actor_gradient(agent, critic, observations) -> list[np.ndarray]:
    """∇θ of −mean_s critic(s, μθ(s)), at the policy as it is; observations [1, B, S]."""
    variables = agent.policy.mean_variables
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(critic(observations, agent.policy(observations)))
    return [g.numpy() for g in tape.gradient(loss, variables)]


def test_ddpg_actor_step_is_the_deterministic_policy_gradient_of_the_updated_critic():
    agent = DDPGAgent(
        S,
        LOW,
        HIGH,
        seed=0,
        reward_scale=1.0,
        huber_delta=HUBER_DELTA,
        critic_lr=CRITIC_LR,
        grad_clip=GRAD_CLIP,
        **NETWORKS,
    )
    perturb(agent.target_critic.variables, 0.05, seed=1)
    perturb(agent.target_policy.variables, 0.3, seed=2)
    batch = random_batches(1, seed=3, size=B, reward_scale=0.4)[0]
    s = tf.constant(batch.observations[None])

    # The critic's gradient, at the replayed actions (DDPG draws no noise), before the step.
    expected_critic, errors = critic_gradient(agent, batch, batch.actions)
    assert_errors_on_both_sides_of_delta(errors, HUBER_DELTA)
    phi = agent.policy.log_variance.numpy()

    before = trained_once(agent, batch)

    assert_critic_step_applied(agent, expected_critic)
    # The actor optimizer trains θ, all of it, and φ neither gets a gradient nor moves.
    actor = agent.policy.mean_variables
    assert optimizer_variables(agent.actor_optimizer) == {id(v) for v in actor}
    np.testing.assert_array_equal(agent.policy.log_variance.numpy(), phi)
    applied = applied_gradients(agent.actor_optimizer, actor)
    with holding(agent.policy.variables, before["policy"]):
        expected = ddpg_actor_gradient(agent, agent.critic, s)
        with holding(agent.critic.variables, before["critic"]):
            with_critic_before_update = ddpg_actor_gradient(agent, agent.critic, s)
        with holding(agent.target_critic.variables, before["target_critic"]):
            with_target_critic = ddpg_actor_gradient(agent, agent.target_critic, s)
    assert_gradients_equal(applied, expected)
    assert_actor_gradient_unclipped(applied, expected)
    # What the comparison rules out, each off by far more than the tolerance.
    assert relative_error(applied, [-g for g in expected]) > 1.0
    assert relative_error(applied, with_target_critic) > 100 * TOLERANCE
    assert relative_error(applied, with_critic_before_update) > 100 * TOLERANCE


# --- Smoothie -------------------------------------------------------------------------------


def phantom_noise(agent) -> np.ndarray:
    """The ε ~ N(0, I) [B, d] that the next train step draws, from a copy of its streams."""
    streams = agent.training_streams
    copy = MemberStreams(streams.keys.numpy(), name="copy")
    copy.counters.assign(streams.counters)
    return copy.normal([B, D]).numpy()[0]


def smoothie_actor_gradient(
    agent,
    observations,
    half: float = 0.5,
    kl_penalty: float = KL_PENALTY,
    action_noise: np.ndarray | None = None,
) -> list[np.ndarray]:
    """∇(θ, φ) of −mean_s[g·μθ(s) + half·Σ_i H_ii e^φ_i] + λ·mean_s KL(π ‖ π̄), at the networks as
    they are (observations [1, B, S]); g, diag H of the critic by nested tapes at a = μθ(s)
    (+ sqrt(e^φ)·action_noise, a wrong version), held fixed; the KL by tensorflow-probability.
    Returns [*θ grads, φ grad], each shaped like its variable ([1, ...])."""
    policy, target = agent.policy, agent.target_policy
    actions = policy(observations)[0]
    if action_noise is not None:
        actions = actions + tf.sqrt(policy.variance()[0]) * action_noise
    _, g, hess = critic_derivatives_by_autodiff(agent.critic, observations[0], actions)
    g, hess_diag = g[None], tf.linalg.diag_part(hess)[None]  # [1, B, d]
    target_distribution = tfp.distributions.MultivariateNormalDiag(
        loc=target(observations), scale_diag=tf.exp(0.5 * target.log_variance)[:, None, :]
    )
    variables = [*policy.mean_variables, policy.log_variance]
    with tf.GradientTape() as tape:
        means = policy(observations)  # [1, B, d]
        variance = tf.exp(policy.log_variance)[:, None, :]  # [1, 1, d]
        surrogate = -tf.reduce_mean(
            tf.reduce_sum(g * means, -1) + half * tf.reduce_sum(hess_diag * variance, -1)
        )
        distribution = tfp.distributions.MultivariateNormalDiag(
            loc=means, scale_diag=tf.exp(0.5 * policy.log_variance)[:, None, :]
        )
        kl = tf.reduce_mean(tfp.distributions.kl_divergence(distribution, target_distribution))
        loss = surrogate + kl_penalty * kl
    return [grad.numpy() for grad in tape.gradient(loss, variables)]


def smoothie_agent(log_variance_lr: float) -> SmoothieAgent:
    agent = SmoothieAgent(
        S,
        LOW,
        HIGH,
        seed=4,
        reward_scale=1.0,
        huber_delta=HUBER_DELTA,
        critic_lr=CRITIC_LR,
        grad_clip=GRAD_CLIP,
        kl_penalty=KL_PENALTY,
        initial_log_variance=0.5,
        log_variance_lr=log_variance_lr,
        **NETWORKS,
    )
    perturb(agent.target_critic.variables, 0.05, seed=5)
    # The target policy differs in mean and in φ, so that the KL has a gradient in θ and φ.
    perturb(agent.target_policy.mean_variables, 0.3, seed=6)
    agent.target_policy.log_variance.assign([[0.2, 0.9]])
    return agent


@pytest.mark.parametrize("log_variance_lr", [0.0, 1e-3], ids=["phi_at_actor_rate", "phi_at_own_rate"])
def test_smoothie_actor_step_is_theorem_1_plus_the_kl_of_the_updated_critic(log_variance_lr):
    agent = smoothie_agent(log_variance_lr)
    batch = random_batches(1, seed=7, size=B, reward_scale=0.4)[0]
    s = tf.constant(batch.observations[None])

    # The critic's gradient at the phantom actions a = ã + sqrt(e^φ)·ε of the coming step.
    phi_before = agent.policy.log_variance.numpy()
    phantom = batch.actions + np.sqrt(np.exp(phi_before[0])) * phantom_noise(agent)
    expected_critic, errors = critic_gradient(agent, batch, phantom.astype(np.float32))
    assert_errors_on_both_sides_of_delta(errors, HUBER_DELTA)

    before = trained_once(agent, batch)

    assert_critic_step_applied(agent, expected_critic)
    # θ and φ have Adams of their own: the actor's trains θ alone, φ's runs at log_variance_lr,
    # or at the actor's rate when that is 0 (the paper's one Adam: Adam acts elementwise).
    theta, phi = agent.policy.mean_variables, agent.policy.log_variance
    assert optimizer_variables(agent.actor_optimizer) == {id(v) for v in theta}
    assert optimizer_variables(agent.log_variance_optimizer) == {id(phi)}
    phi_rate = log_variance_lr if log_variance_lr > 0 else agent.config.actor_lr
    np.testing.assert_allclose(agent.log_variance_optimizer.learning_rate.numpy(), [phi_rate], rtol=1e-7)
    np.testing.assert_allclose(
        agent.actor_optimizer.learning_rate.numpy(), [agent.config.actor_lr], rtol=1e-7
    )
    applied = [
        *applied_gradients(agent.actor_optimizer, theta),
        *applied_gradients(agent.log_variance_optimizer, [phi]),
    ]

    rng = np.random.default_rng(8)
    with holding(agent.policy.variables, before["policy"]):
        with holding(agent.target_policy.variables, before["target_policy"]):
            expected = smoothie_actor_gradient(agent, s)
            wrong = {
                "H_ii e^φ_i without the ½": smoothie_actor_gradient(agent, s, half=1.0),
                "2·H_ii e^φ_i": smoothie_actor_gradient(agent, s, half=2.0),
                "loss + KL, not + λ·KL": smoothie_actor_gradient(agent, s, kl_penalty=1.0),
                "no KL": smoothie_actor_gradient(agent, s, kl_penalty=0.0),
                "g, H at a sampled action": smoothie_actor_gradient(
                    agent, s, action_noise=rng.normal(size=(B, D)).astype(np.float32)
                ),
            }
            with holding(agent.critic.variables, before["critic"]):
                wrong["the critic before its update"] = smoothie_actor_gradient(agent, s)
            flipped = [-g for g in expected]
    assert_gradients_equal(applied, expected)
    assert_actor_gradient_unclipped(applied, expected)
    assert relative_error(applied, flipped) > 1.0
    for name, gradients in wrong.items():
        # φ's gradient alone would tell each of them apart.
        assert relative_error(applied[-1:], gradients[-1:]) > 100 * TOLERANCE, name
    # φ took Adam's first step at its rate on that gradient: −lr·g/(|g| + ε/sqrt(1 − β2)), about
    # lr·sign(−g) (the float32 difference of φ ≈ 0.5 holds it to ~3e-4 of a 1e-4 step).
    g = expected[-1].astype(np.float64)
    step = -phi_rate * g / (np.abs(g) + EPSILON / np.sqrt(1.0 - BETA_2))
    np.testing.assert_allclose(agent.policy.log_variance.numpy() - phi_before, step, rtol=1e-3)
