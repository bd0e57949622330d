"""The agents' hyperparameters: SPEC.md section 4's keys, each documented where it is declared."""

from __future__ import annotations

import dataclasses
import math


def _field(default, doc: str):
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """What an agent is built from. Defaults are the paper's (supplement Table 1 and D) where it
    fixes them, and the values of SPEC.md section 4 where it searched them."""

    actor_lr: float = _field(1e-4, "Adam learning rate of the policy: μθ, and φ for Smoothie")
    critic_lr: float = _field(1e-3, "Adam learning rate of the critic")
    reward_scale: float = _field(0.1, "c in the Bellman target y = c·r + γ(1 − terminated)·Q̄")
    discount: float = _field(0.995, "γ (Table 1: 0.995)")
    target_lag: float = _field(0.01, "τ of the Polyak update x̄ ← (1 − τ)x̄ + τx (Table 1: 0.01)")
    grad_clip: float = _field(4.0, "global-norm clip of the critic's gradients (Table 1: 4.0)")
    huber_delta: float = _field(1.0, "δ of the Huber critic loss (Table 1: 1.0)")
    kl_penalty: float = _field(0.0, "λ of the KL penalty to the target policy (Smoothie only; 0 = off)")
    initial_log_variance: float = _field(-1.0, "initial φ, the policy's log-variances (D: −1; Smoothie)")
    log_variance_lr: float = _field(
        0.0,
        "Adam learning rate of φ alone (Smoothie; 0 = φ is trained with μθ at actor_lr, the paper's "
        "setup). Adam moves φ by about its learning rate per update whatever the Hessian's size, so "
        "a concave critic drives the variance down at that rate (SPEC.md section 2, the pitfall)",
    )
    ou_damping: float = _field(0.15, "θ of the Ornstein–Uhlenbeck exploration noise (DDPG only)")
    ou_stddev: float = _field(0.2, "σ of the Ornstein–Uhlenbeck exploration noise (DDPG only)")
    actor_hidden: list[int] = _field([400, 300], "relu layers of the policy mean (D: 400, 300)")
    critic_state_embedding: int = _field(400, "units of the critic's tanh state embedding (D: 400)")
    critic_hidden: list[int] = _field([300], "critic layers after the action (D: one of 300)")
    critic_activation: str = _field("tanh", "the critic's activation; Smoothie needs a smooth one")
    batch_size: int = _field(128, "transitions per train step, fixed in its input signature (Table 1: 128)")

    @classmethod
    def from_keywords(cls, owner: str, keywords: dict) -> AgentConfig:
        """The config from an agent's keyword arguments: an unknown key is a TypeError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(keywords) - known)
        if unknown:
            raise TypeError(f"{owner} got an unexpected keyword argument {unknown[0]!r}")
        values = dict(keywords)
        for key in ("actor_hidden", "critic_hidden"):
            if key in values:
                values[key] = [int(units) for units in values[key]]
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raises ValueError for the first value out of its range."""

        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(message)

        for key in ("actor_lr", "critic_lr", "reward_scale", "grad_clip", "huber_delta"):
            value = getattr(self, key)
            need(math.isfinite(value) and value > 0, f"{key} must be a finite number > 0, got {value}")
        need(0 < self.discount <= 1, f"discount must be in (0, 1], got {self.discount}")
        need(0 < self.target_lag <= 1, f"target_lag must be in (0, 1], got {self.target_lag}")
        need(0 < self.ou_damping <= 1, f"ou_damping must be in (0, 1], got {self.ou_damping}")
        need(self.ou_stddev >= 0, f"ou_stddev must be >= 0, got {self.ou_stddev}")
        need(self.kl_penalty >= 0, f"kl_penalty must be >= 0, got {self.kl_penalty}")
        need(self.log_variance_lr >= 0, f"log_variance_lr must be >= 0, got {self.log_variance_lr}")
        need(math.isfinite(self.initial_log_variance), "initial_log_variance must be finite")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.critic_state_embedding >= 1, "critic_state_embedding must be >= 1")
        for key in ("actor_hidden", "critic_hidden"):
            sizes = getattr(self, key)
            need(len(sizes) >= 1 and all(s >= 1 for s in sizes), f"{key} must be positive sizes, got {sizes}")
