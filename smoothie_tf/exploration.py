"""DDPG's exploration noise: an Ornstein–Uhlenbeck process in discrete time (docs/design.md section 2).

Smoothie needs no module here: it explores by sampling its own policy N(μθ(s), Σφ).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from smoothie_tf.streams import MemberStreams


def ou_stationary_variance(damping, stddev):
    """Var x_∞ = σ² / (1 − (1 − θ)²) of x_{t+1} = (1 − θ)·x_t + σ·ε_t (a stable AR(1) for 0 < θ ≤ 1).
    Floats or arrays (element by element)."""
    return stddev**2 / (1.0 - (1.0 - damping) ** 2)


def _per_member(value, members: int, what: str) -> np.ndarray:
    """A float (the same for every member) or a length-P sequence -> [P] float64."""
    array = np.asarray(value, np.float64)
    if array.ndim == 0:
        return np.full([members], float(array))
    if array.shape != (members,):
        raise ValueError(f"OU {what} must be a float or one value per member ({members}), got {value!r}")
    return array


class OrnsteinUhlenbeckNoise(tf.Module):
    """x_{t+1} = (1 − θ)·x_t + σ·ε_t, ε_t ~ N(0, I), x reset to 0 at each episode start.

    θ = `damping` (the hparam `ou_damping`), σ = `stddev` (`ou_stddev`). Each call advances the
    process one step and returns the new x, so an episode's first action already carries noise σ·ε_0.

    members=None: one process, x: [action_dim]; damping, stddev floats, seed an int.
    members=P: P processes, one per member, x: [P, action_dim]; damping and stddev floats (shared)
    or length-P sequences, seed a length-P sequence. Member k's ε comes from its own stream
    (MemberStreams), so its path is a function of its seed alone, alone or in a population.

    State: x [P, action_dim] (P = 1 when members=None) and the streams' keys and counters [P], all
    tf variables (`state_variables`), so a tf.train.Checkpoint of this module, or a member's slices
    of its state variables, resume the same noise sequence.
    """

    def __init__(
        self,
        action_dim: int,
        damping: float | Sequence[float],
        stddev: float | Sequence[float],
        seed: int | Sequence[int],
        members: int | None = None,
        name: str = "ou_noise",
    ):
        super().__init__(name=re.sub(r"\W", "_", name))
        if members is None:
            count, seeds = 1, [seed]
            if np.ndim(damping) or np.ndim(stddev) or np.ndim(seed):
                raise ValueError(
                    "OU noise without members takes a float damping, a float stddev and an int seed"
                )
        else:
            if isinstance(members, bool) or not isinstance(members, int | np.integer) or members < 1:
                raise ValueError(f"members must be a positive integer or None, got {members!r}")
            count, seeds = int(members), list(np.atleast_1d(seed))
            if np.ndim(seed) != 1 or len(seeds) != count:
                raise ValueError(f"OU seed must be one int per member ({count}), got {seed!r}")
        dampings = _per_member(damping, count, "damping")
        stddevs = _per_member(stddev, count, "stddev")
        for k in range(count):
            if not 0 < dampings[k] <= 1:
                raise ValueError(f"OU damping must be in (0, 1], got {dampings[k]} (member {k})")
            if stddevs[k] < 0:
                raise ValueError(f"OU stddev must be >= 0, got {stddevs[k]} (member {k})")
        self.members = members
        self.action_dim = int(action_dim)
        self.prefix = name
        self._dampings, self._stddevs = dampings, stddevs
        # x ← (1 − θ)·x + σ·ε with θ and σ per member: [P, 1] columns against x [P, d].
        self._decay = (1.0 - dampings).astype(np.float32)[:, None]
        self._scale = stddevs.astype(np.float32)[:, None]
        self.state = tf.Variable(tf.zeros([count, self.action_dim]), trainable=False, name=f"{name}/state")
        self.streams = MemberStreams(seeds, name=name)

    @property
    def damping(self) -> float | np.ndarray:
        """θ: a float (members=None) or [P]."""
        return float(self._dampings[0]) if self.members is None else self._dampings.copy()

    @property
    def stddev(self) -> float | np.ndarray:
        """σ: a float (members=None) or [P]."""
        return float(self._stddevs[0]) if self.members is None else self._stddevs.copy()

    @property
    def stationary_variance(self) -> float | np.ndarray:
        """σ² / (1 − (1 − θ)²), each dimension's variance once the process has forgotten x_0: a float
        (members=None) or [P]."""
        return ou_stationary_variance(self.damping, self.stddev)

    def state_variables(self) -> dict[str, tf.Variable]:
        """x [P, action_dim] and the streams' keys and counters [P], by stable names."""
        return {f"{self.prefix}/state": self.state, **self.streams.state_variables()}

    def __call__(self) -> tf.Tensor:
        """One step x ← (1 − θ)·x + σ·ε; returns the new x: [action_dim] (members=None) or
        [P, action_dim]."""
        noise = self.streams.normal([self.action_dim])
        state = self.state.assign(self._decay * self.state + self._scale * noise)
        return state[0] if self.members is None else state

    def reset(self, mask=None) -> None:
        """x ← 0 (at an episode start): every member's, or only those where mask [P] (bool) is True."""
        if mask is None:
            self.state.assign(tf.zeros_like(self.state))
            return
        mask = tf.convert_to_tensor(mask, tf.bool)
        if mask.shape != (self.state.shape[0],):
            raise ValueError(f"reset mask must be [{self.state.shape[0]}] (one per member), got {mask.shape}")
        self.state.assign(tf.where(mask[:, None], tf.zeros_like(self.state), self.state))
