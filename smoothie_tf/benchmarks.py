"""Timing of the pieces whose speed the project promises (docs/design.md section 8).

Each figure is the median, over `repeats` rounds, of the mean time of one call within a round
of `calls` calls; every function is compiled the same way (tf.function, XLA).
"""

from __future__ import annotations

import os
import pathlib
import platform
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from smoothie_tf.networks import SmoothedCritic


def machine() -> dict:
    """What the figures were measured on: the CPU's model name (Linux's /proc/cpuinfo, else
    `platform.processor()`), the CPUs this process may use, and TensorFlow's version."""
    model = platform.processor()
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
                break
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cpus": cpus, "tensorflow": tf.__version__}


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


# --- the FLOP count of a train step -------------------------------------------------------------


def train_step_flops(
    agent: str,
    observation_dim: int,
    action_dim: int,
    batch: int = 128,
    actor_hidden: tuple[int, ...] = (400, 300),
    critic_state_embedding: int = 400,
    critic_hidden: tuple[int, ...] = (300,),
    kl: bool = False,
) -> int:
    """Matmul FLOPs of one train step, from the layer sizes. Biases, activations, Adam, the
    Polyak update and outer products (the input gradient of a 1-unit layer) are O(parameters)
    or O(B·n) and left out.

    F(layers) = Σ 2·B·n_in·n_out. A backward pass costs F(layers) for the weights and
    F(inputs) for the input gradients, over the layers past the first (whose input is data)
    with more than one unit. Actor: S → hidden → d; critic: S → e, then [e + d] → hidden → 1.
      Bellman targets:   F(actor) + F(critic)                    [target networks on s']
      critic update:     F(critic) + F(critic) + F(inputs of critic)
      Smoothie policy:   F(actor) + F(actor) + F(inputs of actor) + jets (+ F(actor) of the
                         target policy when the KL term is computed), where the jets cost
                         F(critic) for the values, nothing for the first layer past the action
                         (its G is a slice of the kernel), 2·B·d·n_in·n_out per later hidden
                         layer for G and as much for diag H, except the last, whose H is
                         contracted with the head first (2·B·n_in·n_out); and a head on a
                         shared G (one hidden layer past the action) takes 2·2·B·n·d for g, diag H
      DDPG policy:       F(actor) + F(critic) + F(inputs of the critic past the embedding)
                         + F(actor) + F(inputs of actor)   [Q(s, μθ(s)); backward to a; actor]
    """
    s, d, b = observation_dim, action_dim, batch
    widths = [s, *actor_hidden, d]
    actor = list(zip(widths[:-1], widths[1:], strict=True))
    after_action = [critic_state_embedding + d, *critic_hidden, 1]
    critic = [(s, critic_state_embedding), *zip(after_action[:-1], after_action[1:], strict=True)]

    def flops(layers):
        return sum(2 * b * n_in * n_out for n_in, n_out in layers)

    def input_gradients(layers):
        return flops([(n_in, n_out) for n_in, n_out in layers[1:] if n_out > 1])

    total = flops(actor) + flops(critic)  # Bellman targets
    total += 2 * flops(critic) + input_gradients(critic)  # critic update
    if agent == "smoothie":
        hidden_after_action = critic[1:-1]
        jets = flops(critic)
        for i, (n_in, n_out) in enumerate(hidden_after_action[1:], start=1):
            last = i == len(hidden_after_action) - 1
            jets += 2 * b * d * n_in * n_out + (2 * b * n_in * n_out if last else 2 * b * d * n_in * n_out)
        if len(hidden_after_action) == 1:
            jets += 2 * 2 * b * hidden_after_action[0][1] * d
        total += 2 * flops(actor) + input_gradients(actor) + jets + (flops(actor) if kl else 0)
    elif agent == "ddpg":
        total += flops(actor) + flops(critic) + flops([layer for layer in critic[1:] if layer[1] > 1])
        total += flops(actor) + input_gradients(actor)
    else:
        raise ValueError(f"agent must be 'smoothie' or 'ddpg', got {agent!r}")
    return total


