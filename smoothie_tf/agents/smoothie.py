"""Smoothie and Smoothie-KL (SPEC.md section 2): a Gaussian policy N(μθ(s), diag e^φ) learned from
a smoothed critic's action-gradient (for μ) and half its action-Hessian (for Σ)."""

from __future__ import annotations

import keras
import tensorflow as tf

from smoothie_tf import losses
from smoothie_tf.agents.base import ActorCriticAgent
from smoothie_tf.replay import Batch

# Critic activations whose action-Hessian vanishes, and where.
ZERO_HESSIAN_ACTIVATIONS = {"relu": "almost everywhere", "linear": "everywhere"}


class SmoothieAgent(ActorCriticAgent):
    """Smoothie, and Smoothie-KL when `kl_penalty` λ > 0.

    SmoothieAgent(observation_dim, action_low, action_high, *, seed, **hparams), hparams being
    `AgentConfig`'s fields (SPEC.md section 4's keys); `ou_damping` and `ou_stddev` are accepted
    and unused. One train step, in the order of the paper's algorithm:

      1. phantom actions a = ã + sqrt(e^φ)·ε around the replayed actions (eq. 9);
      2. critic: Adam on mean Huber(Q̃w(s, a) − y), y = c·r + γ(1 − terminated)·Q̃w̄(s', μθ̄(s'));
      3. policy: g, diag H of the just-updated critic at a = μθ(s) by forward jets (eqs. 10–11);
         Adam on −mean[g·μθ(s) + ½ Σ_i H_ii e^φ_i] + λ·KL(π ‖ π_target) (Theorem 1);
      4. Polyak update of critic, mean and φ.

    `log_variance_lr` > 0 trains φ with an Adam of its own at that rate (a remedy for the variance
    collapse of SPEC.md section 2's pitfall; not in the paper, off by default).
    """

    def __init__(self, observation_dim: int, action_low, action_high, *, seed: int, **hparams):
        activation = hparams.get("critic_activation")
        if activation in ZERO_HESSIAN_ACTIVATIONS:
            raise ValueError(
                f"Smoothie cannot use a {activation} critic: its action-Hessian is zero "
                f"{ZERO_HESSIAN_ACTIVATIONS[activation]}, so ½·H gives the covariance no gradient and "
                "Σ would never learn; use critic_activation='tanh'"
            )
        super().__init__(observation_dim, action_low, action_high, seed=seed, **hparams)
        self.log_variance_optimizer = None
        if self.config.log_variance_lr > 0:
            self.log_variance_optimizer = keras.optimizers.Adam(
                self.config.log_variance_lr, name="log_variance_adam"
            )
            self.log_variance_optimizer.build([self.policy.log_variance])

    @property
    def computes_kl(self) -> bool:
        """Whether the policy update evaluates KL(π ‖ π_target): only when λ = kl_penalty > 0 (the
        target policy's forward pass is a tenth of a step's FLOPs at the paper's sizes)."""
        return self.config.kl_penalty > 0

    def reset_noise(self) -> None:
        """Nothing to reset: Smoothie explores with independent draws from its policy."""

    @property
    def actor_variables(self) -> list[tf.Variable]:
        """θ (the mean network), and φ (the log-variances) unless φ has its own optimizer."""
        if self.config.log_variance_lr > 0:
            return list(self.policy.mean_variables)
        return [*self.policy.mean_variables, self.policy.log_variance]

    def checkpoint_items(self) -> dict:
        items = super().checkpoint_items()
        if self.log_variance_optimizer is not None:
            items["log_variance_optimizer"] = self.log_variance_optimizer
        return items

    def _sample_action(self, observation: tf.Tensor) -> tf.Tensor:
        """a ~ N(μθ(s), Σφ), clipped to the action bounds: [d]."""
        return self.policy.sample(observation[None], generator=self.acting_generator, clip=True)[0]

    def critic_actions(self, batch: Batch) -> tf.Tensor:
        """Phantom actions around the replayed ones, with the current policy's variance (eq. 9)."""
        noise = self.training_generator.normal(tf.shape(batch.actions))
        return losses.phantom_actions(batch.actions, self.policy.variance(), noise)

    def policy_update(self, observations: tf.Tensor) -> dict:
        """One Adam step on Theorem 1's surrogate (+ λ·KL to the target policy).

        Choices SPEC.md leaves open: g and H come from the critic as just updated in this step;
        only diag H is carried through the jets (Σ is diagonal); the actor's gradients are not
        clipped (Table 1 clips Q's only); "policy/kl" is reported only when λ > 0. "loss/policy" is
        the surrogate's value (+ λ·KL), whose gradient, not value, is meaningful;
        "policy/q_at_mean" is Q̃w(s, μθ(s)).
        """
        log_variance, target_log_variance = self.policy.log_variance, self.target_policy.log_variance
        variables = [*self.policy.mean_variables, log_variance]
        with tf.GradientTape() as tape:
            means = self.policy(observations)
            with tape.stop_recording():  # g and H are held fixed: no second-order terms
                q_at_means, action_grad, hess_diag = self.critic.value_grad_hess(
                    observations, means, diagonal=True
                )
            loss = losses.smoothie_policy_surrogate(means, log_variance, action_grad, hess_diag)
            if self.computes_kl:
                with tape.stop_recording():
                    target_means = self.target_policy(observations)
                kl = losses.kl_to_target_policy(means, log_variance, target_means, target_log_variance)
                loss += self.config.kl_penalty * kl
        gradients = tape.gradient(loss, variables)
        if self.log_variance_optimizer is None:
            self.actor_optimizer.apply(gradients, variables)
        else:
            self.actor_optimizer.apply(gradients[:-1], variables[:-1])
            self.log_variance_optimizer.apply(gradients[-1:], variables[-1:])
        variance = self.policy.variance()
        metrics = {
            "loss/policy": loss,
            "policy/q_at_mean": tf.reduce_mean(q_at_means),
            "policy/hessian_diagonal_mean": tf.reduce_mean(hess_diag),
            "policy/mean_variance": tf.reduce_mean(variance),
            "policy/variance": variance,
            "grad_norm/actor": tf.linalg.global_norm(gradients),
        }
        if self.computes_kl:
            metrics["policy/kl"] = kl
        return metrics
