"""The critic Q̃w(s, a) and the Gaussian policy N(μθ(s), diag(exp φ)) (supplement D), for a
population of P members side by side.

Every variable has the member axis first (kernel [P, n_in, n_out], bias [P, n_out], φ [P, d]),
and member k's outputs depend on member k's variables and inputs alone.

members=P (an int >= 1): inputs and outputs carry the member axis: states [P, B, S] -> q [P, B].
members=None: the single network of one run, without the member axis in inputs and outputs
(states [B, S] -> q [B], mean [B, d], variance() [d]); inside it is a population of one, so its
variables keep a leading axis of 1 (`policy.log_variance` is [1, d]).

initial_seeds: one int per member; member k's initial weights are a function of initial_seeds[k]
alone (layer i of a network draws from (initial_seeds[k], i), see `jets.MemberDense`), the same in
a population of 1 or of 8. Give a network's critic and policy different seeds. None draws them
from Python's `random`, as Keras draws the seeds of its initialisers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from smoothie_tf.jets import MemberDense, action_jet, check_seeds

# The policy's last layer starts uniform in ±3e-3 (as DDPG's), so that the initial mean sits in
# the middle of the action range.
FINAL_LAYER_BOUND = 3e-3


def check_batch(name: str, x, last_dim: int | None, members: int | None = None) -> None:
    """Raises a ValueError naming expected and received shapes unless x is [B, last_dim]
    (members None) or [members, B, last_dim]."""
    shape = tf.TensorShape(x.shape)  # NumPy arrays have a tuple shape
    last = last_dim if last_dim is not None else "n"
    leading = [] if members is None else [members]
    rank_ok = shape.rank == len(leading) + 2
    members_ok = members is None or (rank_ok and shape[0] in (None, members))
    last_ok = last_dim is None or (rank_ok and shape[-1] in (None, last_dim))
    if not (rank_ok and members_ok and last_ok):
        expected = ", ".join(str(n) for n in [*leading, "batch", last])
        raise ValueError(f"{name} must have shape [{expected}], got {list(shape)}")


def check_same_batch(states, actions) -> None:
    """Raises a ValueError unless states and actions have one batch size (where both are known)."""
    batch_s, batch_a = tf.TensorShape(states.shape)[-2], tf.TensorShape(actions.shape)[-2]
    if batch_s is not None and batch_a is not None and batch_s != batch_a:
        raise ValueError(f"states and actions must have one batch size, got {batch_s} and {batch_a}")


def population_seeds(members: int | None, initial_seeds: Sequence[int] | None) -> tuple[int, ...]:
    """One initial seed per member (P = 1 for members=None), drawn from Python's `random` when
    initial_seeds is None."""
    if members is not None and (isinstance(members, bool) or not isinstance(members, int | np.integer)):
        raise ValueError(f"members must be None or an integer >= 1, got {members!r}")
    if members is not None and members < 1:
        raise ValueError(f"members must be None or an integer >= 1, got {members}")
    size = 1 if members is None else int(members)
    if initial_seeds is None:
        return tuple(random.getrandbits(63) for _ in range(size))
    seeds = check_seeds(initial_seeds)
    if len(seeds) != size:
        raise ValueError(f"initial_seeds needs one seed per member ({size}), got {len(seeds)}")
    return seeds


def track_list_for_checkpoints(model: keras.Model, layers: Sequence[keras.layers.Layer]) -> None:
    """Makes each layer of a list an attribute of its own (named after the layer).

    tf.train.Checkpoint and SavedModel follow attributes, not the lists Keras 3 tracks, so
    without this the layers of `hidden_layers` would be missing from them (Keras still counts
    each layer once).
    """
    for layer in layers:
        setattr(model, layer.name, layer)


class PopulationModel(keras.Model):
    """What the critic and the policy share: the member axis of their inputs and outputs, and
    their variables by stable name. A subclass lists its layers, in order, as `dense_layers`."""

    def __init__(self, members: int | None, initial_seeds: Sequence[int] | None, **kwargs):
        super().__init__(**kwargs)
        self.initial_seeds = population_seeds(members, initial_seeds)
        self.members = None if members is None else int(members)
        self.population = len(self.initial_seeds)  # P, 1 when members is None
        self.state_dim: int | None = None

    def _with_members(self, x: tf.Tensor) -> tf.Tensor:
        """An input with the member axis first: [P, B, n] (x[None] when members is None)."""
        return x if self.members is not None else x[None]

    def _as_given(self, x: tf.Tensor) -> tf.Tensor:
        """An output [P, ...] as the caller's API has it: without the member axis when members is None."""
        return x if self.members is not None else x[0]

    def named_variables(self) -> dict[str, keras.Variable]:
        """Every variable under a stable name ("<layer>/kernel", "<layer>/bias", ...), each with the
        member axis first. They are Keras variables: `.value` is the tf.Variable behind one, and
        assign, numpy and tf ops work on them as on a tf.Variable."""
        if not self.built:
            raise ValueError(f"{self.name} has no variables before its first call (it builds on it)")
        named = {}
        for layer in self.dense_layers:
            named[f"{layer.name}/kernel"] = layer.kernel
            named[f"{layer.name}/bias"] = layer.bias
        return named


