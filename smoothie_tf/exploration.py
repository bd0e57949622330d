"""DDPG's exploration noise: an Ornstein–Uhlenbeck process in discrete time (SPEC.md section 2).

Smoothie needs no module here: it explores by sampling its own policy N(μθ(s), Σφ).
"""

from __future__ import annotations

import tensorflow as tf


def ou_stationary_variance(damping: float, stddev: float) -> float:
    """Var x_∞ = σ² / (1 − (1 − θ)²) of x_{t+1} = (1 − θ)·x_t + σ·ε_t (a stable AR(1) for 0 < θ ≤ 1)."""
    return stddev**2 / (1.0 - (1.0 - damping) ** 2)


class OrnsteinUhlenbeckNoise(tf.Module):
    """x_{t+1} = (1 − θ)·x_t + σ·ε_t, ε_t ~ N(0, I), x reset to 0 at each episode start.

    θ = `damping` (the hparam `ou_damping`), σ = `stddev` (`ou_stddev`). Each call advances the
    process one step and returns the new x: [action_dim], so an episode's first action already
    carries noise σ·ε_0. The state and the generator are tf variables, so a tf.train.Checkpoint
    of this module resumes the same noise sequence.
    """

    def __init__(self, action_dim: int, damping: float, stddev: float, seed: int, name: str = "ou_noise"):
        super().__init__(name=name)
        if not 0 < damping <= 1:
            raise ValueError(f"OU damping must be in (0, 1], got {damping}")
        if stddev < 0:
            raise ValueError(f"OU stddev must be >= 0, got {stddev}")
        self.damping = float(damping)
        self.stddev = float(stddev)
        self.state = tf.Variable(tf.zeros([action_dim]), trainable=False, name="state")
        self.generator = tf.random.Generator.from_seed(seed)

    @property
    def stationary_variance(self) -> float:
        """σ² / (1 − (1 − θ)²), each dimension's variance once the process has forgotten x_0."""
        return ou_stationary_variance(self.damping, self.stddev)

    def __call__(self) -> tf.Tensor:
        """One step x ← (1 − θ)·x + σ·ε; returns the new x: [action_dim]."""
        noise = self.generator.normal(tf.shape(self.state))
        return self.state.assign((1.0 - self.damping) * self.state + self.stddev * noise)

    def reset(self) -> None:
        """x ← 0 (called at each episode start)."""
        self.state.assign(tf.zeros_like(self.state))
