"""Smoothie and Smoothie-KL (docs/design.md section 2): a Gaussian policy N(μθ(s), diag e^φ) learned from
a smoothed critic's action-gradient (for μ) and half its action-Hessian (for Σ)."""

from __future__ import annotations

import tensorflow as tf

from smoothie_tf import losses
from smoothie_tf.agents.base import ActorCriticAgent
from smoothie_tf.optimizers import member_global_norm
from smoothie_tf.replay import Batch

# Critic activations whose action-Hessian vanishes, and where.
ZERO_HESSIAN_ACTIVATIONS = {"relu": "almost everywhere", "linear": "everywhere"}


def where_members(weighted: tf.Tensor, x: tf.Tensor, safe: float) -> tf.Tensor:
    """x for the members where `weighted` [P] is True, `safe` elsewhere: [P, ...] like x.

    A term that only some members weigh (weight 0 beside > 0) is computed from inputs masked by
    this, so that a member of weight 0 computes it at `safe` values: a finite term with finite
    derivatives, which its weight 0 turns into exact zeros, as if the term were not there.
    Masking the weighted term instead would not do: 0·inf is NaN, and so is the gradient
    0 (upstream) × inf (local derivative). A selection: the members that weigh the term compute
    it from their own inputs, the same values."""
    mask = tf.reshape(weighted, [-1] + [1] * (x.shape.rank - 1))
    return tf.where(mask, x, tf.constant(safe, x.dtype))


