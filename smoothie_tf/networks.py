"""The critic Q̃w(s, a) and the Gaussian policy N(μθ(s), diag(exp φ)) (supplement D)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from smoothie_tf.jets import JetDense, action_jet


def check_batch(name: str, x: tf.Tensor, last_dim: int | None) -> None:
    """Raises a ValueError naming expected and received shapes unless x is [B, last_dim]."""
    shape = tf.TensorShape(x.shape)  # NumPy arrays have a tuple shape
    if shape.rank != 2 or (last_dim is not None and shape[-1] is not None and shape[-1] != last_dim):
        expected = f"[batch, {last_dim if last_dim is not None else 'n'}]"
        raise ValueError(f"{name} must have shape {expected}, got {list(shape)}")


def track_list_for_checkpoints(model: keras.Model, layers: Sequence[keras.layers.Layer]) -> None:
    """Makes each layer of a list an attribute of its own (named after the layer).

    tf.train.Checkpoint does not follow the lists Keras 3 tracks, so without this the layers of
    `hidden_layers` would be missing from a checkpoint (Keras still counts each layer once).
    """
    for layer in layers:
        setattr(model, layer.name, layer)


class SmoothedCritic(keras.Model):
    """Q̃w(s, a): state → dense `state_embedding` (tanh); concat action; `hidden` dense layers
    (tanh); linear → 1. The paper's critic is the default (400; 300).

    `value_grad_hess` carries the action's jet forward through the layers after the action
    (supplement D.1) and returns q, ∇a q and ∇²a q (or its diagonal) in one forward pass.
    """

    def __init__(
        self,
        action_dim: int,
        state_embedding: int = 400,
        hidden: Sequence[int] = (300,),
        activation: str = "tanh",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        if not hidden:
            raise ValueError("the critic needs at least one hidden layer after the action")
        self.action_dim = int(action_dim)
        self.activation = activation
        self.state_dim: int | None = None
        self.embedding = JetDense(
            state_embedding, activation, name="state_embedding", dtype=self.dtype_policy
        )
        self.hidden_layers = [
            JetDense(units, activation, name=f"hidden_{i}", dtype=self.dtype_policy)
            for i, units in enumerate(hidden)
        ]
        track_list_for_checkpoints(self, self.hidden_layers)
        self.output_layer = JetDense(1, "linear", name="q", dtype=self.dtype_policy)

    def build(self, states_shape, actions_shape=None):
        self.state_dim = int(states_shape[-1])
        self.embedding.build((None, self.state_dim))
        width = self.embedding.units + self.action_dim
        for layer in self.hidden_layers:
            layer.build((None, width))
            width = layer.units
        self.output_layer.build((None, width))

    def _check(self, states, actions):
        check_batch("states", states, self.state_dim)
        check_batch("actions", actions, self.action_dim)
        if not self.built:
            self.build(states.shape, actions.shape)
            self.built = True

    def __call__(self, states, actions, **kwargs):
        check_batch("states", states, self.state_dim)  # before Keras builds on a wrong shape
        check_batch("actions", actions, self.action_dim)
        return super().__call__(states, actions, **kwargs)

    def call(self, states, actions):
        """q: [B]."""
        x = tf.concat([self.embedding(states), actions], axis=-1)
        for layer in self.hidden_layers:
            x = layer(x)
        return self.output_layer(x)[:, 0]

    def value_grad_hess(self, states, actions, diagonal: bool = False):
        """(q [B], g [B, d], H [B, d, d]) of Q̃w at (s, a); H is [B, d] (its diagonal) when diagonal."""
        states = tf.convert_to_tensor(states, dtype=self.compute_dtype)
        actions = tf.convert_to_tensor(actions, dtype=self.compute_dtype)
        self._check(states, actions)
        jet = action_jet(self.embedding(states), actions, diagonal=diagonal)
        for layer in self.hidden_layers:
            jet = layer.propagate(jet)
        return self.output_layer.head(jet)


def scale_to_bounds(squashed: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """Maps tanh output in [-1, 1] affinely onto [low, high]."""
    return low + 0.5 * (squashed + 1.0) * (high - low)


class GaussianPolicy(keras.Model):
    """π(a|s) = N(μθ(s), diag(exp φ)) with a state-independent log-variance vector φ.

    μθ: dense `hidden` (relu) → d, tanh-squashed and scaled to [low, high]; the last layer is
    initialised uniformly in ±3e-3 so the initial mean sits in the middle of the action range.
    """

    def __init__(
        self,
        action_low,
        action_high,
        hidden: Sequence[int] = (400, 300),
        initial_log_variance: float = -1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        low = np.asarray(action_low, dtype=np.float64).reshape(-1)
        high = np.asarray(action_high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape or not np.all(np.isfinite(low)) or not np.all(np.isfinite(high)):
            raise ValueError(f"action bounds must be finite and of one shape, got {low} and {high}")
        if np.any(high <= low):
            raise ValueError(f"every action bound needs low < high, got low={low} high={high}")
        self.action_dim = int(low.size)
        self.action_low = tf.constant(low, dtype=self.compute_dtype)
        self.action_high = tf.constant(high, dtype=self.compute_dtype)
        self.state_dim: int | None = None
        self.hidden_layers = [
            keras.layers.Dense(u, "relu", name=f"mean_hidden_{i}", dtype=self.dtype_policy)
            for i, u in enumerate(hidden)
        ]
        track_list_for_checkpoints(self, self.hidden_layers)
        final_init = keras.initializers.RandomUniform(-3e-3, 3e-3)
        self.mean_output = keras.layers.Dense(
            self.action_dim,
            "tanh",
            kernel_initializer=final_init,
            bias_initializer=final_init,
            name="mean",
            dtype=self.dtype_policy,
        )
        self.log_variance = self.add_weight(
            shape=(self.action_dim,),
            initializer=keras.initializers.Constant(initial_log_variance),
            name="log_variance",
        )

    def build(self, input_shape):
        self.state_dim = int(input_shape[-1])
        width = self.state_dim
        for layer in self.hidden_layers:
            layer.build((None, width))
            width = layer.units
        self.mean_output.build((None, width))

    def __call__(self, states, **kwargs):
        check_batch("states", states, self.state_dim)  # before Keras builds on a wrong shape
        return super().__call__(states, **kwargs)

    def call(self, states):
        """μθ(s): [B, d], inside the action bounds."""
        x = states
        for layer in self.hidden_layers:
            x = layer(x)
        return scale_to_bounds(self.mean_output(x), self.action_low, self.action_high)

    def mean(self, states) -> tf.Tensor:
        """μθ(s): [B, d]."""
        return self(tf.convert_to_tensor(states, dtype=self.compute_dtype))

    @property
    def mean_variables(self) -> list:
        """θ, the mean network's trainable variables (φ excluded)."""
        return [v for layer in (*self.hidden_layers, self.mean_output) for v in layer.trainable_variables]

    def variance(self) -> tf.Tensor:
        """Σφ's diagonal exp(φ): [d]."""
        return tf.exp(self.log_variance)

    def distribution(self, states) -> tfp.distributions.MultivariateNormalDiag:
        """N(μθ(s), diag(exp φ)) for each state."""
        return tfp.distributions.MultivariateNormalDiag(
            loc=self.mean(states), scale_diag=tf.exp(0.5 * self.log_variance)
        )

    def sample(self, states, generator: tf.random.Generator | None = None, clip: bool = True) -> tf.Tensor:
        """a ~ N(μθ(s), Σφ): [B, d], clipped to the action bounds unless clip=False.

        generator: the tf.random.Generator to draw from (the global one when None), so that
        acting is reproducible from a saved generator state.
        """
        mean = self.mean(states)
        generator = generator or tf.random.get_global_generator()
        noise = generator.normal(tf.shape(mean), dtype=mean.dtype)
        actions = mean + tf.exp(0.5 * self.log_variance) * noise
        if clip:
            actions = tf.clip_by_value(actions, self.action_low, self.action_high)
        return actions
