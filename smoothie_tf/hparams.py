"""The hyperparameter record: typed, documented, loaded from flat JSON, overridden, validated."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import typing

AGENTS = ("smoothie", "ddpg")
CRITIC_ACTIVATIONS = ("tanh", "relu", "linear")  # those smoothie_tf.jets.MemberDense maps


def _field(default, doc: str):
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass(frozen=True)
class HParams:
    """Every key of a run (docs/design.md section 4). Defaults are the paper's where it fixes them."""

    agent: str = _field("smoothie", "learner: 'smoothie' (with kl_penalty > 0: Smoothie-KL) or 'ddpg'")
    total_steps: int = _field(1_000_000, "environment steps of the run")
    actor_lr: float = _field(
        1e-4, "Adam learning rate of the policy: mean and, for Smoothie, φ (Table 1 search: 1e-6 to 1e-3)"
    )
    critic_lr: float = _field(1e-3, "Adam learning rate of the critic (Table 1 search: 1e-6 to 1e-3)")
    reward_scale: float = _field(
        0.1, "c in the Bellman target y = c·r + γ(1 − terminal)·Q̄ (Table 1 search: 0.01 to 0.3)"
    )
    discount: float = _field(0.995, "γ, the discount factor (paper: 0.995)")
    target_lag: float = _field(0.01, "τ of the Polyak target update x̄ ← (1 − τ)x̄ + τx (paper: 0.01)")
    batch_size: int = _field(
        128, "transitions per gradient update (paper: 128); updates start once the replay holds this many"
    )
    grad_clip: float = _field(4.0, "global-norm clip of the critic's gradients (paper: 4.0)")
    huber_delta: float = _field(1.0, "δ of the Huber critic loss (paper: 1.0)")
    updates_per_step: int = _field(1, "gradient updates per environment step (paper: 1)")
    kl_penalty: float = _field(
        0.0, "λ of the KL penalty to the target policy (0 = plain Smoothie; Table 1 search: 1e-6 to 4e-2)"
    )
    initial_log_variance: float = _field(-1.0, "initial φ, the policy's log-variances (paper: −1)")
    ou_damping: float = _field(
        0.15, "DDPG: θ of the Ornstein–Uhlenbeck noise x ← (1 − θ)x + σε (Table 1 search: 1e-4 to 1e-3)"
    )
    ou_stddev: float = _field(0.2, "DDPG: σ of the Ornstein–Uhlenbeck noise (Table 1 search: 1e-3 to 1.0)")
    replay_capacity: int = _field(1_000_000, "transitions the replay buffer holds (not given in the paper)")
    warmup_steps: int = _field(10_000, "initial steps with uniform-random actions (not in the paper)")
    eval_interval: int = _field(10_000, "environment steps between evaluations (not in the paper)")
    eval_episodes: int = _field(10, "deterministic (mean-action) episodes per evaluation")
    checkpoint_interval: int = _field(50_000, "environment steps between checkpoints")
    actor_hidden: list[int] = _field([400, 300], "hidden relu layers of the policy mean (paper: 400, 300)")
    critic_state_embedding: int = _field(
        400, "units of the critic's state embedding layer (paper: 400, tanh)"
    )
    critic_hidden: list[int] = _field(
        [300], "layers of the critic on [state embedding; action] (paper: one of 300, tanh)"
    )
    critic_activation: str = _field(
        "tanh",
        "activation of the critic's layers: 'tanh' (paper), 'relu' or 'linear' "
        "(DDPG only: their action-Hessian is zero)",
    )
    log_variance_lr: float = _field(
        0.0, "Smoothie: a separate Adam learning rate for φ (0 = φ shares the actor's, as in the paper)"
    )
    derivative_bellman_k1: float = _field(
        0.0, "weight of the k = 1 derivative Bellman loss, eqs. 6–9 (0 = off)"
    )
    derivative_bellman_k2: float = _field(
        0.0, "weight of the k = 2 derivative Bellman loss, eqs. 6–9 (0 = off)"
    )
    derivative_bellman_diagonal: bool = _field(False, "k = 2 loss on the Hessian's diagonal only")
    derivative_bellman_baseline: bool = _field(False, "control variate y − sg(Q̃w(s, a)) in the targets")


class HParamsError(ValueError):
    """A hyperparameter problem, with a one-line message naming the key."""


FIELDS = {f.name: f for f in dataclasses.fields(HParams)}
TYPES = typing.get_type_hints(HParams)
# How a type is named in error messages.
TYPE_NAMES = {
    int: "an integer",
    float: "a finite number",
    bool: "true or false",
    str: "a string",
    list[int]: "a list of integers such as [400,300]",
}


