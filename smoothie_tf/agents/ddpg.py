"""DDPG (Lillicrap et al. 2016), the paper's baseline, in the same framework as Smoothie: a
deterministic policy μθ, a critic Q_w fitted at the replayed actions, Ornstein–Uhlenbeck
exploration."""

from __future__ import annotations

import tensorflow as tf

from smoothie_tf import losses
from smoothie_tf.agents.base import EXPLORATION, ActorCriticAgent, derived_seed
from smoothie_tf.exploration import OrnsteinUhlenbeckNoise
from smoothie_tf.optimizers import member_global_norm
from smoothie_tf.replay import Batch


class DDPGAgent(ActorCriticAgent):
    """DDPG with OU exploration noise (`ou_damping` θ, `ou_stddev` σ).

    DDPGAgent(observation_dim, action_low, action_high, *, seed, **hparams), hparams being
    `AgentConfig`'s fields, or a population with seeds=[...] and hparams=[...] (see
    `ActorCriticAgent`); `kl_penalty`, `initial_log_variance` and `log_variance_lr` are accepted
    and unused (the policy network's φ exists but is never trained). One train step: critic on (s, ã) with
    y = c·r + γ(1 − terminated)·Q_w̄(s', μθ̄(s')) → actor on −Q_w(s, μθ(s)) → Polyak targets.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.exploration_noise = OrnsteinUhlenbeckNoise(
            self.action_dim,
            [c.ou_damping for c in self.configs],
            [c.ou_stddev for c in self.configs],
            seed=[derived_seed(s, EXPLORATION) for s in self.seeds],
            members=self.members,
        )
        self._stationary_variance = tf.constant(self.exploration_noise.stationary_variance, tf.float32)

    def reset_noise(self, members=None) -> None:
        """x ← 0 at each episode start, of every member or of those where the mask `members` is True."""
        self.exploration_noise.reset(members)

    def acting_streams_by_stream(self) -> dict:
        """The OU process's stream (its ε_t) besides the base class's."""
        return {**super().acting_streams_by_stream(), EXPLORATION: self.exploration_noise.streams}

    def _sample_actions(self, observations: tf.Tensor) -> tf.Tensor:
        """μθ(s) + x_t per member, clipped to the action bounds; advances the OU process: [P, d]."""
        actions = self.policy(observations[:, None])[:, 0] + self.exploration_noise()
        return tf.clip_by_value(actions, self.policy.action_low, self.policy.action_high)

    def critic_actions(self, batch: Batch) -> tf.Tensor:
        """The replayed actions themselves (no smoothing)."""
        return batch.actions

    def policy_update(self, observations: tf.Tensor) -> dict:
        """One Adam step on −mean Q_w(s, μθ(s)) (the deterministic policy gradient), per member."""
        variables = self.policy.mean_variables
        with tf.GradientTape() as tape:
            q_at_means = self.critic(observations, self.policy(observations))
            loss = losses.ddpg_actor_loss(q_at_means)
        gradients = tape.gradient(loss, variables)
        self.actor_optimizer.apply(gradients, variables)
        return {
            "loss/policy": loss,
            "policy/q_at_mean": tf.reduce_mean(q_at_means, axis=-1),
            # DDPG's exploration variance per dimension, beside Smoothie's mean Σ_ii on the dashboard.
            "policy/mean_variance": self._stationary_variance,
            "grad_norm/actor": member_global_norm(gradients),
        }

    def state_variables(self) -> dict:
        return {**super().state_variables(), **self.exploration_noise.state_variables()}
