"""Action-derivatives carried forward through dense layers (supplement D.1, eqs. 10-11).

A *jet* holds, per example, a layer's value o [B, n], its Jacobian with respect to the action
G = do/da and its Hessian H = d²o/da². Shapes put the action axes before the unit axis, so a
dense layer acts on every part with one matmul by its kernel:

    G: [B, d, n]   (or [d, n] when it is the same for every example)
    H: [B, d, d, n] full, [B, d, n] diagonal-only, or None when it is zero

A dense layer with activation f maps (o, G, H) to (eq. 11):

    z = o K + b        G_z = G K        H_z = H K
    o' = f(z)          G' = f'(z) G_z   H' = f''(z) G_z ⊗ G_z + f'(z) H_z

Diagonal mode propagates diag(H) alone, which is exact:
diag(H') = f''(z) G_z² + f'(z) diag(H_z).

A `Jet` keeps the activated layer in factored form (G_z, H_z, f'(z), f''(z)) and builds G', H'
only when a following hidden layer needs them; a scalar linear head contracts the factored form
directly, so the [B, d, d, n] Hessian of the last hidden layer is never materialised.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

ACTIVATIONS = ("tanh", "relu", "linear")


def _apply_kernel(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """x [..., n_in] @ kernel [n_in, n_out] as one 2-D matmul."""
    n_in, n_out = kernel.shape
    leading = tf.shape(x)[:-1]
    flat = tf.matmul(tf.reshape(x, [-1, n_in]), kernel)
    return tf.reshape(flat, tf.concat([leading, [n_out]], axis=0))


class Jet:
    """A layer's value and its action-derivatives, in factored form.

    value:  o = f(z)  [B, n]
    grad_z: G_z       [d, n] or [B, d, n]
    hess_z: H_z       None, [B, d, d, n] (full) or [B, d, n] (diagonal), built from
                      hess_in [..., m] and hess_kernel [m, n] when it is needed
    d1, d2: f'(z), f''(z) [B, n]; None for a linear layer (f' = 1, f'' = 0).
    """

    def __init__(
        self, value, grad_z, hess_in=None, d1=None, d2=None, *, diagonal: bool = False, hess_kernel=None
    ):
        self.value = value
        self.grad_z = grad_z
        # H_z = hess_in @ hess_kernel, kept apart so that a scalar head can contract the kernel
        # with its weights first (a [B, n] vector) instead of multiplying the Hessian by it.
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
        return self.grad_z.shape.rank == 3

    @property
    def grad(self) -> tf.Tensor:
        """G' = f'(z) G_z: [B, d, n] (or [d, n] for a linear layer on an unbatched jet)."""
        if self.d1 is None:
            return self.grad_z
        return self.d1[:, None, :] * self.grad_z

    @property
    def hess(self) -> tf.Tensor | None:
        """H' = f''(z) G_z ⊗ G_z + f'(z) H_z: [B, d, d, n], or [B, d, n] in diagonal mode."""
        if self.d1 is None:
            return self.hess_z
        hess = None
        if self.d2 is not None:
            g = self.grad_z
            if self.diagonal:
                hess = self.d2[:, None, :] * tf.square(g)
            else:
                outer = g[..., :, None, :] * g[..., None, :, :]  # [(B,) d, d, n]
                hess = self.d2[:, None, None, :] * outer
        hess_z = self.hess_z
        if hess_z is not None:
            d1 = self.d1[:, None, :] if self.diagonal else self.d1[:, None, None, :]
            term = d1 * hess_z
            hess = term if hess is None else hess + term
        return hess

    def dense(self, kernel: tf.Tensor, bias: tf.Tensor) -> Jet:
        """The linear part z = o K + b of a dense layer, with G_z = G K and H_z = H K."""
        value = tf.matmul(self.value, kernel) + bias
        if self.action_offset is not None:  # G = [0; I]: G K is the action's rows of K
            return Jet(value, kernel[self.action_offset :], diagonal=self.diagonal)
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

        kernel: [n, 1]. Returns q [B], g [B, d] and H [B, d, d] (or [B, d] diagonal):
        g = sum_n w_n f'_n G_z[:, n],  H = sum_n w_n (f''_n G_z[:, n] ⊗ G_z[:, n] + f'_n H_z[:, :, n]).
        """
        w = kernel[:, 0]
        q = tf.linalg.matvec(self.value, w) + bias[0]
        d1 = tf.ones_like(self.value) if self.d1 is None else self.d1
        c1 = d1 * w  # [B, n]
        gz = self.grad_z
        shared = not self.batched_grad
        g = _sum_units(gz, c1, shared=shared)
        hess = None
        if self.d2 is not None:
            c2 = self.d2 * w  # [B, n]
            if self.diagonal:
                hess = _sum_units(tf.square(gz), c2, shared=shared)
            elif not shared:  # sum_n c2 G_z[k, n] G_z[l, n] as one batched matmul
                hess = tf.matmul(gz * c2[:, None, :], gz, transpose_b=True)
            else:  # G_z shared by every example: one matmul with its column outer products
                hess = _symmetric_outer_sum(gz, c2)
        if self.hess_in is not None:  # sum_n c1_n (H_in K)[..., n] = H_in @ (K c1)
            weights = c1 if self.hess_kernel is None else tf.matmul(c1, self.hess_kernel, transpose_b=True)
            term = _sum_units(self.hess_in, weights, shared=False)
            hess = term if hess is None else hess + term
        if hess is None:
            d = g.shape[-1]
            hess = tf.zeros_like(g) if self.diagonal else tf.zeros_like(g[:, :, None] * tf.ones([d], g.dtype))
        return q, g, hess


