"""smoothie_tf: Smoothie (smoothed action value functions for Gaussian policies) in TensorFlow 2 / Keras."""

__version__ = "0.1.0"
