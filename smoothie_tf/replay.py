"""Experience replay."""

from typing import NamedTuple

import tensorflow as tf


class Batch(NamedTuple):
    """A batch of transitions (s, ã, r, s', terminated), as the train steps take it."""

    observations: tf.Tensor  # [B, S]
    actions: tf.Tensor  # [B, d], the clipped actions that were taken
    rewards: tf.Tensor  # [B]
    next_observations: tf.Tensor  # [B, S]
    terminated: tf.Tensor  # [B], 1.0 where the episode ended in a terminal state (not a time limit)