class SmoothieAgent(ActorCriticAgent):
    """Smoothie, and Smoothie-KL when `kl_penalty` λ > 0.

    SmoothieAgent(observation_dim, action_low, action_high, *, seed, **hparams), hparams being
    `AgentConfig`'s fields (docs/design.md section 4's keys), or a population with seeds=[...] and
    hparams=[...] (see `ActorCriticAgent`); `ou_damping` and `ou_stddev` are accepted and unused.
    One train step, for every member at once, in the order of the paper's algorithm:

      1. phantom actions a = ã + sqrt(e^φ)·ε around the replayed actions (eq. 9);
      2. critic: Adam on mean Huber(Q̃w(s, a) − y), y = c·r + γ(1 − terminated)·Q̃w̄(s', μθ̄(s'));
      3. policy: g, diag H of the just-updated critic at a = μθ(s) by forward jets (eqs. 10–11);
         Adam on −mean[g·μθ(s) + ½ Σ_i H_ii e^φ_i] + λ·KL(π ‖ π_target) (Theorem 1);
      4. Polyak update of critic, mean and φ.

    `log_variance_lr` > 0 trains φ with an Adam of its own at that rate (a remedy for the variance
    collapse of docs/design.md section 2's pitfall; not in the paper, off by default).

    `derivative_bellman_k1` / `_k2` > 0 add the derivative Bellman losses (supplement C, eqs. 6–9)
    to step 2: k1·mean‖∇aQ̃w(s, a) − Σ^{-1/2}x·y‖² + k2·mean‖∇²aQ̃w(s, a) − Σ^{-1/2}(xxᵀ − I)Σ^{-1/2}·y‖²_F
    with x = Σ^{-1/2}(ã − a), ∇aQ̃w and ∇²aQ̃w by forward jets at the phantom actions;
    `derivative_bellman_diagonal` fits diag ∇²aQ̃w alone, `derivative_bellman_baseline` uses
    y − sg(Q̃w(s, a)) in both targets. Off by default (the paper's experiments use k = 0 only).
    """

    trains_log_variance = True

    def __init__(self, *args, **kwargs):
        activation = kwargs.get("critic_activation")
        for record in kwargs.get("hparams") or []:
            activation = record.get("critic_activation", activation)
        if activation in ZERO_HESSIAN_ACTIVATIONS:
            raise ValueError(
                f"Smoothie cannot use a {activation} critic: its action-Hessian is zero "
                f"{ZERO_HESSIAN_ACTIVATIONS[activation]}, so ½·H gives the covariance no gradient and "
                "Σ would never learn; use critic_activation='tanh'"
            )
        super().__init__(*args, **kwargs)

    @property
    def computes_kl(self) -> bool:
        """Whether the policy update evaluates KL(π ‖ π_target): when some member's λ = kl_penalty
        > 0 (the target policy's forward pass is a tenth of a step's FLOPs at the paper's sizes).
        A member with λ = 0 beside it adds 0·KL of masked inputs (`weighted_inputs`): the same
        update as without the term, even where its own KL would overflow."""
        return self.weighs("kl_penalty")

    def weighs(self, key: str) -> bool:
        """Whether some member's weight `key` (kl_penalty, derivative_bellman_k1/k2) is > 0."""
        return any(getattr(config, key) > 0 for config in self.configs)

    def weighted_inputs(self, key: str, inputs: tuple, safe: tuple) -> tuple:
        """The inputs [P, ...] of a term weighted by hparam `key`, with `safe` values (one per
        input) for the members whose weight is 0 (`where_members`). When every member weighs
        the term the inputs are returned as they are, and the compiled step is the one without
        masks."""
        if all(getattr(config, key) > 0 for config in self.configs):
            return inputs
        weighted = self.member_values[key] > 0
        return tuple(where_members(weighted, x, v) for x, v in zip(inputs, safe, strict=True))

    def reset_noise(self, members=None) -> None:
        """Nothing to reset: Smoothie explores with independent draws from its policy."""

    def _sample_actions(self, observations: tf.Tensor) -> tf.Tensor:
        """a ~ N(μθ(s), Σφ) per member, clipped to the action bounds: [P, d]."""
        noise = self.acting_streams.normal([1, self.action_dim])
        return self.policy.sample(observations[:, None], noise)[:, 0]

    def critic_actions(self, batch: Batch) -> tf.Tensor:
        """Phantom actions around the replayed ones, with the current policy's variance (eq. 9)."""
        noise = self.training_streams.normal(batch.actions.shape[1:])
        return losses.phantom_actions(batch.actions, self.policy.variance(), noise)

    @property
    def fits_action_derivatives(self) -> bool:
        """Whether the critic update adds the derivative Bellman losses: some member's k1 or k2 > 0."""
        return self.weighs("derivative_bellman_k1") or self.weighs("derivative_bellman_k2")

    def critic_update(
        self,
        observations: tf.Tensor,
        actions: tf.Tensor,
        targets: tf.Tensor,
        replay_actions: tf.Tensor | None = None,
    ) -> dict:
        """One Adam step on L_Q, at the phantom actions a (`actions`) around the replayed ones ã.

        With k1 = k2 = 0 for every member this is the base class's step, Huber k = 0 alone.
        Otherwise L_Q = mean Huber_δ(Q̃w(s, a) − y) + k1·loss_1 + k2·loss_2 (eqs. 6–9), where loss_k
        fits ∂^kQ̃w(s, a)/∂a^k, from the jets of the critic, to target_k built from
        x = Σ^{-1/2}(ã − a) (`replay_actions` ã: [P, B, d], needed then); Σ = diag(e^φ) of the
        current policy, held fixed. Gradients of the sum are clipped to global norm `grad_clip`.
        "loss/critic" stays the Huber term (comparable with k = 0 runs);
        "loss/derivative_bellman_k1" / "_k2" are loss_1 and loss_2, unweighted, reported for every
        member when some member's weight is > 0. A member with weight 0 beside it adds 0·loss_k of
        masked inputs (`weighted_inputs`): its update is the one without the term even where its
        own loss_k is not finite (a collapsed variance: the targets divide by it); the loss_k it
        reports is its own, computed apart without gradient.
        """
        if not self.fits_action_derivatives:
            return super().critic_update(observations, actions, targets)
        if replay_actions is None:
            raise ValueError("the derivative Bellman losses need the replayed actions ã (replay_actions)")
        values = self.member_values
        fits_2 = self.weighs("derivative_bellman_k2")
        # Only k = 2 needs more than the Hessian's diagonal, which costs O(n·d) in the jets.
        diagonal = not fits_2 or self.config.derivative_bellman_diagonal
        variance = self.policy.variance()
        offsets = losses.standardised_offsets(replay_actions, actions, variance)

        def derivative_bellman_loss(k, offsets, variance, derivative_targets, derivatives):
            """loss_k, of the critic's k-th action-derivatives (eq. 9): [P]."""
            if k == 1:
                target = losses.derivative_bellman_target_1(offsets, variance, derivative_targets)
            elif diagonal:
                target = losses.derivative_bellman_target_2_diagonal(offsets, variance, derivative_targets)
            else:
                target = losses.derivative_bellman_target_2(offsets, variance, derivative_targets)
            return losses.derivative_bellman_loss(
                derivatives, target, action_axes=2 if k == 2 and not diagonal else 1
            )

        with tf.GradientTape() as tape:
            q_values, action_grad, action_hess = self.critic.value_grad_hess(
                observations, actions, diagonal=diagonal
            )
            loss = losses.critic_loss(q_values, targets, values["huber_delta"][:, None])
            total = loss
            # y, or y − sg(Q̃w(s, a)) for the members with the control variate.
            baseline = values["derivative_bellman_baseline"][:, None]
            derivative_targets = targets - baseline * tf.stop_gradient(q_values)
            metrics = {}
            for k, derivatives in ((1, action_grad), (2, action_hess)):
                key = f"derivative_bellman_k{k}"
                if not self.weighs(key):
                    continue
                # The members of weight 0 compute loss_k at x = 0, Σ = I, y = 0, derivatives 0.
                inputs = (offsets, variance, derivative_targets, derivatives)
                masked = self.weighted_inputs(key, inputs, (0.0, 1.0, 0.0, 0.0))
                loss_k = derivative_bellman_loss(k, *masked)
                total += values[key] * loss_k
                with tape.stop_recording():  # every member's own loss_k
                    own = loss_k if masked is inputs else derivative_bellman_loss(k, *inputs)
                metrics[f"loss/{key}"] = own
        norms = self.apply_critic_gradients(total, tape)
        return {
            "loss/critic": loss,
            **metrics,
            "critic/q_mean": tf.reduce_mean(q_values, axis=-1),
            "critic/target_mean": tf.reduce_mean(targets, axis=-1),
            "grad_norm/critic": norms,
        }

    def _train_step(self, batch: Batch) -> dict[str, tf.Tensor]:
        """The base class's step; with derivative Bellman losses, the critic also gets ã."""
        if not self.fits_action_derivatives:
            return super()._train_step(batch)
        targets = self.bellman_targets(batch)
        critic_metrics = self.critic_update(
            batch.observations, self.critic_actions(batch), targets, replay_actions=batch.actions
        )
        policy_metrics = self.policy_update(batch.observations)
        self.update_targets()
        return {**critic_metrics, **policy_metrics}

    def policy_update(self, observations: tf.Tensor) -> dict:
        """One Adam step on Theorem 1's surrogate (+ λ·KL to the target policy), per member.

        Choices docs/design.md leaves open: g and H come from the critic as just updated in this step;
        only diag H is carried through the jets (Σ is diagonal); the actor's gradients are not
        clipped (Table 1 clips Q's only); "policy/kl" is reported only when some λ > 0, each
        member's own (a member with λ = 0 adds 0·KL of masked inputs, `weighted_inputs`). "loss/policy"
        is the surrogate's value (+ λ·KL), whose gradient, not value, is meaningful;
        "policy/q_at_mean" is Q̃w(s, μθ(s)). θ and φ have Adams of their own (φ's at
        `log_variance_lr`, or at the actor's rate when it is 0: then the same update as one Adam).
        """
        log_variance, target_log_variance = self.policy.log_variance, self.target_policy.log_variance
        mean_variables = self.policy.mean_variables
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
                # The members with λ = 0 compute the KL of N(0, I) to itself.
                inputs = (means, log_variance, target_means, target_log_variance)
                masked = self.weighted_inputs("kl_penalty", inputs, (0.0, 0.0, 0.0, 0.0))
                kl = losses.kl_to_target_policy(*masked)
                loss += self.member_values["kl_penalty"] * kl
                if masked is not inputs:
                    with tape.stop_recording():  # every member's own KL, before φ's update
                        kl = losses.kl_to_target_policy(*inputs)
        gradients = tape.gradient(loss, [*mean_variables, log_variance])
        self.actor_optimizer.apply(gradients[:-1], mean_variables)
        self.log_variance_optimizer.apply(gradients[-1:], [log_variance])
        variance = self.policy.variance()
        metrics = {
            "loss/policy": loss,
            "policy/q_at_mean": tf.reduce_mean(q_at_means, axis=-1),
            "policy/hessian_diagonal_mean": tf.reduce_mean(hess_diag, axis=[-2, -1]),
            "policy/mean_variance": tf.reduce_mean(variance, axis=-1),
            "policy/variance": variance,
            "grad_norm/actor": member_global_norm(gradients),
        }
        if self.computes_kl:
            metrics["policy/kl"] = kl
        return metrics
