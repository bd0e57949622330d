"""DDPG (Lillicrap et al. 2016), the paper's baseline, in the same framework as Smoothie: a
deterministic policy μθ, a critic Q_w fitted at the replayed actions, Ornstein–Uhlenbeck
exploration."""

from __future__ import annotations

import tensorflow as tf

from smoothie_tf import losses
from smoothie_tf.agents.base import EXPLORATION, ActorCriticAgent, derived_seed
from smoothie_tf.exploration import OrnsteinUhlenbeckNoise
from smoothie_tf.replay import Batch


class DDPGAgent(ActorCriticAgent):
    """DDPG with OU exploration noise (`ou_damping` θ, `ou_stddev` σ).

    DDPGAgent(observation_dim, action_low, action_high, *, seed, **hparams), hparams being
    `AgentConfig`'s fields; `kl_penalty`, `initial_log_variance` and `log_variance_lr` are accepted
    and unused (the policy network's φ exists but is never trained). One train step: critic on (s, ã) with
    y = c·r + γ(1 − terminated)·Q_w̄(s', μθ̄(s')) → actor on −Q_w(s, μθ(s)) → Polyak targets.
    """

    def __init__(self, observation_dim: int, action_low, action_high, *, seed: int, **hparams):
        super().__init__(observation_dim, action_low, action_high, seed=seed, **hparams)
        self.exploration_noise = OrnsteinUhlenbeckNoise(
            self.action_dim,
            self.config.ou_damping,
            self.config.ou_stddev,
            seed=derived_seed(self.seed, EXPLORATION),
        )

    @property
    def actor_variables(self) -> list[tf.Variable]:
        """θ, the mean network."""
        return self.policy.mean_variables

    def reset_noise(self) -> None:
        """x ← 0 at each episode start."""
        self.exploration_noise.reset()

    def acting_generators(self) -> dict[int, tf.random.Generator]:
        """The OU process's generator (its ε_t) besides the base class's."""
        return {**super().acting_generators(), EXPLORATION: self.exploration_noise.generator}

    def _sample_action(self, observation: tf.Tensor) -> tf.Tensor:
        """μθ(s) + x_t, clipped to the action bounds; advances the OU process: [d]."""
        action = self.policy(observation[None])[0] + self.exploration_noise()
        return tf.clip_by_value(action, self.policy.action_low, self.policy.action_high)

    def critic_actions(self, batch: Batch) -> tf.Tensor:
        """The replayed actions themselves (no smoothing)."""
        return batch.actions

    def policy_update(self, observations: tf.Tensor) -> dict:
        """One Adam step on −mean Q_w(s, μθ(s)) (the deterministic policy gradient)."""
        variables = self.actor_variables
        with tf.GradientTape() as tape:
            q_at_means = self.critic(observations, self.policy(observations))
            loss = losses.ddpg_actor_loss(q_at_means)
        gradients = tape.gradient(loss, variables)
        self.actor_optimizer.apply(gradients, variables)
        return {
            "loss/policy": loss,
            "policy/q_at_mean": tf.reduce_mean(q_at_means),
            # DDPG's exploration variance per dimension, beside Smoothie's mean Σ_ii on the dashboard.
            "policy/mean_variance": tf.constant(self.exploration_noise.stationary_variance, tf.float32),
            "grad_norm/actor": tf.linalg.global_norm(gradients),
        }

    def checkpoint_items(self) -> dict:
        return {**super().checkpoint_items(), "exploration_noise": self.exploration_noise}
