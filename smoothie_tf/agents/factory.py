"""Agents from a run's hparams, and the mean-action graph that evaluation and export share.

Training (`smoothie_tf.training`) and evaluation (`smoothie_tf.evaluation`) both build their
agent here, so neither imports the other.
"""

from __future__ import annotations

import tensorflow as tf

from smoothie_tf import hparams as hparams_lib
from smoothie_tf.agents.base import ActorCriticAgent
from smoothie_tf.agents.config import AGENT_KEYS
from smoothie_tf.agents.ddpg import DDPGAgent
from smoothie_tf.agents.smoothie import SmoothieAgent

# The hparam `agent` -> its class.
AGENTS: dict[str, type[ActorCriticAgent]] = {"smoothie": SmoothieAgent, "ddpg": DDPGAgent}


def make_agent(hp: hparams_lib.HParams, observation_dim: int, action_space, seed: int) -> ActorCriticAgent:
    """The agent `hp.agent` built from the learner's keys of `hp`, for observations [S =
    observation_dim] and actions inside `action_space.low` .. `action_space.high`."""
    kwargs = {key: getattr(hp, key) for key in AGENT_KEYS}
    return AGENTS[hp.agent](observation_dim, action_space.low, action_space.high, seed=seed, **kwargs)


def make_population(
    hps: list[hparams_lib.HParams], observation_dim: int, action_space, seeds: list[int]
) -> ActorCriticAgent:
    """One agent of len(seeds) members, member k built from the learner's keys of hps[k] with seed
    seeds[k]; every member has the same `agent` (a ValueError names the first other key that
    must be the same and is not)."""
    kinds = sorted({hp.agent for hp in hps})
    if len(kinds) != 1:
        raise ValueError(f"the members differ in agent ({', '.join(kinds)}); a population has one")
    records = [{key: getattr(hp, key) for key in AGENT_KEYS} for hp in hps]
    return AGENTS[kinds[0]](
        observation_dim, action_space.low, action_space.high, seeds=list(seeds), hparams=records
    )


def mean_action_function(policy, observation_dim: int) -> tf.types.experimental.GenericFunction:
    """observations [N, S] float32 -> mean actions [N, d]: the graph a SavedModel exports."""
    return tf.function(
        lambda observations: policy(observations),
        input_signature=[tf.TensorSpec([None, observation_dim], tf.float32, name="observations")],
    )
