"""What Smoothie and DDPG share: networks, their target copies, optimizers, generators, the
critic's update, the Polyak update of the targets, and the compiled acting and training functions.

Acting (`act`, `reset_noise`) is kept apart from learning (`train_step`). All randomness comes
from tf.random.Generators owned by the agent and all state lives in tf variables, so
`tf.train.Checkpoint(**agent.checkpoint_items())` captures an agent completely and a restore
continues bit for bit.
"""

from __future__ import annotations

import abc
import contextlib
import random
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from smoothie_tf import losses
from smoothie_tf.agents.config import AgentConfig
from smoothie_tf.networks import GaussianPolicy, SmoothedCritic
from smoothie_tf.replay import Batch

# Streams of the agent's seed: network initialisation, the train step's noise, acting noise.
INITIALISATION, TRAINING, ACTING, EXPLORATION = range(4)
# The train step's metric that says whether the policy's and the critic's weights are finite after it.
FINITE = "finite"


def derived_seed(seed: int, stream: int) -> int:
    """An independent 63-bit seed for one use of the agent's seed."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@contextlib.contextmanager
def seeded_initialisers(seed: int):
    """Keras draws the seed of every initialiser built without one from Python's `random`;
    seeding it here (and restoring it after) makes the networks a function of `seed` alone,
    without touching any global seed the caller relies on."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def polyak_update(targets: Sequence[tf.Variable], sources: Sequence[tf.Variable], tau: float) -> None:
    """x̄ ← (1 − τ)·x̄ + τ·x for each pair, τ = target_lag (SPEC.md section 2, "Targets")."""
    for target, source in zip(targets, sources, strict=True):
        target.assign((1.0 - tau) * target + tau * source)


def clip_gradients(gradients: Sequence[tf.Tensor], clip_norm: float) -> tuple[list[tf.Tensor], tf.Tensor]:
    """g·min(1, c/‖g‖) with ‖g‖ the global norm over all tensors (Table 1's "clipping on
    gradients of Q", c = grad_clip). Returns the clipped gradients and ‖g‖ before clipping."""
    clipped, norm = tf.clip_by_global_norm(gradients, clip_norm)
    return clipped, norm


