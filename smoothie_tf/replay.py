"""Experience replay: a ring buffer that stores each observation once.

Transition i keeps its observation s in `states[i]`. Within an episode its next observation s'
is the following transition's s, `states[i + 1]`, so it is not copied. The last s' of an
episode, which no transition starts from, goes to a smaller ring `final_states` (10% of the
capacity by default): about 1.1 observations per transition in all. With episodes shorter
than ten steps on average, that ring wraps first and the oldest episode ends are dropped
from sampling (they are never sampled with a wrong s').
"""

import os
import pathlib
from typing import NamedTuple

import numpy as np
import tensorflow as tf


class Batch(NamedTuple):
    """A batch of transitions (s, ã, r, s', terminated), as the train steps take it."""

    observations: tf.Tensor  # [B, S]
    actions: tf.Tensor  # [B, d], the clipped actions that were taken
    rewards: tf.Tensor  # [B]
    next_observations: tf.Tensor  # [B, S]
    terminated: tf.Tensor  # [B], 1.0 where the episode ended in a terminal state (not a time limit)


class ReplayBuffer:
    """Uniform replay of the last `capacity` transitions."""

    ARRAYS = (
        "states",
        "actions",
        "rewards",
        "terminated",
        "episode_end",
        "final_slot",
        "final_states",
        "final_owner",
    )

    def __init__(self, capacity: int, observation_dim: int, action_dim: int, final_fraction: float = 0.1):
        if capacity < 2:
            raise ValueError(f"replay capacity must be >= 2, got {capacity}")
        self.capacity = int(capacity)
        self.observation_dim = int(observation_dim)
        self.action_dim = int(action_dim)
        finals = max(1, int(np.ceil(final_fraction * self.capacity)))
        self.states = np.zeros((self.capacity, observation_dim), np.float32)
        self.actions = np.zeros((self.capacity, action_dim), np.float32)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.terminated = np.zeros(self.capacity, np.float32)
        self.episode_end = np.zeros(self.capacity, np.bool_)
        self.final_slot = np.zeros(self.capacity, np.int32)  # where an episode end's s' is
        self.final_states = np.zeros((finals, observation_dim), np.float32)
        self.final_owner = np.full(finals, -1, np.int64)  # transition number whose s' a final slot holds
        # transitions added, episode ends added, 1 if the next add starts an episode
        self.counters = np.array([0, 0, 1], np.int64)

    @property
    def added(self) -> int:
        return int(self.counters[0])

    def __len__(self) -> int:
        return min(self.added, self.capacity)

    def add(self, observation, action, reward, next_observation, terminated: bool, truncated: bool) -> None:
        """Stores one transition. Within an episode, `observation` must be the previous call's
        `next_observation` (it is not stored again)."""
        transition = self.added
        i = transition % self.capacity
        if self.counters[2]:
            self.states[i] = observation
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminated[i] = float(terminated)
        ended = bool(terminated or truncated)
        self.episode_end[i] = ended
        if ended:
            k = int(self.counters[1] % len(self.final_states))
            self.final_states[k] = next_observation
            self.final_owner[k] = transition
            self.final_slot[i] = k
            self.counters[1] += 1
        else:
            self.states[(i + 1) % self.capacity] = next_observation
        self.counters[0] += 1
        self.counters[2] = int(ended)

    def _stale(self, indices: np.ndarray) -> np.ndarray:
        """Which drawn transitions have lost s or s' to newer ones."""
        added = self.added
        newest = (added - 1) % self.capacity
        numbers = added - 1 - (newest - indices) % self.capacity  # transition number of each index
        stale = self.episode_end[indices] & (self.final_owner[self.final_slot[indices]] != numbers)
        if added > self.capacity:  # the oldest transition's s may hold the newest's s'
            stale |= numbers == added - self.capacity
        return stale

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """`batch_size` transitions drawn uniformly (with replacement) from the stored ones."""
        size = len(self)
        if size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        indices = rng.integers(0, size, size=batch_size)
        stale = self._stale(indices)
        while stale.any():
            indices[stale] = rng.integers(0, size, size=int(stale.sum()))
            stale = self._stale(indices)
        ends = self.episode_end[indices]
        next_observations = self.states[(indices + 1) % self.capacity]
        next_observations[ends] = self.final_states[self.final_slot[indices[ends]]]
        return Batch(
            observations=self.states[indices],
            actions=self.actions[indices],
            rewards=self.rewards[indices],
            next_observations=next_observations,
            terminated=self.terminated[indices],
        )

    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in (*self.ARRAYS, "counters"))

    def save(self, path: str | os.PathLike) -> None:
        """Writes the buffer to an .npz (no pickle), atomically."""
        path = pathlib.Path(path)
        temporary = path.with_name(path.name + ".tmp.npz")
        shape = np.array(
            [self.capacity, self.observation_dim, self.action_dim, len(self.final_states)], np.int64
        )
        arrays = {name: getattr(self, name) for name in self.ARRAYS}
        with open(temporary, "wb") as f:
            np.savez(f, shape=shape, counters=self.counters, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)

    def load(self, path: str | os.PathLike) -> None:
        """Restores contents, cursor and size from `save`; the shapes must match this buffer."""
        with np.load(path, allow_pickle=False) as data:
            shape = tuple(int(x) for x in data["shape"])
            expected = (self.capacity, self.observation_dim, self.action_dim, len(self.final_states))
            if shape != expected:
                raise ValueError(
                    f"replay buffer {path} has (capacity, obs, action, finals) {shape}, not {expected}"
                )
            for name in self.ARRAYS:
                getattr(self, name)[...] = data[name]
            self.counters[...] = data["counters"]
