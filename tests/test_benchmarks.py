"""The benchmark's FLOP count against the matmuls XLA compiles, and its figures' shape."""

import os
import pathlib
import platform

import numpy as np
import pytest
import tensorflow as tf

from smoothie_tf import benchmarks
from smoothie_tf.agents import DDPGAgent, SmoothieAgent

SIZES = {"actor_hidden": [24, 20], "critic_state_embedding": 16, "critic_hidden": [20, 12], "batch_size": 8}


def test_compiled_dot_flops_counts_a_known_program():
    """Plain dots, a broadcast einsum and a batched matmul (a population's member-axis layers):
    a batched dot counts its batch dimension."""
    x, w = tf.ones([4, 5]), tf.ones([5, 6])
    batched = tf.ones([3, 4, 5])
    kernels = tf.ones([3, 5, 7])

    @tf.function(jit_compile=True)
    def program(x, w, batched, kernels):
        return (
            tf.matmul(tf.tanh(tf.matmul(x, w)), tf.ones([6, 2])),
            tf.einsum("bij,jk->bik", batched, w),
            tf.matmul(batched, kernels),
        )

    hlo = program.experimental_get_compiler_ir(x, w, batched, kernels)(stage="optimized_hlo")
    assert "lhs_batch_dims" in hlo  # the batched matmul stays a batched dot
    assert benchmarks.compiled_dot_flops(hlo) == 2 * (4 * 6 * 5 + 4 * 2 * 6 + 3 * 4 * 6 * 5 + 3 * 4 * 7 * 5)


@pytest.mark.parametrize(
    "cls, kl_penalty", [(SmoothieAgent, 0.0), (SmoothieAgent, 1e-3), (DDPGAgent, 0.0)], ids=str
)
@pytest.mark.parametrize("dims", [(11, 3), (7, 5)], ids=str)
def test_train_step_flops_formula_matches_what_xla_compiles(cls, kl_penalty, dims):
    """The formula counts every matmul XLA runs (after dead-code removal), to 0.1%: this covers
    two hidden layers after the action, where the jets carry G and diag H through a matmul."""
    observation_dim, action_dim = dims
    agent = cls(
        observation_dim, -np.ones(action_dim), np.ones(action_dim), seed=0, kl_penalty=kl_penalty, **SIZES
    )
    data = benchmarks.random_batch(SIZES["batch_size"], observation_dim, action_dim)
    assert data.observations.shape == (1, SIZES["batch_size"], observation_dim)  # one run's [1, B, S]
    compiled = benchmarks.compiled_dot_flops(
        agent.population_train_step.experimental_get_compiler_ir(data)(stage="optimized_hlo")
    )
    name = "smoothie" if cls is SmoothieAgent else "ddpg"
    formula = benchmarks.train_step_flops(
        name,
        observation_dim,
        action_dim,
        SIZES["batch_size"],
        tuple(SIZES["actor_hidden"]),
        SIZES["critic_state_embedding"],
        tuple(SIZES["critic_hidden"]),
        kl=kl_penalty > 0,
    )
    assert formula + benchmarks.member_sum_flops(agent) == pytest.approx(compiled, rel=1e-3)


def test_paper_networks_on_hopper_cost_about_290_mflop_per_step():
    assert benchmarks.train_step_flops("smoothie", 11, 3) / 1e6 == pytest.approx(287.2, abs=0.1)
    assert benchmarks.train_step_flops("ddpg", 11, 3) / 1e6 == pytest.approx(317.7, abs=0.1)


def test_train_step_figures_report_rates_and_the_fraction_of_the_matmul_rate():
    figures = benchmarks.train_step_figures(
        {"hopper": (11, 3)}, calls=2, repeats=1, matmul_flops_per_sec=1e11
    )
    hopper = figures["hopper"]
    for label in ("smoothie", "ddpg"):
        seconds = hopper[f"{label}_step_ms"] / 1e3
        assert hopper[f"{label}_updates_per_sec"] == pytest.approx(1 / seconds, rel=0.01)
        assert hopper[f"{label}_step_mflop"] == pytest.approx(hopper[f"{label}_compiled_mflop"], rel=1e-3)
        rate = hopper[f"{label}_step_mflop"] * 1e6 / seconds
        assert hopper[f"{label}_fraction_of_matmul_rate"] == pytest.approx(rate / 1e11, rel=0.01)


def test_train_step_profile_names_every_part_and_extrapolates_the_fixed_cost():
    profile = benchmarks.train_step_profile(batch=16, calls=2, repeats=1)
    parts = ("dispatch", "bellman_targets", "critic_update", "policy_update", "target_update", "step")
    for name in (*parts, "step_batch_1", "step_batch_64"):
        assert profile[f"{name}_ms"] > 0, name
    extra = (profile["step_batch_64_ms"] - profile["step_ms"]) / 1e3
    flops = benchmarks.train_step_flops("smoothie", 11, 3, 64) - benchmarks.train_step_flops(
        "smoothie", 11, 3, 16
    )
    assert profile["marginal_gflop_per_sec"] == pytest.approx(flops / extra / 1e9, rel=0.01, abs=0.1)
    assert profile["fixed_ms"] == pytest.approx(profile["step_ms"] - 1e3 * extra / 3, abs=2e-3)
    assert (
        profile["parameters"]
        == 2 * (11 * 400 + 400) + 400 * 300 + 300 + 300 * 3 + 3 + 3 + 403 * 300 + 300 + 301
    )


@pytest.mark.parametrize("cls", [SmoothieAgent, DDPGAgent], ids=["smoothie", "ddpg"])
def test_a_population_compiles_its_networks_matmuls_per_member_and_the_sums_matmuls(cls):
    """The actor's 64 × 64 kernel and the critic's (64 + 3) × 48 one (state embedding and action
    in) are summed as matmuls (`member_sums`): with two members, XLA runs twice one run's network
    FLOPs plus `member_sum_flops`, to 0.01%."""
    sizes = {"actor_hidden": [64, 64], "critic_state_embedding": 64, "critic_hidden": [48], "batch_size": 8}
    agent = cls(11, -np.ones(3), np.ones(3), seeds=[0, 1], hparams=[sizes, sizes])
    data = benchmarks.random_batch(sizes["batch_size"], 11, 3, members=2)
    compiled = benchmarks.compiled_dot_flops(
        agent.population_train_step.experimental_get_compiler_ir(data)(stage="optimized_hlo")
    )
    name = "smoothie" if cls is SmoothieAgent else "ddpg"
    networks = benchmarks.train_step_flops(name, 11, 3, 8, (64, 64), 64, (48,))
    sums = benchmarks.member_sum_flops(agent)
    # 4096 and 3216 entries per member take the matmul (the others are under 2048), each summed
    # twice (a norm, the finite check), 2 FLOPs per entry, 2 members.
    assert sums == 2 * 2 * 2 * (64 * 64 + 67 * 48)
    assert 2 * networks + sums == pytest.approx(compiled, rel=1e-4)


def test_machine_names_the_cpu_the_figures_were_measured_on(monkeypatch):
    figures = benchmarks.machine()
    assert figures["tensorflow"] == tf.__version__
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1})  # the CPUs this process may use
    assert benchmarks.machine()["cpus"] == 1
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    assert figures["cpu"] == (names[0] if names else platform.processor())