class SmoothedCritic(PopulationModel):
    """Q̃w(s, a): state → dense `state_embedding` (tanh); concat action; `hidden` dense layers
    (tanh); linear → 1. The paper's critic is the default (400; 300).

    `value_grad_hess` carries the action's jet forward through the layers after the action
    (supplement D.1) and returns q, ∇a q and ∇²a q (or its diagonal) in one forward pass.
    Layer i of [state_embedding, hidden_0, ..., q] is initialised from (initial_seeds[k], i):
    Glorot-uniform kernels, zero biases.
    """

    def __init__(
        self,
        action_dim: int,
        state_embedding: int = 400,
        hidden: Sequence[int] = (300,),
        activation: str = "tanh",
        members: int | None = None,
        initial_seeds: Sequence[int] | None = None,
        **kwargs,
    ):
        super().__init__(members, initial_seeds, **kwargs)
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        if not hidden:
            raise ValueError("the critic needs at least one hidden layer after the action")
        self.action_dim = int(action_dim)
        self.activation = activation

        def dense(units, activation, index, name):
            return MemberDense(
                units,
                activation,
                seeds=self.initial_seeds,
                layer_index=index,
                name=name,
                dtype=self.dtype_policy,
            )

        self.embedding = dense(state_embedding, activation, 0, "state_embedding")
        self.hidden_layers = [
            dense(units, activation, 1 + i, f"hidden_{i}") for i, units in enumerate(hidden)
        ]
        track_list_for_checkpoints(self, self.hidden_layers)
        self.output_layer = dense(1, "linear", 1 + len(self.hidden_layers), "q")

    @property
    def dense_layers(self) -> list[MemberDense]:
        return [self.embedding, *self.hidden_layers, self.output_layer]

    def build(self, states_shape, actions_shape=None):
        self.state_dim = int(states_shape[-1])
        self.embedding.build((self.population, None, self.state_dim))
        width = self.embedding.units + self.action_dim
        for layer in self.hidden_layers:
            layer.build((self.population, None, width))
            width = layer.units
        self.output_layer.build((self.population, None, width))

    def _check(self, states, actions):
        check_batch("states", states, self.state_dim, self.members)
        check_batch("actions", actions, self.action_dim, self.members)
        check_same_batch(states, actions)

    def __call__(self, states, actions, **kwargs):
        self._check(states, actions)  # before Keras builds on a wrong shape
        return super().__call__(states, actions, **kwargs)

    def call(self, states, actions):
        """q: [P, B] ([B] when members is None)."""
        states, actions = self._with_members(states), self._with_members(actions)
        x = tf.concat([self.embedding(states), actions], axis=-1)
        for layer in self.hidden_layers:
            x = layer(x)
        return self._as_given(self.output_layer(x)[:, :, 0])

    def value_grad_hess(self, states, actions, diagonal: bool = False):
        """(q [P, B], g [P, B, d], H [P, B, d, d]) of Q̃w at (s, a); H is [P, B, d] (its diagonal)
        when diagonal. Without the member axis (q [B], g [B, d], ...) when members is None."""
        states = tf.convert_to_tensor(states, dtype=self.compute_dtype)
        actions = tf.convert_to_tensor(actions, dtype=self.compute_dtype)
        self._check(states, actions)
        if not self.built:
            self.build(states.shape, actions.shape)
            self.built = True
        states, actions = self._with_members(states), self._with_members(actions)
        jet = action_jet(self.embedding(states), actions, diagonal=diagonal)
        for layer in self.hidden_layers:
            jet = layer.propagate(jet)
        return tuple(self._as_given(x) for x in self.output_layer.head(jet))


