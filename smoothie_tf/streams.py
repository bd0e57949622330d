"""Random streams with a member axis: P independent counter-based streams, member k's a function of
its own seed alone.

Member k's j-th draw is Philox keyed by seeds[k], its 128-bit block counter's high 64 bits j (the
low 64 bits run through the draw): a pure function of (seeds[k], j, shape), so a member draws the
same numbers whether it is alone or in a population of 8, and its stream is saved and restored
with two integers (its key and its counter).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

PHILOX = 1  # tf.random.Algorithm.PHILOX


def _philox(kind: str, shape: tuple[int, ...], key: tf.Tensor, counter: tf.Tensor) -> tf.Tensor:
    """One draw [*shape] from the Philox stream keyed by `key` (int64 scalar), the 128-bit block
    counter's high word `counter` and its low word running through the draw from 0, so successive
    draws never share a block."""
    key = tf.reshape(tf.bitcast(key, tf.uint64), [1])
    counter = tf.stack([tf.constant(0, tf.uint64), tf.bitcast(counter, tf.uint64)])
    if kind == "normal":
        return tf.raw_ops.StatelessRandomNormalV2(shape=shape, key=key, counter=counter, alg=PHILOX)
    return tf.raw_ops.StatelessRandomUniformV2(shape=shape, key=key, counter=counter, alg=PHILOX)


# Always XLA's kernels (XLA's normals are not TF's eager ones): a draw has the same value whether
# it is made eagerly, in a graph or inside a compiled step (where this function is inlined).
@tf.function(jit_compile=True)
def _member_draws(kind: str, shape: tuple[int, ...], keys: tf.Tensor, counters: tf.Tensor) -> tf.Tensor:
    """keys, counters: [P] int64 -> [P, *shape], member k's slice from (keys[k], counters[k]) alone."""
    return tf.stack([_philox(kind, shape, keys[k], counters[k]) for k in range(keys.shape[0])])


def _checked_seeds(seeds: Sequence[int]) -> np.ndarray:
    """One non-negative 63-bit integer per member -> [P] int64."""
    array = np.asarray(seeds)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"seeds must be a non-empty sequence (one per member), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer) or any(not 0 <= int(s) < 2**63 for s in array):
        raise ValueError(f"seeds must be integers in [0, 2**63), got {array.tolist()}")
    return np.array([int(s) for s in array], np.int64)


class MemberStreams(tf.Module):
    """P independent streams of random numbers: `normal(shape)` and `uniform(shape)` -> [P, *shape],
    member k's slice from its own stream, each call advancing every member's counter by one.

    State: keys [P] and counters [P] (int64 variables), so a tf.train.Checkpoint of this module, or
    a member's slices of `state_variables()`, resume the same draws.
    """

    def __init__(self, seeds: Sequence[int], name: str = "streams"):
        super().__init__(name=re.sub(r"\W", "_", name))
        seeds = _checked_seeds(seeds)
        self.members = seeds.size
        self.prefix = name
        self.keys = tf.Variable(seeds, trainable=False, name=f"{name}/keys")
        self.counters = tf.Variable(
            tf.zeros([self.members], tf.int64), trainable=False, name=f"{name}/counters"
        )

    def state_variables(self) -> dict[str, tf.Variable]:
        """keys and counters by a stable name, each [P]."""
        return {f"{self.prefix}/keys": self.keys, f"{self.prefix}/counters": self.counters}

    def normal(self, shape: Sequence[int]) -> tf.Tensor:
        """Standard normal draws [P, *shape]."""
        return self._draw("normal", shape)

    def uniform(self, shape: Sequence[int], minval: float = 0.0, maxval: float = 1.0) -> tf.Tensor:
        """Uniform draws in [minval, maxval): [P, *shape]."""
        return minval + (maxval - minval) * self._draw("uniform", shape)

    def reset_from_seeds(self, seeds: Sequence[int]) -> None:
        """Every member restarts the stream of its seed: keys ← seeds [P], counters ← 0."""
        seeds = _checked_seeds(seeds)
        if seeds.size != self.members:
            raise ValueError(f"{seeds.size} seeds for {self.members} members")
        self.keys.assign(seeds)
        self.counters.assign(tf.zeros([self.members], tf.int64))

    def reseed(self, members: Sequence[int], seeds: Sequence[int]) -> None:
        """Members `members` (indices) restart the streams of `seeds` (one each); the others go on."""
        members = np.asarray(members, np.int64).reshape(-1)
        if members.size == 0 and len(seeds) == 0:
            return
        seeds = _checked_seeds(seeds)
        if seeds.size != members.size:
            raise ValueError(f"{seeds.size} seeds for {members.size} members")
        if np.any((members < 0) | (members >= self.members)) or len(set(members.tolist())) != members.size:
            raise ValueError(f"members must be distinct indices below {self.members}, got {members.tolist()}")
        indices = members[:, None]
        self.keys.scatter_nd_update(indices, seeds)
        self.counters.scatter_nd_update(indices, np.zeros_like(seeds))

    def _draw(self, kind: str, shape: Sequence[int]) -> tf.Tensor:
        draws = _member_draws(kind, tuple(int(n) for n in shape), self.keys.value(), self.counters.value())
        self.counters.assign_add(tf.ones([self.members], tf.int64))
        return draws
