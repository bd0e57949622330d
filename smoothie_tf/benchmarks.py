"""Timing of the pieces whose speed the project promises (SPEC.md section 8).

Each figure is the median, over `repeats` rounds, of the mean time of one call within a round
of `calls` calls; every function is compiled the same way (tf.function, XLA).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from smoothie_tf.networks import SmoothedCritic


def _fetch(result) -> None:
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)


def time_calls(fns: dict[str, Callable[[], object]], calls: int = 50, repeats: int = 7) -> dict[str, float]:
    """Median seconds per call of each fn, timed in interleaved rounds so that a slow spell of
    the machine falls on every fn alike (ratios between them are what the figures compare)."""
    for fn in fns.values():
        _fetch(fn())  # compile
    rounds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                result = fn()
            _fetch(result)
            rounds[name].append((time.perf_counter() - start) / calls)
    return {name: float(np.median(values)) for name, values in rounds.items()}


def autodiff_hessian(critic: SmoothedCritic, states: tf.Tensor, actions: tf.Tensor):
    """q, g, H by nested tf.GradientTape and a batch Jacobian (the reference for jets)."""
    with tf.GradientTape() as outer:
        outer.watch(actions)
        with tf.GradientTape() as inner:
            inner.watch(actions)
            q = critic(states, actions)
        g = inner.gradient(q, actions)
    return q, g, outer.batch_jacobian(g, actions)


def jets_figures(
    batch: int = 128,
    state_dim: int = 11,
    action_dims: tuple[int, ...] = (3, 6, 17),
    hidden_variants: dict[str, tuple[int, ...]] | None = None,
    calls: int = 50,
    repeats: int = 7,
) -> dict:
    """Forward pass, jets (full and diagonal) and autodiff Hessians, in ms per batch, with ratios."""
    hidden_variants = hidden_variants or {"paper_critic": (300,), "two_hidden_after_action": (300, 300)}
    rng = np.random.default_rng(0)
    figures: dict = {"batch": batch, "state_dim": state_dim}
    for name, hidden in hidden_variants.items():
        per_dim = {}
        for d in action_dims:
            critic = SmoothedCritic(action_dim=d, hidden=hidden)
            states = tf.constant(rng.normal(size=(batch, state_dim)), tf.float32)
            actions = tf.constant(rng.normal(size=(batch, d)), tf.float32)
            critic(states, actions)

            def compiled(fn):
                return tf.function(fn, jit_compile=True)

            forward = compiled(lambda s, a, c=critic: c(s, a))
            full = compiled(lambda s, a, c=critic: c.value_grad_hess(s, a))
            diagonal = compiled(lambda s, a, c=critic: c.value_grad_hess(s, a, diagonal=True))
            autodiff = compiled(lambda s, a, c=critic: autodiff_hessian(c, s, a))
            functions = {
                "forward_ms": forward,
                "jets_full_ms": full,
                "jets_diagonal_ms": diagonal,
                "autodiff_hessian_ms": autodiff,
            }
            seconds = time_calls(
                {key: (lambda f=fn, s=states, a=actions: f(s, a)) for key, fn in functions.items()},
                calls,
                repeats,
            )
            ms = {key: 1e3 * value for key, value in seconds.items()}
            ms["jets_full_over_forward"] = ms["jets_full_ms"] / ms["forward_ms"]
            ms["jets_diagonal_over_forward"] = ms["jets_diagonal_ms"] / ms["forward_ms"]
            ms["autodiff_over_jets_full"] = ms["autodiff_hessian_ms"] / ms["jets_full_ms"]
            ms["autodiff_over_jets_diagonal"] = ms["autodiff_hessian_ms"] / ms["jets_diagonal_ms"]
            per_dim[f"d{d}"] = {k: round(v, 4) for k, v in ms.items()}
        figures[name] = {"hidden_after_action": list(hidden), **per_dim}
    return figures


def random_batch(batch: int, observation_dim: int, action_dim: int, seed: int = 0):
    """A replay-shaped batch of random transitions."""
    from smoothie_tf.replay import Batch

    rng = np.random.default_rng(seed)
    return Batch(
        observations=tf.constant(rng.normal(size=(batch, observation_dim)), tf.float32),
        actions=tf.constant(rng.uniform(-1, 1, size=(batch, action_dim)), tf.float32),
        rewards=tf.constant(rng.normal(size=(batch,)), tf.float32),
        next_observations=tf.constant(rng.normal(size=(batch, observation_dim)), tf.float32),
        terminated=tf.constant(rng.uniform(size=(batch,)) < 0.05, tf.float32),
    )


def train_step_figures(
    dimensions: dict[str, tuple[int, int]] | None = None,
    batch: int = 128,
    calls: int = 50,
    repeats: int = 7,
) -> dict:
    """Updates per second of the Smoothie and DDPG train steps (paper networks), and their ratio."""
    from smoothie_tf.agents import DDPGAgent, SmoothieAgent

    dimensions = dimensions or {"hopper": (11, 3), "humanoid": (376, 17)}
    figures: dict = {"batch": batch}
    for name, (observation_dim, action_dim) in dimensions.items():
        data = random_batch(batch, observation_dim, action_dim)
        low, high = -np.ones(action_dim), np.ones(action_dim)
        agents = {
            label: cls(observation_dim, low, high, seed=0, batch_size=batch)
            for label, cls in (("smoothie", SmoothieAgent), ("ddpg", DDPGAgent))
        }
        seconds = time_calls(
            {label: (lambda a=agent, b=data: a.train_step(b)) for label, agent in agents.items()},
            calls,
            repeats,
        )
        figures[name] = {
            "observation_dim": observation_dim,
            "action_dim": action_dim,
            "smoothie_updates_per_sec": round(1.0 / seconds["smoothie"], 1),
            "ddpg_updates_per_sec": round(1.0 / seconds["ddpg"], 1),
            "smoothie_over_ddpg_step_time": round(seconds["smoothie"] / seconds["ddpg"], 4),
        }
    return figures


def whole_loop_figures(env_id: str = "Hopper-v4", agent_file: str = "smoothie", steps: int = 3000) -> dict:
    """Environment steps per second of the full training loop (acting + env + replay + update)
    after `steps // 3` warm-up steps excluded from the timing, and the share of each part."""
    import dataclasses
    import pathlib
    import tempfile

    from smoothie_tf import hparams as hparams_lib
    from smoothie_tf.training import Trainer

    root = pathlib.Path(__file__).resolve().parent.parent
    hp = hparams_lib.load(root / "hparams" / f"{agent_file}.json")
    warmup = max(steps // 3, hp.batch_size)
    hp = dataclasses.replace(
        hp, total_steps=steps, warmup_steps=warmup, eval_interval=10 * steps, checkpoint_interval=10 * steps
    )
    with tempfile.TemporaryDirectory() as logdir:
        trainer = Trainer(env_id, hp, 0, logdir)
        marks = {}

        def on_progress(progress):
            if progress.step in (warmup + 200, steps - 1):  # from after the first updates compiled
                marks[progress.step] = (time.perf_counter(), dict(trainer.timings))

        trainer.on_progress = on_progress
        trainer.run()  # the final evaluation and export come after step steps - 1: not timed
    (start, start_timings), (end, end_timings) = marks[warmup + 200], marks[steps - 1]
    timed_steps = steps - 1 - warmup - 200
    parts = {k: end_timings[k] - start_timings[k] for k in end_timings}
    total = end - start
    return {
        "env": env_id,
        "hparams": agent_file,
        "timed_steps": timed_steps,
        "env_steps_per_sec": round(timed_steps / total, 1),
        "fraction": {k: round(v / total, 3) for k, v in parts.items()}
        | {"other": round(1 - sum(parts.values()) / total, 3)},
    }