def scale_to_bounds(squashed: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """Maps tanh output in [-1, 1] affinely onto [low, high]."""
    return low + 0.5 * (squashed + 1.0) * (high - low)


class GaussianPolicy(PopulationModel):
    """π(a|s) = N(μθ(s), diag(exp φ)) with a state-independent log-variance vector φ.

    μθ: dense `hidden` (relu) → d, tanh-squashed and scaled to [low, high]. Layer i of
    [mean_hidden_0, ..., mean] is initialised from (initial_seeds[k], i): Glorot-uniform kernels
    and zero biases, the last layer uniform in ±3e-3 (kernel and bias), so the initial mean sits
    in the middle of the action range. φ: `log_variance` [P, d] ([1, d] when members is None),
    initially `initial_log_variance` (a number, or one per member).
    """

    def __init__(
        self,
        action_low,
        action_high,
        hidden: Sequence[int] = (400, 300),
        initial_log_variance: float | Sequence[float] = -1.0,
        members: int | None = None,
        initial_seeds: Sequence[int] | None = None,
        **kwargs,
    ):
        super().__init__(members, initial_seeds, **kwargs)
        low = np.asarray(action_low, dtype=np.float64).reshape(-1)
        high = np.asarray(action_high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape or not np.all(np.isfinite(low)) or not np.all(np.isfinite(high)):
            raise ValueError(f"action bounds must be finite and of one shape, got {low} and {high}")
        if np.any(high <= low):
            raise ValueError(f"every action bound needs low < high, got low={low} high={high}")
        initial = np.asarray(initial_log_variance, dtype=np.float64).reshape(-1)
        if initial.size not in (1, self.population) or not np.all(np.isfinite(initial)):
            raise ValueError(
                f"initial_log_variance must be a finite number or {self.population} of them (one per "
                f"member), got {initial_log_variance!r}"
            )
        self.action_dim = int(low.size)
        self.bounds = (low, high)
        self.action_low = tf.constant(low, dtype=self.compute_dtype)
        self.action_high = tf.constant(high, dtype=self.compute_dtype)
        self.hidden = tuple(int(u) for u in hidden)

        def dense(units, activation, index, name, initializer="glorot_uniform"):
            return MemberDense(
                units,
                activation,
                seeds=self.initial_seeds,
                layer_index=index,
                initializer=initializer,
                name=name,
                dtype=self.dtype_policy,
            )

        self.hidden_layers = [dense(u, "relu", i, f"mean_hidden_{i}") for i, u in enumerate(self.hidden)]
        track_list_for_checkpoints(self, self.hidden_layers)
        self.mean_output = dense(self.action_dim, "tanh", len(self.hidden), "mean", FINAL_LAYER_BOUND)
        values = np.broadcast_to(initial[:, None], (self.population, self.action_dim))
        self.log_variance = self.add_weight(
            shape=(self.population, self.action_dim),
            initializer=lambda shape, dtype=None: tf.constant(values, dtype=dtype),
            name="log_variance",
        )

    @property
    def dense_layers(self) -> list[MemberDense]:
        return [*self.hidden_layers, self.mean_output]

    def named_variables(self) -> dict[str, keras.Variable]:
        return super().named_variables() | {"log_variance": self.log_variance}

    def build(self, input_shape):
        self.state_dim = int(input_shape[-1])
        width = self.state_dim
        for layer in self.hidden_layers:
            layer.build((self.population, None, width))
            width = layer.units
        self.mean_output.build((self.population, None, width))

    def __call__(self, states, **kwargs):
        check_batch("states", states, self.state_dim, self.members)  # before Keras builds on a wrong shape
        return super().__call__(states, **kwargs)

    def call(self, states):
        """μθ(s): [P, B, d] ([B, d] when members is None), inside the action bounds."""
        x = self._with_members(states)
        for layer in self.hidden_layers:
            x = layer(x)
        return self._as_given(scale_to_bounds(self.mean_output(x), self.action_low, self.action_high))

    def mean(self, states) -> tf.Tensor:
        """μθ(s): [P, B, d] ([B, d] when members is None)."""
        return self(tf.convert_to_tensor(states, dtype=self.compute_dtype))

    @property
    def mean_variables(self) -> list:
        """θ, the mean network's trainable variables (φ excluded)."""
        return [v for layer in self.dense_layers for v in layer.trainable_variables]

    def variance(self) -> tf.Tensor:
        """Σφ's diagonal exp(φ): [P, d] ([d] when members is None)."""
        return self._as_given(tf.exp(self.log_variance))

    def _standard_deviation(self) -> tf.Tensor:
        """exp(φ/2), to broadcast against means: [P, 1, d] ([d] when members is None)."""
        return self._as_given(tf.exp(0.5 * self.log_variance)[:, None, :])

    def distribution(self, states) -> tfp.distributions.MultivariateNormalDiag:
        """N(μθ(s), diag(exp φ)) for each member and state: batch shape [P, B] ([B])."""
        return tfp.distributions.MultivariateNormalDiag(
            loc=self.mean(states), scale_diag=self._standard_deviation()
        )

    def sample(self, states, noise, clip: bool = True) -> tf.Tensor:
        """a = μθ(s) + exp(φ/2)·ε ~ N(μθ(s), Σφ) for standard normal noise ε: [P, B, d] ([B, d]),
        clipped to the action bounds unless clip=False. The caller draws ε (shaped like the mean)."""
        mean = self.mean(states)
        noise = tf.convert_to_tensor(noise, dtype=mean.dtype)
        if not noise.shape.is_compatible_with(mean.shape):
            raise ValueError(f"noise must have the mean's shape {mean.shape.as_list()}, got {noise.shape}")
        actions = mean + self._standard_deviation() * noise
        if clip:
            actions = tf.clip_by_value(actions, self.action_low, self.action_high)
        return actions


def unbatched_policy(policy: GaussianPolicy, k: int) -> GaussianPolicy:
    """A members=None GaussianPolicy holding a copy of member k's weights (for export and
    evaluation); it has the same layout, bounds, dtype and name."""
    if not policy.built:
        raise ValueError(f"{policy.name} has no weights before its first call (it builds on it)")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < policy.population:
        raise ValueError(f"member index must be an integer in [0, {policy.population}), got {k!r}")
    single = GaussianPolicy(
        *policy.bounds,
        hidden=policy.hidden,
        members=None,
        initial_seeds=[policy.initial_seeds[k]],
        name=policy.name,
        dtype=policy.dtype_policy,
    )
    single(tf.zeros([1, policy.state_dim], single.compute_dtype))
    sources = policy.named_variables()
    for name, variable in single.named_variables().items():
        variable.assign(sources[name][k : k + 1])
    return single
