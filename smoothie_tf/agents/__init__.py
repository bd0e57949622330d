"""The learners: Smoothie (and Smoothie-KL) and the DDPG baseline, each with one compiled train step."""

from smoothie_tf.agents.config import AgentConfig
from smoothie_tf.agents.ddpg import DDPGAgent
from smoothie_tf.agents.smoothie import SmoothieAgent

__all__ = ["AgentConfig", "DDPGAgent", "SmoothieAgent"]
