"""The learners: Smoothie (and Smoothie-KL) and the DDPG baseline, each with one compiled train step;
`make_agent` builds one from a run's hparams."""

from smoothie_tf.agents.config import AgentConfig
from smoothie_tf.agents.ddpg import DDPGAgent
from smoothie_tf.agents.factory import AGENTS, make_agent, mean_action_function
from smoothie_tf.agents.smoothie import SmoothieAgent

__all__ = ["AGENTS", "AgentConfig", "DDPGAgent", "SmoothieAgent", "make_agent", "mean_action_function"]