def member_sum_flops(agent) -> int:
    """FLOPs of the matmuls that take a train step's per-member sums (`optimizers.member_sums`):
    each policy and critic variable is summed twice per step, its gradient's squares for a norm
    (the critic's clip, the actor's norm metric) and its finite entries for the weights check,
    each as a [P·size/c, c] × [c, 1] matmul (2·P·size FLOPs) when `sum_chunk` gives it a row
    length c (the count falls back to a reduction from EXACT_COUNT_LIMIT entries on)."""
    from smoothie_tf.optimizers import EXACT_COUNT_LIMIT, sum_chunk

    total = 0
    for variable in (*agent.policy.variables, *agent.critic.variables):
        size = variable.shape[1:].num_elements()
        if sum_chunk(size) is not None:
            total += 2 * agent.members * size * (2 if size < EXACT_COUNT_LIMIT else 1)
    return total


def compiled_dot_flops(hlo: str) -> int:
    """Σ 2·|output|·|contracted dims| over the dot instructions of an optimised HLO module
    (the matmuls XLA actually runs, after dead code is removed); the output of a batched dot
    (`lhs_batch_dims`, e.g. a population's member axis) counts its batch dimensions."""
    import re

    shapes = {}
    for name, dims in re.findall(r"%([\w.\-]+) = \w+\[([\d,]*)\]", hlo):
        shapes[name] = [int(x) for x in dims.split(",") if x]
    total = 0
    batch_dims = r"(?:lhs_batch_dims=\{[\d,]*\}, )?"
    pattern = (
        r"= \w+\[([\d,]*)\]\S* dot\(%([\w.\-]+), %[\w.\-]+\), "
        + batch_dims
        + r"lhs_contracting_dims=\{([\d,]*)\}"
    )
    for out_dims, lhs, contracting in re.findall(pattern, hlo):
        output = int(np.prod([int(x) for x in out_dims.split(",") if x]))
        contracted = int(np.prod([shapes[lhs][int(i)] for i in contracting.split(",") if i]))
        total += 2 * output * contracted
    return total


