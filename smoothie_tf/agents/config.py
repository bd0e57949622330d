"""The agents' hyperparameters: the learner's keys of `smoothie_tf.hparams.HParams`.

Each key is declared, documented, given its default and range-checked once, in
`smoothie_tf/hparams.py`; `AgentConfig` is the subset an agent is built from. The members of a
population may differ in any key but those that give a shape (`SHAPE_KEYS`).
"""

from __future__ import annotations

import dataclasses

from smoothie_tf import hparams as hparams_lib

AGENT_KEYS = (
    "actor_lr",
    "critic_lr",
    "reward_scale",
    "discount",
    "target_lag",
    "grad_clip",
    "huber_delta",
    "kl_penalty",
    "log_variance_lr",
    "initial_log_variance",
    "ou_damping",
    "ou_stddev",
    "actor_hidden",
    "critic_state_embedding",
    "critic_hidden",
    "critic_activation",
    "batch_size",
    "derivative_bellman_k1",
    "derivative_bellman_k2",
    "derivative_bellman_diagonal",
    "derivative_bellman_baseline",
)


# Keys that give a tensor a shape (or the step its structure): every member of a population has
# the same value. The others may differ between members.
SHAPE_KEYS = (
    "actor_hidden",
    "critic_state_embedding",
    "critic_hidden",
    "critic_activation",
    "batch_size",
    "derivative_bellman_diagonal",
)


def _copy_field(name: str) -> tuple[str, type, dataclasses.Field]:
    source = hparams_lib.FIELDS[name]
    if source.default_factory is not dataclasses.MISSING:
        field = dataclasses.field(default_factory=source.default_factory, metadata=source.metadata)
    else:
        field = dataclasses.field(default=source.default, metadata=source.metadata)
    return name, hparams_lib.TYPES[name], field


def _from_keywords(cls, owner: str, keywords: dict) -> AgentConfig:
    """The config from an agent's keyword arguments: an unknown key is a TypeError, a value of
    the wrong type or out of range a ValueError (HParamsError)."""
    unknown = sorted(set(keywords) - set(AGENT_KEYS))
    if unknown:
        raise TypeError(f"{owner} got an unexpected keyword argument {unknown[0]!r}")
    values = dict(keywords)
    for key in ("actor_hidden", "critic_hidden"):
        if key in values:
            values[key] = [int(units) for units in values[key]]
    config = cls(**values)
    config.validate(agent="ddpg" if owner.lower().startswith("ddpg") else "smoothie")
    return config


def _validate(self, agent: str = "smoothie") -> None:
    """HParams' range checks, on a full record with these values (others at their defaults)."""
    record = dataclasses.replace(hparams_lib.HParams(), agent=agent, **dataclasses.asdict(self))
    hparams_lib.validate(record)


AgentConfig = dataclasses.make_dataclass(
    "AgentConfig",
    [_copy_field(name) for name in AGENT_KEYS],
    frozen=True,
    namespace={"from_keywords": classmethod(_from_keywords), "validate": _validate},
)
AgentConfig.__module__ = __name__
AgentConfig.__doc__ = "What an agent is built from: the learner's keys of HParams, with its defaults."


def member_configs(owner: str, records: list[dict]) -> list[AgentConfig]:
    """One config per member from its keyword arguments (see `from_keywords`); a ValueError names
    the first shape-giving key in which the members differ."""
    configs = [AgentConfig.from_keywords(owner, record) for record in records]
    for key in SHAPE_KEYS:
        values = [getattr(config, key) for config in configs]
        if any(value != values[0] for value in values):
            raise ValueError(
                f"the members differ in {key} ({', '.join(map(str, values))}), which gives a tensor its "
                "shape; a population needs one value of it"
            )
    return configs
