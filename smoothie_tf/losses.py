"""The losses of Smoothie, Smoothie-KL and DDPG, one equation per function (docs/design.md section 2).

Equation numbers "eq. N" are the paper's supplementary material (`docs/design.md`); "Theorem 1" is the
main paper's policy gradient for the mean and covariance of a Gaussian policy.
Shapes: B examples, d action dimensions, and any leading axes before them: a population's
member axis P makes every [B, ...] argument [P, B, ...], every [d] argument [P, d] and every
per-run constant (c, γ, δ) a [P, 1] tensor, and every loss a [P] vector with one loss per
member; nothing is reduced across the leading axes.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def phantom_actions(replay_actions: tf.Tensor, variance: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """Phantom actions a = ã + sqrt(v) ⊙ ε around the replayed actions ã (eq. 9).

    replay_actions ã: [B, d]; variance v = exp(φ) of the current policy: [d] (no gradient flows to
    φ through it); noise ε ~ N(0, I): [B, d]. Returns a: [B, d], not clipped to the action bounds
    (Q̃ is defined on all of R^d, and clipping would bias the smoothing near the bounds).
    """
    return replay_actions + tf.sqrt(tf.stop_gradient(variance))[..., None, :] * noise


def smoothed_bellman_target(
    rewards: tf.Tensor,
    terminated: tf.Tensor,
    next_values: tf.Tensor,
    reward_scale: float,
    discount: float,
) -> tf.Tensor:
    """y = c·r + γ·(1 − terminated)·Q̃w̄(s', μθ̄(s')), held fixed (eq. 5; docs/design.md section 2).

    rewards, terminated: [B]; next_values: [B], the target critic at the target policy's *mean*
    next action (eq. 5 bootstraps with μ(s'), no next action is sampled). `terminated` is
    Gymnasium's: a time-limit truncation has terminated = 0 and still bootstraps.
    """
    bootstrap = discount * (1.0 - terminated) * next_values
    return tf.stop_gradient(reward_scale * rewards + bootstrap)


def huber(errors: tf.Tensor, delta: float) -> tf.Tensor:
    """Huber_δ(x) = ½x² for |x| ≤ δ, δ(|x| − ½δ) beyond: elementwise."""
    magnitude = tf.abs(errors)
    quadratic = tf.minimum(magnitude, delta)
    return 0.5 * tf.square(quadratic) + delta * (magnitude - quadratic)


def critic_loss(q_values: tf.Tensor, targets: tf.Tensor, delta: float) -> tf.Tensor:
    """L_Q = mean Huber_δ(Q̃w(s, a) − y) with y held fixed (eq. 9, k = 0; Table 1's Huber clipping).

    q_values: [B], Q̃w at the phantom actions for Smoothie or at the replayed actions for DDPG;
    targets y: [B]. The importance weight 1/q(ã|s) of eq. 9 is dropped: the behaviour density of
    replayed data is not known (docs/design.md section 2).
    """
    return tf.reduce_mean(huber(q_values - tf.stop_gradient(targets), delta), axis=-1)


def standardised_offsets(
    replay_actions: tf.Tensor, phantom_actions: tf.Tensor, variance: tf.Tensor
) -> tf.Tensor:
    """x = Σ^{-1/2}(ã − a), the argument of the Hermite polynomials H_k of eqs. 7–9.

    replay_actions ã, phantom_actions a: [B, d]; variance v = exp(φ): [d], Σ = diag(v), held fixed.
    Returns x: [B, d]. The sign is (ã − a), not eq. 9's (a − ã): by eq. 7,
    ∂N(ã|a, Σ)/∂a = N(ã|a, Σ)·Σ^{-1}(ã − a) (docs/design.md section 2).
    """
    return (replay_actions - phantom_actions) / tf.sqrt(tf.stop_gradient(variance))[..., None, :]


def baseline_targets(targets: tf.Tensor, q_values: tf.Tensor) -> tf.Tensor:
    """y − sg(Q̃w(s, a)), the control variate of the derivative Bellman targets: [B].

    targets y, q_values Q̃w(s, a) at the phantom actions: [B]. Subtracting any function of (s, a)
    leaves the targets' expectations unchanged, since E[x|a] = 0 and E[xxᵀ − I|a] = 0, and a
    baseline near E[y|a] removes most of their variance.
    """
    return tf.stop_gradient(targets - q_values)


def derivative_bellman_target_1(offsets: tf.Tensor, variance: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Σ^{-1/2} x · y, whose mean given a is ∇aQ̃(s, a) (eqs. 8–9, k = 1; H_1(x) = x): [B, d].

    offsets x = Σ^{-1/2}(ã − a): [B, d]; variance v: [d]; targets y: [B] (or y − sg(Q̃w), the
    control variate).
    """
    scale = tf.math.rsqrt(tf.stop_gradient(variance))[..., None, :]
    return tf.stop_gradient(scale * offsets * targets[..., None])


def derivative_bellman_target_2(offsets: tf.Tensor, variance: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Σ^{-1/2}(x xᵀ − I)Σ^{-1/2} · y, whose mean given a is ∇²aQ̃(s, a) (eqs. 8–9, k = 2;
    H_2(x) = x xᵀ − I): [B, d, d].

    offsets x: [B, d]; variance v: [d]; targets y: [B].
    """
    scale = tf.math.rsqrt(tf.stop_gradient(variance))[..., None, :]  # [..., 1, d]
    identity = tf.eye(offsets.shape[-1], dtype=offsets.dtype)
    hermite = offsets[..., :, None] * offsets[..., None, :] - identity
    return tf.stop_gradient(scale[..., :, None] * hermite * scale[..., None, :] * targets[..., None, None])


def derivative_bellman_target_2_diagonal(
    offsets: tf.Tensor, variance: tf.Tensor, targets: tf.Tensor
) -> tf.Tensor:
    """(x_i² − 1)/v_i · y, the diagonal of `derivative_bellman_target_2`, fitted against diag ∇²aQ̃
    alone (all a diagonal Σ needs): [B, d].

    offsets x: [B, d]; variance v: [d]; targets y: [B].
    """
    variance = tf.stop_gradient(variance)[..., None, :]
    return tf.stop_gradient((tf.square(offsets) - 1.0) / variance * targets[..., None])


def derivative_bellman_loss(action_derivatives: tf.Tensor, targets: tf.Tensor, action_axes: int) -> tf.Tensor:
    """mean_B ‖∂^kQ̃w(s, a)/∂a^k − target_k‖², squares summed over the action axes (eq. 9, k = 1, 2).

    action_derivatives: the critic's ∇aQ̃w [B, d] or the diagonal of ∇²aQ̃w [B, d] (action_axes 1),
    or ∇²aQ̃w [B, d, d] (action_axes 2), at the phantom actions; targets: the matching target_k, held
    fixed. For k = 2 the norm is Frobenius.
    """
    if action_axes not in (1, 2):
        raise ValueError(f"action_axes must be 1 or 2, got {action_axes}")
    errors = action_derivatives - tf.stop_gradient(targets)
    squared = tf.reduce_sum(tf.square(errors), axis=list(range(-action_axes, 0)))
    return tf.reduce_mean(squared, axis=-1)


def smoothie_policy_surrogate(
    means: tf.Tensor, log_variance: tf.Tensor, action_grad: tf.Tensor, action_hess: tf.Tensor
) -> tf.Tensor:
    """−mean_s[ g·μθ(s) + ½ Σ_i H_ii exp(φ_i) ], whose gradient is Theorem 1's (negated).

    means μθ(s): [B, d]; log_variance φ: [d]; action_grad g = ∇aQ̃w(s, a)|a=μθ(s): [B, d];
    action_hess H = ∇²aQ̃w(s, a)|a=μθ(s): [B, d, d] or its diagonal [B, d] (told apart by rank:
    the diagonal has the rank of `means`). g and H are held fixed,
    so ∇θ = −mean_s (∂μθ/∂θ)ᵀ g and ∂/∂φ_i = −½ exp(φ_i) mean_s H_ii (∂Q̃/∂Σ = ½ ∂²Q̃/∂a²,
    supplement A; Σ = diag(exp φ)). Only the diagonal of H enters: Σ is diagonal.
    """
    g = tf.stop_gradient(action_grad)
    diagonal = action_hess.shape.rank == means.shape.rank
    hess_diag = tf.stop_gradient(action_hess if diagonal else tf.linalg.diag_part(action_hess))
    mean_term = tf.reduce_sum(g * means, axis=-1)
    half_hessian_term = 0.5 * tf.reduce_sum(hess_diag * tf.exp(log_variance)[..., None, :], axis=-1)
    return -tf.reduce_mean(mean_term + half_hessian_term, axis=-1)


def kl_to_target_policy(
    means: tf.Tensor, log_variance: tf.Tensor, target_means: tf.Tensor, target_log_variance: tf.Tensor
) -> tf.Tensor:
    """mean_s KL(N(μθ(s), diag e^φ) ‖ N(μθ̄(s), diag e^φ̄)), the Smoothie-KL penalty (docs/design.md section 2).

    means, target_means: [B, d]; log_variance φ, target_log_variance φ̄: [d]. The target (lagged)
    policy is held fixed. Closed form: ½ Σ_i [v_i/v̄_i + (μ_i − μ̄_i)²/v̄_i − 1 + ln v̄_i − ln v_i],
    computed by tensorflow-probability's diagonal Gaussian.
    """
    scale = tf.exp(0.5 * log_variance)[..., None, :]
    target_scale = tf.stop_gradient(tf.exp(0.5 * target_log_variance))[..., None, :]
    current = tfd.MultivariateNormalDiag(loc=means, scale_diag=tf.broadcast_to(scale, tf.shape(means)))
    target = tfd.MultivariateNormalDiag(
        loc=tf.stop_gradient(target_means), scale_diag=tf.broadcast_to(target_scale, tf.shape(means))
    )
    return tf.reduce_mean(tfd.kl_divergence(current, target), axis=-1)


def ddpg_actor_loss(q_at_means: tf.Tensor) -> tf.Tensor:
    """−mean_s Q(s, μθ(s)), the deterministic policy gradient's surrogate (Silver et al. 2014).

    q_at_means: [B], the critic at the policy's actions with the gradient flowing into μθ.
    """
    return -tf.reduce_mean(q_at_means, axis=-1)