def matmul_rate(n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of large square matmuls on this machine (XLA, in a loop inside one call so that
    dispatch does not count): the yardstick for the train step's FLOP rate."""
    inner = 8
    a = tf.random.stateless_normal([n, n], seed=[1, 2])
    b = tf.random.stateless_normal([n, n], seed=[3, 4]) / n

    @tf.function(jit_compile=True)
    def chain(x):
        for _ in range(inner):
            x = tf.matmul(x, b)
        return x

    seconds = time_calls({"matmul": lambda: chain(a)}, calls=1, repeats=repeats)["matmul"]
    return inner * 2 * n**3 / seconds


def random_batch(batch: int, observation_dim: int, action_dim: int, seed: int = 0, members: int = 1):
    """A replay-shaped batch of random transitions for a population of `members`: [P, B, ...]
    (what `population_train_step` takes; P = 1 is one run)."""
    from smoothie_tf.replay import Batch

    rng = np.random.default_rng(seed)
    p, b = members, batch
    return Batch(
        observations=tf.constant(rng.normal(size=(p, b, observation_dim)), tf.float32),
        actions=tf.constant(rng.uniform(-1, 1, size=(p, b, action_dim)), tf.float32),
        rewards=tf.constant(rng.normal(size=(p, b)), tf.float32),
        next_observations=tf.constant(rng.normal(size=(p, b, observation_dim)), tf.float32),
        terminated=tf.constant(rng.uniform(size=(p, b)) < 0.05, tf.float32),
    )


def train_step_figures(
    dimensions: dict[str, tuple[int, int]] | None = None,
    batch: int = 128,
    calls: int = 50,
    repeats: int = 7,
    matmul_flops_per_sec: float | None = None,
) -> dict:
    """Updates per second of the Smoothie and DDPG train steps (paper networks, one run: the
    compiled step of a population of one on a [1, B, ...] batch, called as training calls it,
    `train_step`), their ratio, their FLOP count (`train_step_flops` + `member_sum_flops`,
    checked against the matmuls XLA compiled) and the FLOP rate achieved as a fraction of
    `matmul_flops_per_sec` (a large matmul's rate)."""
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
        entry = {"observation_dim": observation_dim, "action_dim": action_dim}
        for label, agent in agents.items():
            flops = train_step_flops(
                label,
                observation_dim,
                action_dim,
                batch,
                kl=agent.computes_kl if label == "smoothie" else False,
            )
            flops += member_sum_flops(agent)
            compiled = compiled_dot_flops(
                agent.population_train_step.experimental_get_compiler_ir(data)(stage="optimized_hlo")
            )
            entry[f"{label}_updates_per_sec"] = round(1.0 / seconds[label], 1)
            entry[f"{label}_step_ms"] = round(1e3 * seconds[label], 3)
            entry[f"{label}_step_mflop"] = round(flops / 1e6, 2)  # the networks' and the sums' matmuls
            entry[f"{label}_compiled_mflop"] = round(compiled / 1e6, 2)
            entry[f"{label}_gflop_per_sec"] = round(flops / seconds[label] / 1e9, 2)
            if matmul_flops_per_sec:
                entry[f"{label}_fraction_of_matmul_rate"] = round(
                    flops / seconds[label] / matmul_flops_per_sec, 3
                )
        entry["smoothie_over_ddpg_step_time"] = round(seconds["smoothie"] / seconds["ddpg"], 4)
        figures[name] = entry
    return figures


def train_step_profile(
    observation_dim: int = 11, action_dim: int = 3, batch: int = 128, calls: int = 50, repeats: int = 7
) -> dict:
    """Where a Smoothie train step's time goes: each part compiled and timed on its own (ms).

    `dispatch` is an empty compiled call (through tf.function, as the parts are called); the
    three steps are called as training calls them (`train_step`). `step_batch_1` is the whole
    step on one transition, which leaves the per-parameter work (gradients' outer products,
    clipping, Adam, Polyak) and the per-operation costs without the batch's matmuls;
    `step_batch_<4B>` the step on four times the batch, from which `marginal_gflop_per_sec`, the
    rate at which the extra examples' FLOPs run, and `fixed_ms`, the step's time extrapolated to
    an empty batch, follow. Every part runs on one run's data, [1, B, ...] (a population of one)."""
    from smoothie_tf.agents import SmoothieAgent

    low, high = -np.ones(action_dim), np.ones(action_dim)
    agent = SmoothieAgent(observation_dim, low, high, seed=0, batch_size=batch)
    single = SmoothieAgent(observation_dim, low, high, seed=0, batch_size=1)
    large = SmoothieAgent(observation_dim, low, high, seed=0, batch_size=4 * batch)
    data, one = random_batch(batch, observation_dim, action_dim), random_batch(1, observation_dim, action_dim)
    quadruple = random_batch(4 * batch, observation_dim, action_dim)

    def compiled(fn):
        return tf.function(fn, jit_compile=True)

    parts = {
        "dispatch": compiled(lambda: tf.constant(0.0)),
        "bellman_targets": compiled(lambda: agent.bellman_targets(data)),
        "critic_update": compiled(
            lambda: agent.critic_update(data.observations, agent.critic_actions(data), data.rewards)[
                "loss/critic"
            ]
        ),
        "policy_update": compiled(lambda: agent.policy_update(data.observations)["loss/policy"]),
        "target_update": compiled(lambda: (agent.update_targets(), tf.constant(0.0))[1]),
        "step": lambda: agent.train_step(data)["loss/critic"],
        "step_batch_1": lambda: single.train_step(one)["loss/critic"],
        f"step_batch_{4 * batch}": lambda: large.train_step(quadruple)["loss/critic"],
    }
    seconds = time_calls(parts, calls, repeats)
    figures = {f"{name}_ms": round(1e3 * value, 3) for name, value in seconds.items()}
    extra_seconds = seconds[f"step_batch_{4 * batch}"] - seconds["step"]
    extra_flops = train_step_flops("smoothie", observation_dim, action_dim, 4 * batch) - train_step_flops(
        "smoothie", observation_dim, action_dim, batch
    )
    figures["marginal_gflop_per_sec"] = round(extra_flops / extra_seconds / 1e9, 1)
    figures["fixed_ms"] = round(1e3 * (seconds["step"] - extra_seconds / 3), 3)
    parameters = sum(int(np.prod(v.shape)) for v in agent.critic.variables + agent.policy.variables)
    figures["parameters"] = parameters
    return figures


def whole_loop_figures(env_id: str = "Hopper-v4", agent_file: str = "smoothie", steps: int = 3000) -> dict:
    """Environment steps per second of the full training loop (acting + env + replay + update)
    after `steps // 3` warm-up steps excluded from the timing, and the share of each part: one
    run, a population of one (`population_speed.loop_figures`)."""
    from smoothie_tf.population_speed import loop_figures

    figures = loop_figures(env_id, agent_file, 1, steps)
    return {key: figures[key] for key in ("env", "hparams", "timed_steps", "env_steps_per_sec", "fraction")}
