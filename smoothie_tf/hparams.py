"""The hyperparameter record: typed, documented, loaded from flat JSON, overridden, validated."""

from __future__ import annotations

import dataclasses
import json
import os
import typing

AGENTS = ("smoothie", "ddpg")


def _field(default, doc: str):
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass(frozen=True)
class HParams:
    """Every key of a run (SPEC.md section 4). Defaults are the paper's where it fixes them."""

    agent: str = _field("smoothie", "learner: 'smoothie' (with kl_penalty > 0: Smoothie-KL) or 'ddpg'")
    total_steps: int = _field(1_000_000, "environment steps of the run")
    actor_lr: float = _field(1e-4, "Adam learning rate of the policy (mean and, for Smoothie, log-variances)")
    critic_lr: float = _field(1e-3, "Adam learning rate of the critic")
    reward_scale: float = _field(0.1, "c in the Bellman target y = c·r + γ(1 − terminal)·Q̄")
    discount: float = _field(0.995, "γ, the discount factor (paper: 0.995)")
    target_lag: float = _field(0.01, "τ of the Polyak target update x̄ ← (1 − τ)x̄ + τx (paper: 0.01)")
    batch_size: int = _field(128, "transitions per gradient update (paper: 128)")
    grad_clip: float = _field(4.0, "global-norm clip of the critic's gradients (paper: 4.0)")
    huber_delta: float = _field(1.0, "δ of the Huber critic loss (paper: 1.0)")
    updates_per_step: int = _field(1, "gradient updates per environment step (paper: 1)")
    kl_penalty: float = _field(0.0, "λ of the KL penalty to the target policy (0 = plain Smoothie)")
    initial_log_variance: float = _field(-1.0, "initial φ, the policy's log-variances (paper: −1)")
    ou_damping: float = _field(0.15, "θ of DDPG's Ornstein–Uhlenbeck noise")
    ou_stddev: float = _field(0.2, "σ of DDPG's Ornstein–Uhlenbeck noise")
    replay_capacity: int = _field(1_000_000, "transitions the replay buffer holds")
    warmup_steps: int = _field(10_000, "initial steps with uniform-random actions (not in the paper)")
    eval_interval: int = _field(10_000, "environment steps between evaluations")
    eval_episodes: int = _field(10, "deterministic (mean-action) episodes per evaluation")
    checkpoint_interval: int = _field(50_000, "environment steps between checkpoints")
    actor_hidden: list[int] = _field([400, 300], "hidden relu layers of the policy mean (paper: 400, 300)")
    critic_state_embedding: int = _field(400, "units of the critic's tanh state embedding (paper: 400)")
    critic_hidden: list[int] = _field([300], "tanh layers of the critic after the action (paper: 300)")
    critic_activation: str = _field("tanh", "the critic's activation: 'tanh' (Smoothie needs a smooth one)")
    log_variance_lr: float = _field(
        0.0, "Smoothie: a separate Adam learning rate for φ (0 = φ shares the actor's, as in the paper)"
    )
    derivative_bellman_k1: float = _field(0.0, "weight of the k = 1 derivative Bellman loss (0 = off)")
    derivative_bellman_k2: float = _field(0.0, "weight of the k = 2 derivative Bellman loss (0 = off)")
    derivative_bellman_diagonal: bool = _field(False, "k = 2 loss on the Hessian's diagonal only")
    derivative_bellman_baseline: bool = _field(False, "control variate y − sg(Q̃w(s, a)) in the targets")


class HParamsError(ValueError):
    """A hyperparameter problem, with a one-line message naming the key."""


FIELDS = {f.name: f for f in dataclasses.fields(HParams)}
TYPES = typing.get_type_hints(HParams)


def describe() -> dict[str, str]:
    """key -> its documentation."""
    return {name: f.metadata["doc"] for name, f in FIELDS.items()}


def _coerce(key: str, value, source: str):
    """Checks value against the key's declared type; ints are accepted for floats."""
    kind = TYPES[key]
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind == list[int]:
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
    name = getattr(kind, "__name__", str(kind))
    raise HParamsError(f"{source}: {key} must be {name}, got {value!r}")


