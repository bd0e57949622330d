"""Action-derivatives carried forward through dense layers (supplement D.1, eqs. 10-11), for a
population of P networks at once.

Every tensor has the member axis P first; member p's numbers depend on member p's weights and
inputs alone. A *jet* holds, per member and example, a layer's value o [P, B, n], its Jacobian
with respect to the action G = do/da and its Hessian H = d²o/da². Shapes put the action axes
before the unit axis, so a dense layer acts on every part with one batched matmul by its kernel
K [P, n_in, n_out]:

    G: [P, B, d, n]   (or [P, d, n] when it is the same for every example)
    H: [P, B, d, d, n] full, [P, B, d, n] diagonal-only, or None when it is zero

A dense layer with activation f maps (o, G, H) to (eq. 11):

    z = o K + b        G_z = G K        H_z = H K
    o' = f(z)          G' = f'(z) G_z   H' = f''(z) G_z ⊗ G_z + f'(z) H_z

Diagonal mode propagates diag(H) alone, which is exact:
diag(H') = f''(z) G_z² + f'(z) diag(H_z).

A `Jet` keeps the activated layer in factored form (G_z, H_z, f'(z), f''(z)) and builds G', H'
only when a following hidden layer needs them; a scalar linear head contracts the factored form
directly, so the [P, B, d, d, n] Hessian of the last hidden layer is never materialised.

`MemberDense` is the layer: P dense layers side by side, with seeded per-member initialisation
(member k's initial weights are a function of its own seed and the layer's index alone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

ACTIVATIONS = ("tanh", "relu", "linear")


def member_matmul(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """x [P, M, n_in] @ kernel [P, n_in, n_out] -> [P, M, n_out], member by member.

    One batched matmul; for one member (P = 1, known when the graph is traced) a plain 2-D
    matmul, whose XLA CPU kernel (and its gradients') is faster than a batched one of one."""
    if kernel.shape[0] == 1:
        return tf.matmul(x[0], kernel[0])[None]
    return tf.matmul(x, kernel)


def _apply_kernel(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """x [P, ..., n_in] @ kernel [P, n_in, n_out] -> [P, ..., n_out], as one batched matmul."""
    members, n_in, n_out = kernel.shape
    flat = member_matmul(tf.reshape(x, [members, -1, n_in]), kernel)
    return tf.reshape(flat, tf.concat([tf.shape(x)[:-1], [n_out]], axis=0))


def _insert_unit_axes(c: tf.Tensor, extra: int) -> tf.Tensor:
    """c [P, B, n] -> [P, B, 1 (x extra), n], to broadcast against [P, B, ..., n]."""
    for _ in range(extra):
        c = c[..., None, :]
    return c


class Jet:
    """A layer's value and its action-derivatives, in factored form, member axis first.

    value:  o = f(z)  [P, B, n]
    grad_z: G_z       [P, d, n] (shared by the examples) or [P, B, d, n]
    hess_z: H_z       None, [P, B, d, d, n] (full) or [P, B, d, n] (diagonal), built from
                      hess_in [P, B, ..., m] and hess_kernel [P, m, n] when it is needed
    d1, d2: f'(z), f''(z) [P, B, n]; None for a linear layer (f' = 1, f'' = 0).
    """

    def __init__(
        self, value, grad_z, hess_in=None, d1=None, d2=None, *, diagonal: bool = False, hess_kernel=None
    ):
        self.value = value
        self.grad_z = grad_z
        # H_z = hess_in @ hess_kernel, kept apart so that a scalar head can contract the kernel
        # with its weights first (a [P, B, n] tensor) instead of multiplying the Hessian by it.
        self.hess_in = hess_in
        self.hess_kernel = hess_kernel
        self.d1 = d1
        self.d2 = d2
        self.diagonal = diagonal
        self.action_offset: int | None = None  # set by action_jet: G = [0; I] with I from here

    @property
    def hess_z(self) -> tf.Tensor | None:
        if self.hess_in is None or self.hess_kernel is None:
            return self.hess_in
        return _apply_kernel(self.hess_in, self.hess_kernel)

    @property
    def batched_grad(self) -> bool:
        return self.grad_z.shape.rank == 4

    def _grad_z_per_example(self) -> tf.Tensor:
        """G_z as [P, B, d, n], or [P, 1, d, n] when it is shared by the examples."""
        return self.grad_z if self.batched_grad else self.grad_z[:, None]

    @property
    def grad(self) -> tf.Tensor:
        """G' = f'(z) G_z: [P, B, d, n] (or [P, d, n] for a linear layer on a shared jet)."""
        if self.d1 is None:
            return self.grad_z
        return self.d1[:, :, None, :] * self._grad_z_per_example()

    @property
    def hess(self) -> tf.Tensor | None:
        """H' = f''(z) G_z ⊗ G_z + f'(z) H_z: [P, B, d, d, n], or [P, B, d, n] in diagonal mode."""
        if self.d1 is None:
            return self.hess_z
        hess = None
        if self.d2 is not None:
            g = self._grad_z_per_example()
            if self.diagonal:
                hess = self.d2[:, :, None, :] * tf.square(g)
            else:
                outer = g[..., :, None, :] * g[..., None, :, :]  # [P, B or 1, d, d, n]
                hess = self.d2[:, :, None, None, :] * outer
        hess_z = self.hess_z
        if hess_z is not None:
            term = _insert_unit_axes(self.d1, 1 if self.diagonal else 2) * hess_z
            hess = term if hess is None else hess + term
        return hess

    def dense(self, kernel: tf.Tensor, bias: tf.Tensor) -> Jet:
        """The linear part z = o K + b of a dense layer (kernel [P, n_in, n_out], bias [P, n_out]),
        with G_z = G K and H_z = H K."""
        value = member_matmul(self.value, kernel) + bias[:, None, :]
        if self.action_offset is not None:  # G = [0; I]: G K is the action's rows of K, [P, d, n_out]
            return Jet(value, kernel[:, self.action_offset :], diagonal=self.diagonal)
        hess = self.hess
        return Jet(
            value,
            _apply_kernel(self.grad, kernel),
            hess,
            diagonal=self.diagonal,
            hess_kernel=None if hess is None else kernel,
        )

    def scalar_head(self, kernel: tf.Tensor, bias: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """A linear layer with one unit, contracted with the factored jet.

        kernel: [P, n, 1], bias: [P, 1]. Returns q [P, B], g [P, B, d] and H [P, B, d, d] (or
        [P, B, d] diagonal): g = sum_n w_n f'_n G_z[:, n],
        H = sum_n w_n (f''_n G_z[:, n] ⊗ G_z[:, n] + f'_n H_z[:, :, n]).
        """
        w = kernel[:, :, 0]  # [P, n]
        q = tf.einsum("pbn,pn->pb", self.value, w) + bias
        d1 = tf.ones_like(self.value) if self.d1 is None else self.d1
        c1 = d1 * w[:, None, :]  # [P, B, n]
        gz = self.grad_z
        shared = not self.batched_grad
        g = _sum_units(gz, c1, shared=shared)
        hess = None
        if self.d2 is not None:
            c2 = self.d2 * w[:, None, :]  # [P, B, n]
            if self.diagonal:
                hess = _sum_units(tf.square(gz), c2, shared=shared)
            elif not shared:  # sum_n c2 G_z[k, n] G_z[l, n] as one batched matmul
                hess = tf.matmul(gz * c2[:, :, None, :], gz, transpose_b=True)
            else:  # G_z shared by every example: one matmul with its column outer products
                hess = _symmetric_outer_sum(gz, c2)
        if self.hess_in is not None:  # sum_n c1_n (H_in K)[..., n] = H_in @ (K c1)
            weights = c1 if self.hess_kernel is None else tf.matmul(c1, self.hess_kernel, transpose_b=True)
            term = _sum_units(self.hess_in, weights, shared=False)
            hess = term if hess is None else hess + term
        if hess is None:
            hess = tf.zeros_like(g) if self.diagonal else tf.zeros_like(g[..., None] * g[..., None, :])
        return q, g, hess


def _symmetric_outer_sum(gz: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
    """sum_n c[p, b, n] G[p, k, n] G[p, l, n] for G [P, d, n] shared by every example: [P, B, d, d].

    One batched matmul over the d(d+1)/2 pairs k <= l (the result is symmetric), then a gather.
    """
    d = gz.shape[1]
    rows, cols = np.triu_indices(d)
    pairs = tf.gather(gz, rows, axis=1) * tf.gather(gz, cols, axis=1)  # [P, d(d+1)/2, n]
    upper = tf.matmul(c, pairs, transpose_b=True)  # [P, B, d(d+1)/2]
    position = np.zeros((d, d), dtype=np.int32)
    position[rows, cols] = np.arange(rows.size)
    position[cols, rows] = np.arange(rows.size)
    full = tf.gather(upper, position.reshape(-1), axis=2)  # [P, B, d²]
    return tf.reshape(full, tf.concat([tf.shape(upper)[:2], [d, d]], axis=0))


def _sum_units(x: tf.Tensor, c: tf.Tensor, *, shared: bool) -> tf.Tensor:
    """sum_n c[p, b, n] x[p, b, ..., n] -> [P, B, ...]; with shared=True x is [P, ..., n], the
    same for every example."""
    n = x.shape[-1]
    if shared:  # one batched matmul: c [P, B, n] @ x^T
        inner = x.shape[1:-1]
        flat = tf.matmul(c, tf.reshape(x, [x.shape[0], -1, n]), transpose_b=True)  # [P, B, prod(inner)]
        return tf.reshape(flat, tf.concat([tf.shape(c)[:2], inner], axis=0))
    return tf.reduce_sum(x * _insert_unit_axes(c, x.shape.rank - 3), axis=-1)


def action_jet(features: tf.Tensor, actions: tf.Tensor, *, diagonal: bool = False) -> Jet:
    """The jet of the concatenation [e; a] (features e [P, B, n_e], actions a [P, B, d]):
    G = [0; I] (the same for every example), H = 0.

    The state branch e does not depend on the action, so its zero jet is not propagated: the
    next dense layer's G_z = [0; I] K is the action's rows of its kernel, taken as a slice.
    """
    d = actions.shape[-1]
    n_e = features.shape[-1]
    selector = tf.concat([tf.zeros([d, n_e], actions.dtype), tf.eye(d, dtype=actions.dtype)], axis=1)
    selector = tf.broadcast_to(selector, tf.concat([tf.shape(features)[:1], [d, n_e + d]], axis=0))
    jet = Jet(tf.concat([features, actions], axis=-1), selector, diagonal=diagonal)
    jet.action_offset = n_e  # lets the next dense layer slice its kernel instead of a matmul
    return jet


def glorot_limit(n_in: int, n_out: int) -> float:
    """The Glorot-uniform bound sqrt(6 / (n_in + n_out)) of one member's [n_in, n_out] kernel."""
    return math.sqrt(6.0 / (n_in + n_out))


def seeded_uniform_blocks(
    seeds: Sequence[int], layer_index: int, n_in: int, n_out: int, limit: float, dtype
) -> tf.Tensor:
    """[P, n_in + 1, n_out], uniform in ±limit: member k's block is drawn with
    tf.random.stateless_uniform from the seed (seeds[k], layer_index) alone, so it is the same
    in a population of any size. A layer's kernel is the first n_in rows, its bias the last."""
    return tf.stack(
        [
            tf.random.stateless_uniform(
                [n_in + 1, n_out],
                seed=tf.constant([seed, layer_index], tf.int64),
                minval=-limit,
                maxval=limit,
                dtype=dtype,
            )
            for seed in seeds
        ]
    )


def check_seeds(seeds) -> tuple[int, ...]:
    """The seeds as a tuple of ints in [0, 2**63); a ValueError unless there is at least one."""
    seeds = tuple(seeds)
    if not seeds or not all(isinstance(s, int | np.integer) and 0 <= s < 2**63 for s in seeds):
        raise ValueError(f"seeds must be one or more integers in [0, 2**63), got {list(seeds)}")
    return tuple(int(s) for s in seeds)


_ACTIVATION_FUNCTIONS = {"tanh": tf.tanh, "relu": tf.nn.relu, "linear": tf.identity}


class MemberDense(keras.layers.Layer):
    """P dense layers side by side, one per member: kernel [P, n_in, n_out], bias [P, n_out];
    `call(x [P, B, n_in]) -> [P, B, n_out]`, and it maps jets (eq. 11). Activations: tanh, relu,
    linear.

    seeds: one per member (P = len(seeds)); layer_index: this layer's place in its network (distinct
    per layer). Member k's initial weights come from (seeds[k], layer_index) alone
    (`seeded_uniform_blocks`).
    initializer: "glorot_uniform" (a Glorot-uniform kernel, bound sqrt(6 / (n_in + n_out)) per
    member, and a zero bias), or a number r: kernel and bias uniform in ±r.
    """

    def __init__(
        self,
        units: int,
        activation: str = "linear",
        *,
        seeds: Sequence[int],
        layer_index: int,
        initializer: str | float = "glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"MemberDense activation must be one of {ACTIVATIONS}, got {activation!r}")
        bound = isinstance(initializer, int | float) and not isinstance(initializer, bool)
        if initializer != "glorot_uniform" and not (bound and 0 < initializer < math.inf):
            raise ValueError(f"initializer must be 'glorot_uniform' or a positive bound, got {initializer!r}")
        self.units = int(units)
        self.activation_name = activation
        self.seeds = check_seeds(seeds)
        self.layer_index = int(layer_index)
        self.initializer = initializer

    @property
    def members(self) -> int:
        return len(self.seeds)

    def build(self, input_shape):
        n_in, n_out = int(input_shape[-1]), self.units
        glorot = self.initializer == "glorot_uniform"
        limit = glorot_limit(n_in, n_out) if glorot else float(self.initializer)

        def blocks(dtype):
            return seeded_uniform_blocks(self.seeds, self.layer_index, n_in, n_out, limit, dtype or "float32")

        self.kernel = self.add_weight(
            shape=(self.members, n_in, n_out),
            initializer=lambda shape, dtype=None: blocks(dtype)[:, :n_in],
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(self.members, n_out),
            initializer="zeros" if glorot else (lambda shape, dtype=None: blocks(dtype)[:, n_in]),
            name="bias",
        )

    def call(self, x):
        """x [P, B, n_in] -> f(x K + b) [P, B, n_out]."""
        z = member_matmul(x, self.kernel) + self.bias[:, None, :]
        return _ACTIVATION_FUNCTIONS[self.activation_name](z)

    def propagate(self, jet: Jet) -> Jet:
        """Maps a jet of this layer's input to a jet of its output."""
        linear = jet.dense(self.kernel, self.bias)
        z = linear.value
        if self.activation_name == "linear":
            return linear
        if self.activation_name == "tanh":
            o = tf.tanh(z)
            d1 = 1.0 - tf.square(o)
            d2 = -2.0 * o * d1
        else:  # relu: f'' = 0 almost everywhere
            o = tf.nn.relu(z)
            d1 = tf.cast(z > 0, z.dtype)
            d2 = None
        return Jet(
            o, linear.grad_z, linear.hess_in, d1, d2, diagonal=jet.diagonal, hess_kernel=linear.hess_kernel
        )

    def head(self, jet: Jet) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """This layer as a scalar linear output: (q [P, B], g [P, B, d], H [P, B, d, d] or [P, B, d])."""
        if self.units != 1 or self.activation_name != "linear":
            raise ValueError("head() needs a linear layer with one unit")
        return jet.scalar_head(self.kernel, self.bias)