def describe() -> dict[str, str]:
    """key -> its documentation."""
    return {name: f.metadata["doc"] for name, f in FIELDS.items()}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _coerce(key: str, value, source: str):
    """`value` as the key's declared type, or HParamsError. An int is accepted for a float key
    and an integral float (1e6) for an int key; booleans are never numbers."""
    kind = TYPES[key]
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int:
        if _is_int(value):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)
    if kind is float and (_is_int(value) or isinstance(value, float)) and math.isfinite(value):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    if kind == list[int] and isinstance(value, list | tuple) and all(_is_int(v) for v in value):
        return list(value)
    raise HParamsError(f"{source}: {key} must be {TYPE_NAMES[kind]}, got {value!r}")


def _unknown_key(key: str, source: str) -> HParamsError:
    close = difflib.get_close_matches(key, FIELDS, n=1)
    hint = (
        f" (did you mean {close[0]!r}?)" if close else " (the keys are documented in smoothie_tf/hparams.py)"
    )
    return HParamsError(f"{source}: unknown key {key!r}{hint}")


def from_dict(values: dict, source: str = "hparams") -> HParams:
    """HParams from a flat dict; unknown keys and wrong types are errors, missing keys take
    defaults. `source` begins error messages."""
    if not isinstance(values, dict):
        raise HParamsError(f"{source}: expected a JSON object of hparams, got {type(values).__name__}")
    for key in values:
        if key not in FIELDS:
            raise _unknown_key(key, source)
    return HParams(**{key: _coerce(key, value, source) for key, value in values.items()})


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    values = {}
    for key, value in pairs:
        if key in values:
            raise HParamsError(f"key {key!r} appears twice")
        values[key] = value
    return values


def _parse_json(text: str, source: str):
    try:
        return json.loads(text, object_pairs_hook=_object_without_duplicates)
    except json.JSONDecodeError as error:
        raise HParamsError(f"{source} is malformed JSON: {error}") from error
    except HParamsError as error:
        raise HParamsError(f"{source}: {error}") from error


def load(path: str | os.PathLike) -> HParams:
    """Reads a flat JSON hparams file (not validated: call `validate` after any overrides)."""
    source = f"hparams file {path}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as error:
        raise HParamsError(f"cannot read hparams file {path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise HParamsError(f"{source} is not UTF-8 text: {error.reason}") from error
    return from_dict(_parse_json(text, source), source)


def to_json(hp: HParams) -> str:
    """The record as flat, indented JSON, every key included."""
    return json.dumps(dataclasses.asdict(hp), indent=2)


def from_json(text: str, source: str = "hparams JSON") -> HParams:
    """The inverse of `to_json`: from_json(to_json(hp)) == hp."""
    return from_dict(_parse_json(text, source), source)


def apply_overrides(hp: HParams, overrides: list[str]) -> HParams:
    """`hp` with "KEY=VALUE" strings applied in order (a later one wins). VALUE is read as JSON:
    numbers, true or false, lists such as [400,300]. A string key takes a JSON string's value
    (agent="ddpg") and any other text as it is (agent=ddpg). Not validated: call `validate`."""
    changes = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HParamsError(f"--hparam {item!r} must look like KEY=VALUE")
        if key not in FIELDS:
            raise _unknown_key(key, "--hparam")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if TYPES[key] is str and not isinstance(value, str):
            value = text
        changes[key] = _coerce(key, value, "--hparam")
    return dataclasses.replace(hp, **changes)


def validate(hp: HParams) -> None:
    """Raises HParamsError for the first value of the wrong type or out of range."""

    def need(condition: bool, message: str) -> None:
        if not condition:
            raise HParamsError(message)

    for key in FIELDS:
        _coerce(key, getattr(hp, key), "hparams")  # a record built in code may hold any type
    need(hp.agent in AGENTS, f"agent must be one of {AGENTS}, got {hp.agent!r}")
    need(
        hp.critic_activation in CRITIC_ACTIVATIONS,
        f"critic_activation must be one of {CRITIC_ACTIVATIONS}, got {hp.critic_activation!r}",
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
            f"{key} must be a non-empty list of positive sizes, got {sizes}",
        )
    need(hp.log_variance_lr >= 0, f"log_variance_lr must be >= 0, got {hp.log_variance_lr}")
    need(
        hp.agent != "smoothie" or hp.critic_activation == "tanh",
        f"critic_activation {hp.critic_activation!r} cannot train Smoothie: its action-Hessian is zero, "
        "so the covariance would never learn; use 'tanh'",
    )