def from_dict(values: dict, source: str = "hparams") -> HParams:
    """HParams from a flat dict; unknown keys and wrong types are errors, missing keys take defaults."""
    if not isinstance(values, dict):
        raise HParamsError(f"{source}: expected a JSON object of hparams, got {type(values).__name__}")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise HParamsError(f"{source}: unknown key {unknown[0]!r} (known keys: {', '.join(FIELDS)})")
    return HParams(**{key: _coerce(key, value, source) for key, value in values.items()})


def load(path: str | os.PathLike) -> HParams:
    """Reads a flat JSON hparams file."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as error:
        raise HParamsError(f"cannot read hparams file {path}: {error.strerror}") from error
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise HParamsError(f"hparams file {path} is malformed JSON: {error}") from error
    return from_dict(values, f"hparams file {path}")


def to_json(hp: HParams) -> str:
    return json.dumps(dataclasses.asdict(hp), indent=2)


def from_json(text: str) -> HParams:
    return from_dict(json.loads(text))


def apply_overrides(hp: HParams, overrides: list[str]) -> HParams:
    """Applies "KEY=VALUE" strings; VALUE is read as JSON (so lists are "[400,300]"), else as a string."""
    changes = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HParamsError(f"--hparam {item!r} must look like KEY=VALUE")
        if key not in FIELDS:
            raise HParamsError(f"--hparam: unknown key {key!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # a bare string such as agent=ddpg
        changes[key] = _coerce(key, value, "--hparam")
    return dataclasses.replace(hp, **changes)


def validate(hp: HParams) -> None:
    """Raises HParamsError for the first out-of-range value."""

    def need(condition: bool, message: str) -> None:
        if not condition:
            raise HParamsError(message)

    need(hp.agent in AGENTS, f"agent must be one of {AGENTS}, got {hp.agent!r}")
    need(
        hp.critic_activation in ("tanh", "relu", "linear"),
        f"unknown critic_activation {hp.critic_activation!r}",
    )
    for key in ("actor_lr", "critic_lr", "reward_scale", "grad_clip", "huber_delta", "ou_stddev"):
        need(getattr(hp, key) > 0, f"{key} must be > 0, got {getattr(hp, key)}")
    need(0 < hp.discount <= 1, f"discount must be in (0, 1], got {hp.discount}")
    need(0 < hp.target_lag <= 1, f"target_lag must be in (0, 1], got {hp.target_lag}")
    need(0 < hp.ou_damping <= 1, f"ou_damping must be in (0, 1], got {hp.ou_damping}")
    for key in ("total_steps", "batch_size", "updates_per_step", "replay_capacity"):
        need(getattr(hp, key) >= 1, f"{key} must be >= 1, got {getattr(hp, key)}")
    for key in ("eval_interval", "eval_episodes", "checkpoint_interval", "critic_state_embedding"):
        need(getattr(hp, key) >= 1, f"{key} must be >= 1, got {getattr(hp, key)}")
    need(hp.warmup_steps >= 0, f"warmup_steps must be >= 0, got {hp.warmup_steps}")
    need(
        hp.batch_size <= hp.replay_capacity,
        f"batch_size {hp.batch_size} is larger than replay_capacity {hp.replay_capacity}",
    )
    for key in ("kl_penalty", "derivative_bellman_k1", "derivative_bellman_k2"):
        need(getattr(hp, key) >= 0, f"{key} must be >= 0, got {getattr(hp, key)}")
    for key in ("actor_hidden", "critic_hidden"):
        sizes = getattr(hp, key)
        need(
            len(sizes) >= 1 and all(s >= 1 for s in sizes),
            f"{key} must be non-empty positive sizes, got {sizes}",
        )
    need(hp.log_variance_lr >= 0, f"log_variance_lr must be >= 0, got {hp.log_variance_lr}")
    need(
        hp.agent != "smoothie" or hp.critic_activation == "tanh",
        f"critic_activation {hp.critic_activation!r} cannot train Smoothie: its action-Hessian is zero, "
        "so the covariance would never learn; use 'tanh'",
    )