class ActorCriticAgent(abc.ABC):
    """An actor-critic learner with target networks; subclasses give the losses and acting.

    Subclasses define `actor_variables`, `critic_actions`, `policy_update`, `_sample_action`,
    `reset_noise` and may extend `checkpoint_items` and `acting_generators`; `train_step` runs
    critic update → policy update → targets, and reports with its metrics whether the updated
    weights are all finite (`FINITE`).
    """

    # XLA fuses the step's many small ops: about 1.7x the updates per second at Hopper's sizes on
    # a 2-core CPU. A class attribute, so that a subclass (or a benchmark) can compare without it.
    jit_compile = True

    def __init__(self, observation_dim: int, action_low, action_high, *, seed: int, **hparams):
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.config = AgentConfig.from_keywords(type(self).__name__, hparams)
        self.seed = int(seed)
        self.observation_dim = int(observation_dim)
        if self.observation_dim < 1:
            raise ValueError(f"observation_dim must be >= 1, got {observation_dim}")
        config = self.config

        with seeded_initialisers(derived_seed(self.seed, INITIALISATION)):
            self.policy, self.target_policy = (
                GaussianPolicy(
                    action_low,
                    action_high,
                    hidden=config.actor_hidden,
                    initial_log_variance=config.initial_log_variance,
                    name=name,
                )
                for name in ("policy", "target_policy")
            )
            self.action_dim = self.policy.action_dim
            self.critic, self.target_critic = (
                SmoothedCritic(
                    self.action_dim,
                    state_embedding=config.critic_state_embedding,
                    hidden=config.critic_hidden,
                    activation=config.critic_activation,
                    name=name,
                )
                for name in ("critic", "target_critic")
            )
        states = tf.zeros([1, self.observation_dim])
        actions = tf.zeros([1, self.action_dim])
        for policy, critic in ((self.policy, self.critic), (self.target_policy, self.target_critic)):
            policy(states)
            critic(states, actions)
        for target, source in ((self.target_policy, self.policy), (self.target_critic, self.critic)):
            for t, s in zip(target.variables, source.variables, strict=True):
                t.assign(s)

        # Built now, not in the first step, so that a checkpoint restores into existing slots.
        self.actor_optimizer = keras.optimizers.Adam(config.actor_lr, name="actor_adam")
        self.critic_optimizer = keras.optimizers.Adam(config.critic_lr, name="critic_adam")
        self.actor_optimizer.build(self.actor_variables)
        self.critic_optimizer.build(self.critic.trainable_variables)
        self.training_generator = tf.random.Generator.from_seed(derived_seed(self.seed, TRAINING))
        self.acting_generator = tf.random.Generator.from_seed(derived_seed(self.seed, ACTING))

        b, s, d = config.batch_size, self.observation_dim, self.action_dim
        self.batch_spec = Batch(
            observations=tf.TensorSpec([b, s], tf.float32, name="observations"),
            actions=tf.TensorSpec([b, d], tf.float32, name="actions"),
            rewards=tf.TensorSpec([b], tf.float32, name="rewards"),
            next_observations=tf.TensorSpec([b, s], tf.float32, name="next_observations"),
            terminated=tf.TensorSpec([b], tf.float32, name="terminated"),
        )
        self.train_step = tf.function(
            self._checked_train_step, input_signature=[self.batch_spec], jit_compile=self.jit_compile
        )
        observation_spec = tf.TensorSpec([self.observation_dim], tf.float32, name="observation")
        self.train_step_and_act = tf.function(
            self._train_step_and_act,
            input_signature=[self.batch_spec, observation_spec],
            jit_compile=self.jit_compile,
        )
        self._act_functions: dict[bool, tf.types.experimental.ConcreteFunction] = {}

    # --- acting ----------------------------------------------------------------------------

    def act(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """An action [d] for one observation [S], inside the action bounds.

        deterministic: the mean action μθ(s); otherwise the learner's exploration (see subclass).
        """
        observation = np.asarray(observation, dtype=np.float32)
        if observation.shape != (self.observation_dim,):
            raise ValueError(
                f"observation must have shape [{self.observation_dim}], got {list(observation.shape)}"
            )
        return self.act_function(deterministic)(tf.constant(observation)).numpy()

    def act_function(self, deterministic: bool = False) -> tf.types.experimental.ConcreteFunction:
        """The compiled acting graph, observation [S] float32 -> action [d], traced on first use.

        XLA-compiled and called as a concrete function: per call this halves the dispatch cost,
        which is most of an action's cost for networks of this size.
        """
        deterministic = bool(deterministic)
        if deterministic not in self._act_functions:
            graph = self._mean_action_graph if deterministic else self._sample_action
            spec = tf.TensorSpec([self.observation_dim], tf.float32, name="observation")
            function = tf.function(graph, input_signature=[spec], jit_compile=True)
            self._act_functions[deterministic] = function.get_concrete_function()
        return self._act_functions[deterministic]

    @abc.abstractmethod
    def reset_noise(self) -> None:
        """Called at each episode start."""

    def acting_generators(self) -> dict[int, tf.random.Generator]:
        """Every generator the exploring action draws from, keyed by its stream of the seed."""
        return {ACTING: self.acting_generator}

    def reseed_acting(self, seed: int) -> None:
        """Makes the exploring actions from here on a function of `seed` alone (and of the
        weights): each acting generator restarts from its stream of `seed`, and the exploration
        noise is reset. `reseed_acting(agent.seed)` restores the streams the agent was built with."""
        for stream, generator in self.acting_generators().items():
            generator.reset_from_seed(derived_seed(seed, stream))
        self.reset_noise()

    def _mean_action_graph(self, observation: tf.Tensor) -> tf.Tensor:
        return self.policy(observation[None])[0]

    @abc.abstractmethod
    def _sample_action(self, observation: tf.Tensor) -> tf.Tensor:
        """The exploring action for one observation [S]: [d], inside the bounds."""

    # --- learning --------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def actor_variables(self) -> list[tf.Variable]:
        """What the actor optimizer trains."""

    def bellman_targets(self, batch: Batch) -> tf.Tensor:
        """y = c·r + γ(1 − terminated)·Q̃w̄(s', μθ̄(s')) from the target networks (eq. 5): [B]."""
        next_means = self.target_policy(batch.next_observations)
        next_values = self.target_critic(batch.next_observations, next_means)
        return losses.smoothed_bellman_target(
            batch.rewards, batch.terminated, next_values, self.config.reward_scale, self.config.discount
        )

    @abc.abstractmethod
    def critic_actions(self, batch: Batch) -> tf.Tensor:
        """The actions the critic is fitted at: [B, d]."""

    def critic_update(self, observations: tf.Tensor, actions: tf.Tensor, targets: tf.Tensor) -> dict:
        """One Adam step on L_Q = mean Huber_δ(Q̃w(s, a) − y), gradients clipped to global norm.

        "critic/q_mean" is the mean of Q̃w(s, a) at these actions before the step;
        "grad_norm/critic" is the global norm before clipping. Adam keeps Keras's defaults
        (β1 0.9, β2 0.999, ε 1e-7); the paper does not give them.
        """
        variables = self.critic.trainable_variables
        with tf.GradientTape() as tape:
            q_values = self.critic(observations, actions)
            loss = losses.critic_loss(q_values, targets, self.config.huber_delta)
        clipped, norm = clip_gradients(tape.gradient(loss, variables), self.config.grad_clip)
        self.critic_optimizer.apply(clipped, variables)
        return {
            "loss/critic": loss,
            "critic/q_mean": tf.reduce_mean(q_values),
            "critic/target_mean": tf.reduce_mean(targets),
            "grad_norm/critic": norm,
        }

    @abc.abstractmethod
    def policy_update(self, observations: tf.Tensor) -> dict:
        """One Adam step on the actor's loss; returns the policy's dashboard figures."""

    def update_targets(self) -> None:
        """Polyak averaging of the critic and the whole policy (mean and φ)."""
        tau = self.config.target_lag
        polyak_update(self.target_critic.variables, self.critic.variables, tau)
        polyak_update(self.target_policy.variables, self.policy.variables, tau)

    def _train_step(self, batch: Batch) -> dict[str, tf.Tensor]:
        """Bellman targets → critic update → policy update → target update."""
        targets = self.bellman_targets(batch)
        critic_metrics = self.critic_update(batch.observations, self.critic_actions(batch), targets)
        policy_metrics = self.policy_update(batch.observations)
        self.update_targets()
        return {**critic_metrics, **policy_metrics}

    def weights_are_finite(self) -> tf.Tensor:
        """Whether every weight of the policy and the critic is finite: a scalar bool.

        The targets are left out: x̄ ← (1 − τ)x̄ + τx is a convex combination, so they stay finite
        as long as this check has held after every update, and checking them would cost about as
        much again (this check: 3–11% of a train step's CPU time at Hopper's sizes, 2-core CPU).
        """
        variables = [v for network in (self.policy, self.critic) for v in network.variables]
        variables = [v for v in variables if tf.as_dtype(v.dtype).is_floating]
        return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in variables]))

    def _checked_train_step(self, batch: Batch) -> dict[str, tf.Tensor]:
        """`_train_step`, and `FINITE`: whether the weights it leaves are all finite
        (`weights_are_finite`). Its losses are computed before the updates, so an update that breaks
        the weights shows here first; the check is a few reductions inside the same compiled call."""
        metrics = self._train_step(batch)
        return {**metrics, FINITE: self.weights_are_finite()}

    def _train_step_and_act(self, batch: Batch, observation: tf.Tensor) -> tuple[dict, tf.Tensor]:
        """`train_step(batch)`, then the exploring action [d] for `observation` from the updated
        policy: what the training loop does every environment step, in one compiled call, which
        saves the dispatch of a second one (most of an action's cost at these sizes)."""
        metrics = self._checked_train_step(batch)
        return metrics, self._sample_action(observation)

    # --- saving ----------------------------------------------------------------------------

    def checkpoint_items(self) -> dict:
        """Everything the agent's future depends on, for tf.train.Checkpoint(**items)."""
        return {
            "policy": self.policy,
            "critic": self.critic,
            "target_policy": self.target_policy,
            "target_critic": self.target_critic,
            "actor_optimizer": self.actor_optimizer,
            "critic_optimizer": self.critic_optimizer,
            "training_generator": self.training_generator,
            "acting_generator": self.acting_generator,
        }
