"""Optimisation with a member axis: every variable is [P, ...], and member k's update reads member k's
slices alone (its gradients, its moments, its learning rate, its step count).

`MemberAdam` is keras.optimizers.Adam (Keras 3, its defaults) with one learning rate per member,
`clip_by_member_norm` is tf.clip_by_global_norm applied to each member (`member_global_norm` its
norm), `polyak_update` the target networks' x̄ ← (1 − τ)·x̄ + τ·x with one τ per member.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

# keras.optimizers.Adam's defaults.
BETA_1 = 0.9
BETA_2 = 0.999
EPSILON = 1e-7


def member_column(values: tf.Tensor, rank: int) -> tf.Tensor:
    """values: [P] -> [P, 1, ..., 1] of the given rank, to scale [P, ...] tensors member by member."""
    return tf.reshape(values, [-1] + [1] * (rank - 1))


# Sums over a member's slice of at least this many entries are taken by `member_sums` as a matmul.
MATMUL_SUM_MIN_SIZE = 2048
# float32 counts integers exactly below this: larger slices are checked finite by a reduction.
EXACT_COUNT_LIMIT = 2**24


def sum_chunk(size: int) -> int | None:
    """The row length of the matmul that `member_sums` sums `size` entries with: the largest
    divisor of `size` in [32, 256], or None (a plain reduction) for small or awkward sizes."""
    if size < MATMUL_SUM_MIN_SIZE:
        return None
    return next((c for c in range(256, 31, -1) if size % c == 0), None)


def member_sums(x: tf.Tensor) -> tf.Tensor:
    """Σ over the non-member axes of x [P, ...] -> [P] (tf.reduce_sum over axes 1, 2, ...).

    A large slice is summed as rows of c entries times a vector of ones, then the rows' sums: XLA's
    CPU reduction of a [P, 400, 300] tensor takes several times as long as this matmul (and the
    result differs only by float rounding)."""
    size = x.shape[1:].num_elements()
    chunk = None if size is None else sum_chunk(size)
    if chunk is None:
        return tf.reduce_sum(x, axis=list(range(1, len(x.shape))))
    rows = tf.matmul(tf.reshape(x, [-1, chunk]), tf.ones([chunk, 1], x.dtype))  # [P·size/c, 1]
    return tf.reduce_sum(tf.reshape(rows, [-1, size // chunk]), axis=1)


def member_all_finite(x: tf.Tensor) -> tf.Tensor:
    """Whether every entry of each member's slice of x [P, ...] is finite: bool [P].

    A large slice counts its finite entries with `member_sums` (exact below EXACT_COUNT_LIMIT)."""
    size = x.shape[1:].num_elements()
    finite = tf.math.is_finite(x)
    if size is None or size >= EXACT_COUNT_LIMIT or sum_chunk(size) is None:
        return tf.reduce_all(tf.reshape(finite, [tf.shape(x)[0], -1]), axis=1)
    return tf.equal(member_sums(tf.cast(finite, tf.float32)), float(size))


def member_global_norm(gradients: Sequence[tf.Tensor | None]) -> tf.Tensor:
    """‖g_k‖ = sqrt(Σ over tensors and their non-member axes of g_k²), tf.linalg.global_norm of each
    member's slices: gradients [P, ...] each (None skipped) -> [P]."""
    present = [g for g in gradients if g is not None]
    if not present:
        raise ValueError("a member norm needs at least one gradient")
    squares = [member_sums(tf.square(g)) for g in present]
    return tf.sqrt(tf.add_n(squares))


def clip_by_member_norm(
    gradients: Sequence[tf.Tensor | None], clip_norm
) -> tuple[list[tf.Tensor | None], tf.Tensor]:
    """tf.clip_by_global_norm for each member apart: g_k·c_k / max(‖g_k‖, c_k), with ‖g_k‖ the norm of
    member k's slices of every tensor (all of their non-member axes).

    gradients: tensors [P, ...] (None passes through); clip_norm: [P] (or a scalar for all).
    Returns the clipped gradients and norms: [P], the norms before clipping. As
    tf.clip_by_global_norm, a member whose norm is inf or NaN gets NaN gradients.
    """
    norms = member_global_norm(gradients)
    clip_norm = tf.cast(clip_norm, norms.dtype)
    # tf.clip_by_global_norm's scale: c·min(1/‖g‖, 1/c), NaN when ‖g‖ is not finite.
    scale = clip_norm * tf.minimum(1.0 / norms, 1.0 / clip_norm)
    scale = scale + (norms - norms)
    clipped = [None if g is None else g * member_column(scale, len(g.shape)) for g in gradients]
    return clipped, norms


