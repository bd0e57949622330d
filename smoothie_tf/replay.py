"""Experience replay: a ring of transitions over a ring of observations, each stored once.

Observations live in their own ring, `observations` [M, S], with M = 1.1·capacity + 1 slots by default.
Transition t records only the slot of its s, `observation_slot[t]`; its s' is the next slot.
`add` writes s' to a new slot every step, and s to a new slot only when it differs from the
previous s' (a new episode's reset observation, say), so within an episode each observation is
stored once. An episode of L steps takes L + 1 slots: with episodes of 10 steps or more the
observation ring never limits the buffer. Shorter episodes wear the observation ring out first;
then the oldest transitions, whose s was overwritten, leave the buffer early. Slots are numbered
without wrapping (int64), so the transitions that can be drawn are always the newest `len(self)`
ones, and sampling is exactly uniform over them with no rejection step.
"""

import os
import pathlib
import zipfile
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
    """Uniform replay of the newest (at most `capacity`) transitions.

    capacity: transitions held; observation_dim: S; action_dim: d; extra_observations: the
    observation ring's slots beyond `capacity`, as a fraction of it (0.1: 1.1 observations
    per transition, enough for episodes of 10 steps or more).
    """

    # The arrays that make up the buffer's state, as `save` writes them.
    ARRAYS = ("observations", "actions", "rewards", "terminated", "observation_slot", "counters")

    def __init__(self, capacity: int, observation_dim: int, action_dim: int, extra_observations: float = 0.1):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        if extra_observations < 0:
            raise ValueError(f"extra_observations must be >= 0, got {extra_observations}")
        self.capacity = int(capacity)
        self.observation_dim = int(observation_dim)
        self.action_dim = int(action_dim)
        # C transitions in episodes of >= 1/extra_observations steps span at most this many slots.
        slots = self.capacity + int(np.ceil(extra_observations * self.capacity)) + 1
        self.observations = np.zeros((slots, self.observation_dim), np.float32)  # [M, S]
        self.actions = np.zeros((self.capacity, self.action_dim), np.float32)  # [C, d]
        self.rewards = np.zeros(self.capacity, np.float32)  # [C]
        self.terminated = np.zeros(self.capacity, np.bool_)  # [C]
        self.observation_slot = np.zeros(self.capacity, np.int64)  # [C], unwrapped slot number of s
        # transitions added, observation slots written, number of the oldest transition in the buffer
        self.counters = np.zeros(3, np.int64)

    @property
    def added(self) -> int:
        """Transitions added since the buffer was created (including those since dropped)."""
        return int(self.counters[0])

    def __len__(self) -> int:
        """Transitions that `sample` can return."""
        return int(self.counters[0] - self.counters[2])

    def _write_observation(self, observation) -> int:
        """Stores one observation in the next slot; returns its unwrapped slot number."""
        slot = int(self.counters[1])
        self.observations[slot % len(self.observations)] = observation
        self.counters[1] += 1
        return slot

    def add(
        self,
        observation: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_observation: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Stores one transition (s: [S], ã: [d], r, s': [S]); call it once per environment step.

        `terminated` is stored (no bootstrap past it). `truncated` needs nothing stored: a
        time-limit end still bootstraps from s', and s' is kept whatever the flags.
        """
        observation = self._checked(observation, (self.observation_dim,), "observation")
        next_observation = self._checked(next_observation, (self.observation_dim,), "next_observation")
        action = self._checked(action, (self.action_dim,), "action")
        written = int(self.counters[1])
        previous = self.observations[(written - 1) % len(self.observations)]
        if written > 0 and np.array_equal(observation, previous):
            slot = written - 1  # s is the previous step's s', already stored
        else:
            slot = self._write_observation(observation)
        self._write_observation(next_observation)
        i = self.added % self.capacity
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminated[i] = bool(terminated)
        self.observation_slot[i] = slot
        self.counters[0] += 1
        self._drop_overwritten()

    @staticmethod
    def _checked(array, shape: tuple[int, ...], name: str) -> np.ndarray:
        """`array` as float32 of `shape`, checked before anything is stored."""
        array = np.asarray(array, np.float32)
        if array.shape != shape:
            raise ValueError(f"replay buffer: {name} has shape {array.shape}, expected {shape}")
        return array

    def _drop_overwritten(self) -> None:
        """Moves the oldest transition forward past those evicted from either ring."""
        added, written = int(self.counters[0]), int(self.counters[1])
        first_live_slot = written - len(self.observations)
        oldest = max(int(self.counters[2]), added - self.capacity)
        # Slots grow with the transition number, so the evicted transitions are the oldest ones.
        while oldest < added and self.observation_slot[oldest % self.capacity] < first_live_slot:
            oldest += 1
        self.counters[2] = oldest

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """`batch_size` transitions drawn uniformly, with replacement, from the `len(self)` newest.

        Returns float32 arrays: observations [B, S], actions [B, d], rewards [B],
        next_observations [B, S], terminated [B] (1.0 or 0.0).
        """
        size = len(self)
        if size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        transitions = int(self.counters[2]) + rng.integers(0, size, size=batch_size)
        i = transitions % self.capacity
        slots = self.observation_slot[i]
        rows = len(self.observations)
        return Batch(
            observations=self.observations[slots % rows],
            actions=self.actions[i],
            rewards=self.rewards[i],
            next_observations=self.observations[(slots + 1) % rows],
            terminated=self.terminated[i].astype(np.float32),
        )

    def nbytes(self) -> int:
        """Bytes held by the buffer's arrays."""
        return sum(getattr(self, name).nbytes for name in self.ARRAYS)

    def _shape(self) -> tuple[int, int, int, int]:
        return (self.capacity, self.observation_dim, self.action_dim, len(self.observations))

    def _rows_in_use(self, name: str, counters: np.ndarray) -> int:
        """Leading rows of array `name` that hold data, by `counters`: all of a ring once it has
        wrapped, the rows written so far before that (the rest are zeros)."""
        if name == "counters":
            return len(self.counters)
        if name == "observations":
            return min(int(counters[1]), len(self.observations))
        return min(int(counters[0]), self.capacity)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the whole state to an .npz (no pickle) atomically: a temporary file in the same
        directory, flushed to disk, then renamed over `path`. Rows never written are left out
        (a short run's buffer of 1M transitions takes kilobytes, not 70 MB)."""
        path = pathlib.Path(path)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        arrays = {name: getattr(self, name)[: self._rows_in_use(name, self.counters)] for name in self.ARRAYS}
        try:
            with open(temporary, "wb") as f:
                np.savez(f, allow_pickle=False, shape=np.array(self._shape(), np.int64), **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        directory = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def load(self, path: str | os.PathLike) -> None:
        """Restores contents, cursors and size written by `save`; the shapes must match this
        buffer's (an array may hold all its rows, or only those in use). On any error the buffer
        is left unchanged."""
        try:
            with np.load(path, allow_pickle=False) as data:
                shape = tuple(int(x) for x in data["shape"])
                arrays = {name: data[name] for name in self.ARRAYS}
        except (OSError, KeyError, EOFError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"cannot read replay buffer {path}: {error}") from error
        if shape != self._shape():
            raise ValueError(
                f"replay buffer {path} has (capacity, observation_dim, action_dim, slots) "
                f"{shape}, not {self._shape()}"
            )
        counters = arrays["counters"]
        if counters.shape != self.counters.shape or counters.dtype != self.counters.dtype:
            raise ValueError(f"replay buffer {path}: counters is {counters.dtype}{list(counters.shape)}")
        added, written, oldest = (int(x) for x in counters)
        if not (0 <= added - oldest <= self.capacity and written >= 0):
            raise ValueError(f"replay buffer {path} has inconsistent counters {[added, written, oldest]}")
        for name, array in arrays.items():
            target = getattr(self, name)
            rows = self._rows_in_use(name, counters)
            fits = rows <= len(array) <= len(target) and array.shape[1:] == target.shape[1:]
            if not fits or array.dtype != target.dtype:
                dims = ", ".join([f"{rows}..{len(target)}", *map(str, target.shape[1:])])
                expected = f"{target.dtype}[{dims}]"
                raise ValueError(
                    f"replay buffer {path}: {name} is {array.dtype}{list(array.shape)}, not {expected}"
                )
        for name, array in arrays.items():
            target = getattr(self, name)
            target[: len(array)] = array
            target[len(array) :] = 0
