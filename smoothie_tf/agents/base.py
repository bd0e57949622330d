"""What Smoothie and DDPG share: networks, their target copies, optimizers, random streams, the
critic's update, the Polyak update of the targets, and the compiled acting and training functions.

An agent is a *population* of P ≥ 1 members (docs/design.md section 9): every network weight, target,
optimizer slot, noise state and random stream carries a leading member axis [P, ...], and one
compiled step updates every member. Members differ in seed and in any hparam that does not change
a shape (all but `SHAPE_KEYS`); member k's update depends on member k alone. A single run is a population
of one, built as `SmoothieAgent(observation_dim, low, high, seed=0, **hparams)`; a population as
`SmoothieAgent(observation_dim, low, high, seeds=[0, 1, 2], hparams=[{...}, {...}, {...}])`.

All randomness comes from counter-based streams owned by the agent and all state lives in tf
variables (`state_variables`, each with the member axis first), so saving member k's slices
(`member_state(k)`) and loading them back (`load_member_states`) continues bit for bit.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from smoothie_tf import losses
from smoothie_tf.agents.config import AgentConfig, member_configs
from smoothie_tf.networks import GaussianPolicy, SmoothedCritic
from smoothie_tf.optimizers import MemberAdam, clip_by_member_norm, member_all_finite, polyak_update
from smoothie_tf.replay import Batch
from smoothie_tf.streams import MemberStreams

# Streams of a member's seed: policy initialisation, the train step's noise, acting noise,
# exploration noise, critic initialisation.
INITIALISATION, TRAINING, ACTING, EXPLORATION, CRITIC_INITIALISATION = range(5)
# The train step's metric that says, per member, whether the policy's and the critic's weights
# are finite after it.
FINITE = "finite"
# The train step's metric that says, per member, whether its losses and its weights are finite.
HEALTHY = "healthy"


def derived_seed(seed: int, stream: int) -> int:
    """An independent 63-bit seed for one use of a member's seed."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class ActorCriticAgent(abc.ABC):
    """An actor-critic learner with target networks; subclasses give the losses and acting.

    Subclasses define `trains_log_variance`, `critic_actions`, `policy_update`,
    `_sample_actions`, `reset_noise` and may extend `state_variables`; `train_step` runs critic
    update → policy update → targets, and reports with its metrics, per member, whether the
    updated weights are all finite (`FINITE`) and whether the losses are too (`HEALTHY`).

    Per-member values of the hparams are [P] float32 constants in `self.member_values`;
    `self.config` is member 0's config (the shape-giving keys are the same for every member) and
    `self.configs` every member's.
    """

    # XLA fuses the step's many small ops: about 1.7x the updates per second at Hopper's sizes on
    # a 2-core CPU. A class attribute, so that a subclass (or a benchmark) can compare without it.
    jit_compile = True
    trains_log_variance = False

    def __init__(
        self,
        observation_dim: int,
        action_low,
        action_high,
        *,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
        hparams: Sequence[Mapping] | None = None,
        **common,
    ):
        if (seed is None) == (seeds is None):
            raise ValueError("give either seed (one run) or seeds (a population), not both or neither")
        if seed is not None:
            if hparams is not None:
                raise ValueError("hparams per member go with seeds=[...]; one run takes keyword hparams")
            seeds = [_check_seed(seed)]
        seeds = [_check_seed(s) for s in seeds]
        if not seeds:
            raise ValueError("a population needs at least one member")
        if hparams is None:
            hparams = [{} for _ in seeds]
        if len(hparams) != len(seeds):
            raise ValueError(f"{len(seeds)} seeds but {len(hparams)} hparam records")
        self.configs: list[AgentConfig] = member_configs(
            type(self).__name__, [{**common, **member} for member in hparams]
        )
        self.config = self.configs[0]
        self.seeds = seeds
        self.members = len(seeds)
        self.seed = seeds[0]
        self.observation_dim = int(observation_dim)
        if self.observation_dim < 1:
            raise ValueError(f"observation_dim must be >= 1, got {observation_dim}")
        config, P = self.config, self.members
        self.member_values = {
            key: tf.constant([float(getattr(c, key)) for c in self.configs], tf.float32)
            for key in (
                "reward_scale",
                "discount",
                "target_lag",
                "grad_clip",
                "huber_delta",
                "kl_penalty",
                "derivative_bellman_k1",
                "derivative_bellman_k2",
                "derivative_bellman_baseline",
            )
        }

        policy_seeds = [derived_seed(s, INITIALISATION) for s in seeds]
        critic_seeds = [derived_seed(s, CRITIC_INITIALISATION) for s in seeds]
        self.policy, self.target_policy = (
            GaussianPolicy(
                action_low,
                action_high,
                hidden=config.actor_hidden,
                initial_log_variance=[c.initial_log_variance for c in self.configs],
                members=P,
                initial_seeds=policy_seeds,
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
                members=P,
                initial_seeds=critic_seeds,
                name=name,
            )
            for name in ("critic", "target_critic")
        )
        states = tf.zeros([P, 1, self.observation_dim])
        actions = tf.zeros([P, 1, self.action_dim])
        for policy, critic in ((self.policy, self.critic), (self.target_policy, self.target_critic)):
            policy(states)
            critic(states, actions)
        for target, source in ((self.target_policy, self.policy), (self.target_critic, self.critic)):
            for t, s in zip(target.variables, source.variables, strict=True):
                t.assign(s)

        self.actor_optimizer = MemberAdam(
            self.policy.mean_variables, [c.actor_lr for c in self.configs], name="actor_adam"
        )
        self.critic_optimizer = MemberAdam(
            self.critic.trainable_variables, [c.critic_lr for c in self.configs], name="critic_adam"
        )
        # φ has an Adam of its own; at the actor's rate (log_variance_lr = 0, the paper's) this is
        # the same update as sharing the actor's Adam: Adam acts elementwise.
        self.log_variance_optimizer = None
        if self.trains_log_variance:
            rates = [c.log_variance_lr if c.log_variance_lr > 0 else c.actor_lr for c in self.configs]
            self.log_variance_optimizer = MemberAdam(
                [self.policy.log_variance], rates, name="log_variance_adam"
            )
        self.training_streams = MemberStreams([derived_seed(s, TRAINING) for s in seeds], name="training")
        self.acting_streams = MemberStreams([derived_seed(s, ACTING) for s in seeds], name="acting")

        b, s, d = config.batch_size, self.observation_dim, self.action_dim
        self.batch_spec = Batch(
            observations=tf.TensorSpec([P, b, s], tf.float32, name="observations"),
            actions=tf.TensorSpec([P, b, d], tf.float32, name="actions"),
            rewards=tf.TensorSpec([P, b], tf.float32, name="rewards"),
            next_observations=tf.TensorSpec([P, b, s], tf.float32, name="next_observations"),
            terminated=tf.TensorSpec([P, b], tf.float32, name="terminated"),
        )
        observations_spec = tf.TensorSpec([P, s], tf.float32, name="observations")
        self.population_train_step = tf.function(
            self._checked_train_step, input_signature=[self.batch_spec], jit_compile=self.jit_compile
        )
        self.population_train_step_and_act = tf.function(
            self._train_step_and_act,
            input_signature=[self.batch_spec, observations_spec],
            jit_compile=self.jit_compile,
        )
        self._act_functions: dict[bool, tf.types.experimental.ConcreteFunction] = {}

    # --- acting ----------------------------------------------------------------------------

    def act(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """An action [d] for one observation [S], inside the action bounds (one run, P = 1).

        deterministic: the mean action μθ(s); otherwise the learner's exploration (see subclass).
        """
        if self.members != 1:
            raise ValueError(
                f"act() is for one run; this population has {self.members} members: use act_population"
            )
        observation = np.asarray(observation, dtype=np.float32)
        if observation.shape != (self.observation_dim,):
            raise ValueError(
                f"observation must have shape [{self.observation_dim}], got {list(observation.shape)}"
            )
        return self.act_function(deterministic)(tf.constant(observation[None])).numpy()[0]

    def act_population(self, observations: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """One action per member [P, d] for one observation per member [P, S]."""
        observations = np.asarray(observations, dtype=np.float32)
        if observations.shape != (self.members, self.observation_dim):
            raise ValueError(
                f"observations must have shape [{self.members}, {self.observation_dim}], "
                f"got {list(observations.shape)}"
            )
        return self.act_function(deterministic)(tf.constant(observations)).numpy()

    def act_function(self, deterministic: bool = False) -> tf.types.experimental.ConcreteFunction:
        """The compiled acting graph, observations [P, S] float32 -> actions [P, d], traced on first use.

        XLA-compiled and called as a concrete function: per call this halves the dispatch cost,
        which is most of an action's cost for networks of this size.
        """
        deterministic = bool(deterministic)
        if deterministic not in self._act_functions:
            graph = self._mean_actions if deterministic else self._sample_actions
            spec = tf.TensorSpec([self.members, self.observation_dim], tf.float32, name="observations")
            function = tf.function(graph, input_signature=[spec], jit_compile=True)
            self._act_functions[deterministic] = function.get_concrete_function()
        return self._act_functions[deterministic]

    @abc.abstractmethod
    def reset_noise(self, members=None) -> None:
        """Called at each episode start: of every member, or of those where the bool mask
        `members` [P] is True."""

    def acting_streams_by_stream(self) -> dict[int, MemberStreams]:
        """Every random stream the exploring action draws from, keyed by its stream of the seed."""
        return {ACTING: self.acting_streams}

    def reseed_acting(self, seed: int | Sequence[int]) -> None:
        """Makes the exploring actions from here on a function of `seed` alone (and of the
        weights), one seed per member (or one for a single run): each acting stream restarts from
        its stream of `seed`, and the exploration noise is reset. `reseed_acting(agent.seeds)`
        restores the streams the agent was built with."""
        seeds = [seed] if isinstance(seed, int | np.integer) else list(seed)
        if len(seeds) != self.members:
            raise ValueError(f"reseed_acting needs {self.members} seeds, got {len(seeds)}")
        for stream, streams in self.acting_streams_by_stream().items():
            streams.reset_from_seeds([derived_seed(int(s), stream) for s in seeds])
        self.reset_noise()

    def _mean_actions(self, observations: tf.Tensor) -> tf.Tensor:
        return self.policy(observations[:, None])[:, 0]

    @abc.abstractmethod
    def _sample_actions(self, observations: tf.Tensor) -> tf.Tensor:
        """The exploring actions for one observation per member [P, S]: [P, d], inside the bounds."""

    # --- learning --------------------------------------------------------------------------

    def bellman_targets(self, batch: Batch) -> tf.Tensor:
        """y = c·r + γ(1 − terminated)·Q̃w̄(s', μθ̄(s')) from the target networks (eq. 5): [P, B]."""
        next_means = self.target_policy(batch.next_observations)
        next_values = self.target_critic(batch.next_observations, next_means)
        values = self.member_values
        return losses.smoothed_bellman_target(
            batch.rewards,
            batch.terminated,
            next_values,
            values["reward_scale"][:, None],
            values["discount"][:, None],
        )

    @abc.abstractmethod
    def critic_actions(self, batch: Batch) -> tf.Tensor:
        """The actions the critic is fitted at: [P, B, d]."""

    def apply_critic_gradients(self, total_loss: tf.Tensor, tape: tf.GradientTape) -> tf.Tensor:
        """One Adam step of every member on its critic loss (`total_loss` [P]), each member's
        gradients clipped to its global norm `grad_clip`; returns the norms before clipping [P]."""
        variables = self.critic.trainable_variables
        # tape.gradient of the [P] losses is that of their sum; member k's loss depends on member
        # k's weights alone, so each member gets its own gradient.
        gradients = tape.gradient(total_loss, variables)
        clipped, norms = clip_by_member_norm(gradients, self.member_values["grad_clip"])
        self.critic_optimizer.apply(clipped, variables)
        return norms

    def critic_update(self, observations: tf.Tensor, actions: tf.Tensor, targets: tf.Tensor) -> dict:
        """One Adam step on L_Q = mean Huber_δ(Q̃w(s, a) − y), gradients clipped to global norm.

        "critic/q_mean" is the mean of Q̃w(s, a) at these actions before the step;
        "grad_norm/critic" is the global norm before clipping; each is [P]. Adam keeps Keras's
        defaults (β1 0.9, β2 0.999, ε 1e-7); the paper does not give them.
        """
        with tf.GradientTape() as tape:
            q_values = self.critic(observations, actions)
            loss = losses.critic_loss(q_values, targets, self.member_values["huber_delta"][:, None])
        norms = self.apply_critic_gradients(loss, tape)
        return {
            "loss/critic": loss,
            "critic/q_mean": tf.reduce_mean(q_values, axis=-1),
            "critic/target_mean": tf.reduce_mean(targets, axis=-1),
            "grad_norm/critic": norms,
        }

    @abc.abstractmethod
    def policy_update(self, observations: tf.Tensor) -> dict:
        """One Adam step on the actor's loss; returns the policy's dashboard figures, each [P, ...]."""

    def update_targets(self) -> None:
        """Polyak averaging of the critic and the whole policy (mean and φ), τ per member."""
        tau = self.member_values["target_lag"]
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
        """Whether every weight of each member's policy and critic is finite: bool [P].

        The targets are left out: x̄ ← (1 − τ)x̄ + τx is a convex combination, so they stay finite
        as long as this check has held after every update, and checking them would cost about as
        much again (this check, its large tensors counted by a matmul (`member_all_finite`): 0.17 ms
        of a 17.6 ms population step at Hopper's sizes, P = 8, one thread, measured by CPU time).
        """
        variables = [v for network in (self.policy, self.critic) for v in network.variables]
        checks = [member_all_finite(v) for v in variables if tf.as_dtype(v.dtype).is_floating]
        return tf.reduce_all(tf.stack(checks), axis=0)

    def _checked_train_step(self, batch: Batch) -> dict[str, tf.Tensor]:
        """`_train_step`, with `FINITE`: whether the weights it leaves are all finite
        (`weights_are_finite`), and `HEALTHY`: whether they and the step's losses are, per member.
        The losses are computed before the updates, so an update that breaks the weights shows
        here first; the checks are a few reductions inside the same compiled call."""
        metrics = self._train_step(batch)
        finite = self.weights_are_finite()
        losses_finite = tf.math.is_finite(metrics["loss/critic"]) & tf.math.is_finite(metrics["loss/policy"])
        return {**metrics, FINITE: finite, HEALTHY: finite & losses_finite}

    def _train_step_and_act(self, batch: Batch, observations: tf.Tensor) -> tuple[dict, tf.Tensor]:
        """`train_step(batch)`, then the exploring actions [P, d] for `observations` [P, S] from
        the updated policies: what the training loop does every environment step, in one compiled
        call, which saves the dispatch of a second one (most of an action's cost at these sizes)."""
        metrics = self._checked_train_step(batch)
        return metrics, self._sample_actions(observations)

    def train_step(self, batch: Batch) -> dict[str, tf.Tensor]:
        """One compiled update of every member: a Batch of [P, B, ...] -> metrics of [P, ...].

        A single run (P = 1) may also pass a Batch of [B, ...] and gets its metrics without the
        member axis."""
        one_run = len(batch.observations.shape) == 2
        if one_run:
            if self.members != 1:
                raise ValueError(f"a batch without a member axis needs P = 1, not {self.members}")
            batch = Batch(*(tf.convert_to_tensor(x)[None] for x in batch))
        metrics = self._train_step_call(batch)
        return {key: value[0] for key, value in metrics.items()} if one_run else metrics

    def train_step_and_act(self, batch: Batch, observations: tf.Tensor) -> tuple[dict, tf.Tensor]:
        """`train_step` and the exploring actions [P, d] for `observations` [P, S], in one call."""
        return self._train_step_and_act_call(batch, observations)

    # The compiled steps called as concrete functions (traced on first use, once, as the
    # tf.functions above would be): a call skips tf.function's matching of its arguments, about
    # 0.3 ms, an eighth to a sixth of a Hopper step of one run.
    @functools.cached_property
    def _train_step_call(self) -> tf.types.experimental.ConcreteFunction:
        return self.population_train_step.get_concrete_function()

    @functools.cached_property
    def _train_step_and_act_call(self) -> tf.types.experimental.ConcreteFunction:
        return self.population_train_step_and_act.get_concrete_function()

    # --- saving ----------------------------------------------------------------------------

    def state_variables(self) -> dict[str, tf.Variable]:
        """Everything the agent's future depends on, by name; every variable has the member axis first."""
        found: dict[str, tf.Variable] = {}
        for prefix, network in (
            ("policy", self.policy),
            ("critic", self.critic),
            ("target_policy", self.target_policy),
            ("target_critic", self.target_critic),
        ):
            found.update({f"{prefix}/{name}": v for name, v in network.named_variables().items()})
        for owner in (
            self.actor_optimizer,
            self.critic_optimizer,
            self.log_variance_optimizer,
            self.training_streams,
            self.acting_streams,
        ):
            if owner is not None:
                found.update(owner.state_variables())
        return found

    def member_state(self, member: int) -> dict[str, np.ndarray]:
        """Member `member`'s slice of every state variable, by name (what its checkpoint holds)."""
        if not 0 <= member < self.members:
            raise IndexError(f"member {member} of a population of {self.members}")
        return {name: v[member].numpy() for name, v in self.state_variables().items()}

    def load_member_states(self, states: Sequence[Mapping[str, np.ndarray]]) -> None:
        """Loads one `member_state` per member (P of them), each checked against the agent's names
        and shapes: a ValueError names the first mismatch and nothing is changed."""
        if len(states) != self.members:
            raise ValueError(f"{len(states)} member states for a population of {self.members}")
        variables = self.state_variables()
        stacked = {}
        for name, variable in variables.items():
            slices = []
            for k, state in enumerate(states):
                if name not in state:
                    raise ValueError(f"member {k}'s state has no {name!r}")
                value = np.asarray(state[name])
                expected = variable.shape[1:].as_list()
                if list(value.shape) != expected:
                    raise ValueError(f"member {k}'s {name!r} has shape {list(value.shape)}, not {expected}")
                slices.append(value)
            stacked[name] = np.stack(slices).astype(tf.as_dtype(variable.dtype).as_numpy_dtype)
        for k, state in enumerate(states):
            extra = sorted(set(state) - set(variables))
            if extra:
                raise ValueError(f"member {k}'s state has {extra[0]!r}, which this agent does not have")
        for name, variable in variables.items():
            variable.assign(stacked[name])