def polyak_update(targets: Sequence[tf.Variable], sources: Sequence[tf.Variable], tau) -> None:
    """x̄ ← (1 − τ_k)·x̄ + τ_k·x for each member k (the target networks' lag). targets, sources:
    [P, ...] variables in matching order; tau: [P] (or a scalar for all)."""
    if len(targets) != len(sources):
        raise ValueError(f"{len(targets)} targets for {len(sources)} sources")
    for target, source in zip(targets, sources, strict=True):
        rate = tf.convert_to_tensor(tau, target.dtype)
        if rate.shape.rank == 1:
            rate = member_column(rate, len(target.shape))
        target.assign((1.0 - rate) * target + rate * source)


class MemberAdam(tf.Module):
    """keras.optimizers.Adam with one learning rate per member.

    For each member k, at its step t = iterations_k + 1:
        m ← m + (g − m)(1 − β1),  v ← v + (g² − v)(1 − β2),
        w ← w − α_k·m / (sqrt(v) + ε),  α_k = lr_k·sqrt(1 − β2^t) / (1 − β1^t),
    Keras' arithmetic, ε outside the bias correction (β1 0.9, β2 0.999, ε 1e-7).

    variables: [P, ...] each (tf or Keras variables); learning_rate: [P], held in the non-trainable
    variable `learning_rate` (assign a member's entry to change its rate). State: m and v shaped
    like each variable, iterations [P] int64; every state variable has the member axis first,
    so a member's optimiser state is its slices of them (`state_variables`).
    """

    def __init__(self, variables: Sequence, learning_rate, name: str = "adam"):
        super().__init__(name=re.sub(r"\W", "_", name))
        variables = list(variables)
        if not variables:
            raise ValueError("MemberAdam needs at least one variable")
        with np.errstate(over="ignore"):  # a rate beyond float32's range is inf, as in a float32 variable
            rates = np.asarray(learning_rate, np.float32)
        if rates.ndim != 1:
            raise ValueError(f"learning_rate must be [P] (one per member), got shape {rates.shape}")
        members = rates.shape[0]
        for variable in variables:
            if len(variable.shape) < 1 or variable.shape[0] != members:
                raise ValueError(
                    f"every variable needs the member axis [{members}, ...], got {variable.shape}"
                )
        self.members = members
        self.prefix = name
        self.learning_rate = tf.Variable(rates, trainable=False, name=f"{name}/learning_rate")
        self.iterations = tf.Variable(
            tf.zeros([members], tf.int64), trainable=False, name=f"{name}/iterations"
        )
        self.momentums = [
            tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name=f"{name}/m/{i}")
            for i, v in enumerate(variables)
        ]
        self.velocities = [
            tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name=f"{name}/v/{i}")
            for i, v in enumerate(variables)
        ]
        # Python ids, not the variables: the optimiser must not own (nor checkpoint) the weights.
        self._slot_of = tuple(id(v) for v in variables)

    def state_variables(self) -> dict[str, tf.Variable]:
        """Every state variable by a stable name, each with the member axis first."""
        state = {
            f"{self.prefix}/learning_rate": self.learning_rate,
            f"{self.prefix}/iterations": self.iterations,
        }
        for i, (m, v) in enumerate(zip(self.momentums, self.velocities, strict=True)):
            state[f"{self.prefix}/m/{i}"] = m
            state[f"{self.prefix}/v/{i}"] = v
        return state

    def apply(self, gradients: Sequence[tf.Tensor | None], variables: Sequence) -> None:
        """One Adam step for every member: gradients[i] [P, ...] onto variables[i] (a subset of the
        variables given at construction, any order; a None gradient leaves its variable and its
        moments untouched, as Keras). Every member's step count advances by one."""
        gradients, variables = list(gradients), list(variables)
        if len(gradients) != len(variables):
            raise ValueError(f"{len(gradients)} gradients for {len(variables)} variables")
        step = tf.cast(self.iterations + 1, tf.float32)  # [P]
        beta_1_power = tf.pow(tf.constant(BETA_1, tf.float32), step)
        beta_2_power = tf.pow(tf.constant(BETA_2, tf.float32), step)
        alpha = self.learning_rate * tf.sqrt(1.0 - beta_2_power) / (1.0 - beta_1_power)  # [P]
        for gradient, variable in zip(gradients, variables, strict=True):
            if gradient is None:
                continue
            slot = self._slot_index(variable)
            m, v = self.momentums[slot], self.velocities[slot]
            gradient = tf.cast(gradient, variable.dtype)
            m.assign_add((gradient - m) * (1.0 - BETA_1))
            v.assign_add((tf.square(gradient) - v) * (1.0 - BETA_2))
            rate = member_column(tf.cast(alpha, variable.dtype), len(variable.shape))
            variable.assign_sub((m * rate) / (tf.sqrt(v) + EPSILON))
        self.iterations.assign_add(tf.ones([self.members], tf.int64))

    def _slot_index(self, variable) -> int:
        try:
            return self._slot_of.index(id(variable))
        except ValueError:
            raise ValueError(f"MemberAdam was not built with variable {variable.name}") from None