def _symmetric_outer_sum(gz: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
    """sum_n c[b, n] G[k, n] G[l, n] for G [d, n] shared by every example: [B, d, d].

    One matmul over the d(d+1)/2 pairs k <= l (the result is symmetric), then a gather.
    """
    d = gz.shape[0]
    rows, cols = np.triu_indices(d)
    pairs = tf.gather(gz, rows) * tf.gather(gz, cols)  # [d(d+1)/2, n]
    upper = tf.matmul(c, pairs, transpose_b=True)  # [B, d(d+1)/2]
    position = np.zeros((d, d), dtype=np.int32)
    position[rows, cols] = np.arange(rows.size)
    position[cols, rows] = np.arange(rows.size)
    return tf.reshape(tf.gather(upper, position.reshape(-1), axis=1), [-1, d, d])


def _sum_units(x: tf.Tensor, c: tf.Tensor, *, shared: bool) -> tf.Tensor:
    """sum_n c[b, n] x[b, ..., n]; with shared=True x is [..., n], the same for every example."""
    n = x.shape[-1]
    if shared:  # one matmul: c [B, n] @ x^T
        inner = x.shape[:-1]
        flat = tf.matmul(c, tf.reshape(x, [-1, n]), transpose_b=True)
        return tf.reshape(flat, [-1, *inner])
    extra = x.shape.rank - 2
    return tf.reduce_sum(x * tf.reshape(c, [-1] + [1] * extra + [n]), axis=-1)


def action_jet(features: tf.Tensor, actions: tf.Tensor, *, diagonal: bool = False) -> Jet:
    """The jet of the concatenation [e; a]: G = [0; I] (the same for every example), H = 0.

    The state branch e does not depend on the action, so its zero jet is not propagated: the
    next dense layer's G_z = [0; I] K is the action's rows of its kernel, taken as a slice.
    """
    d = actions.shape[-1]
    n_e = features.shape[-1]
    selector = tf.concat([tf.zeros([d, n_e], actions.dtype), tf.eye(d, dtype=actions.dtype)], axis=1)
    jet = Jet(tf.concat([features, actions], axis=-1), selector, diagonal=diagonal)
    jet.action_offset = n_e  # lets the next dense layer slice its kernel instead of a matmul
    return jet


class JetDense(keras.layers.Dense):
    """A Keras dense layer that also maps jets (eq. 11). Activations: tanh, relu, linear."""

    def __init__(self, units: int, activation: str = "linear", **kwargs):
        if activation not in ACTIVATIONS:
            raise ValueError(f"JetDense activation must be one of {ACTIVATIONS}, got {activation!r}")
        super().__init__(units, activation=activation, **kwargs)
        self.activation_name = activation

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
        """This layer as a scalar linear output: (q [B], g [B, d], H [B, d, d] or [B, d])."""
        if self.units != 1 or self.activation_name != "linear":
            raise ValueError("head() needs a linear layer with one unit")
        return jet.scalar_head(self.kernel, self.bias)
