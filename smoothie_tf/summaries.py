"""TensorBoard dashboards of a run: scalars, histograms, the hparams dashboard and a layout.

Tags (docs/design.md section 5): eval/mean_return, train/episode_return, loss/critic, loss/policy,
policy/mean_variance, policy/variance (histogram, and one scalar per action dimension),
critic/q_mean, perf/env_steps_per_sec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.plugins.hparams import api as hparams_api

EVAL_RETURN = "eval/mean_return"


def _layout(action_dim: int) -> layout_pb2.Layout:
    """One page with returns, the policy's variance per action dimension, the critic and losses."""

    def chart(title: str, tags: list[str]) -> layout_pb2.Chart:
        return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=tags))

    variance_tags = [rf"policy/variance_{i}$" for i in range(action_dim)]
    return layout_pb2.Layout(
        category=[
            layout_pb2.Category(
                title="smoothie",
                chart=[
                    chart("returns (eval and train)", [r"eval/mean_return$", r"train/episode_return$"]),
                    chart("policy variance per action dimension", [r"policy/mean_variance$", *variance_tags]),
                    chart("critic", [r"critic/.*"]),
                    chart("losses", [r"loss/.*"]),
                ],
            )
        ]
    )


def _hparam_value(value):
    """The hparams dashboard takes bool, int, float and str."""
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


class Summaries:
    """Writes a run's events under logdir (one writer; TensorBoard reads it live)."""

    def __init__(self, logdir: str, action_dim: int):
        self.writer = tf.summary.create_file_writer(logdir)
        self.action_dim = action_dim

    def write_run_header(self, hparams, run_name: str, extra: Mapping[str, object]) -> None:
        """The hparams dashboard entry (metric: eval/mean_return) and the custom-scalars layout."""
        values = {k: _hparam_value(v) for k, v in dataclasses.asdict(hparams).items()}
        values.update({k: _hparam_value(v) for k, v in extra.items()})
        with self.writer.as_default():
            hparams_api.hparams_config(
                hparams=[hparams_api.HParam(k) for k in values],
                metrics=[hparams_api.Metric(EVAL_RETURN, display_name="evaluation return")],
            )
            hparams_api.hparams(values, trial_id=run_name)
            layout = custom_scalar_summary.pb(_layout(self.action_dim)).SerializeToString()
            tf.summary.experimental.write_raw_pb(layout, step=0)
        self.writer.flush()

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        with self.writer.as_default(step=step):
            for tag, value in values.items():
                tf.summary.scalar(tag, value)

    def train_step(self, step: int, metrics: Mapping[str, np.ndarray]) -> None:
        """Scalars as they are; a vector (the variances) as a histogram and one scalar per entry."""
        with self.writer.as_default(step=step):
            for tag, value in metrics.items():
                value = np.asarray(value)
                if value.ndim == 0:
                    tf.summary.scalar(tag, value)
                else:
                    tf.summary.histogram(tag, value)
                    for i, component in enumerate(value):
                        tf.summary.scalar(f"{tag}_{i}", component)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
