"""The learners: Smoothie (and Smoothie-KL) and the DDPG baseline, each with one compiled train step
for a population of one or more members; `make_agent` builds one run from its hparams,
`make_population` several runs trained together."""

from smoothie_tf.agents.config import AgentConfig
from smoothie_tf.agents.ddpg import DDPGAgent
from smoothie_tf.agents.factory import AGENTS, make_agent, make_population, mean_action_function
from smoothie_tf.agents.smoothie import SmoothieAgent

__all__ = [
    "AGENTS",
    "AgentConfig",
    "DDPGAgent",
    "SmoothieAgent",
    "make_agent",
    "make_population",
    "mean_action_function",
]
