"""Populations (docs/design.md section 9): P runs in one compiled step, member by member the same as each
run alone. The agents' updates and exploring actions against populations of one, the populations
that are refused, the trainer's member runs and their run directories, a member that diverges
while the others go on, and `bin/train --seeds`: bad input, signals, kill -9 and exact resume."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from small_runs import ROOT, bandit_hparams, hopper_hparams
from test_training import run_train, train_command, tree_snapshot

from smoothie_tf import evaluation, plotting, training
from smoothie_tf import hparams as hparams_lib
from smoothie_tf.agents import DDPGAgent, SmoothieAgent, make_population
from smoothie_tf.agents.config import SHAPE_KEYS
from smoothie_tf.checkpoints import PREFIX, CheckpointDirectory
from smoothie_tf.replay import Batch

# Why a tolerance: XLA compiles the step of P members into another program than the step of one
# (other fusions, tilings, reduction orders and its own tanh), and the plain TensorFlow graph that
# the agent tests below use for the single runs is another again, so one member's numbers differ
# in their last float32 bits (~6e-8 relative) from op to op; Adam's lr·m̂/(√v̂ + ε), which
# normalises small moments, magnifies the relative error of those. Measured, as a fraction of each
# state tensor's largest |entry|: at most 2e-5 after the 12 agent steps below (Adam's m of φ,
# Smoothie; actions within 1.2e-7) and 4e-6 after the 150-step runs below (population and runs
# alone all XLA-compiled; evaluation returns equal). Members that shared anything (a norm, a
# learning rate, a stream) would differ at O(1): their seeds, data and hparams differ by factors
# of 2 to 10.
STATE_TOLERANCE = 2e-4  # of the largest |entry| of each state tensor
ACTION_TOLERANCE = 1e-5  # actions are O(1): absolute
RETURN_TOLERANCE = 1e-5  # evaluation returns are O(1) on the bandit: absolute


def assert_same_state(actual: dict, expected: dict, what: str) -> None:
    """Two member states (name -> array) hold the same names, the same integers (step counters,
    stream keys and counters) and the same floats to STATE_TOLERANCE of each tensor's scale."""
    assert sorted(actual) == sorted(expected), what
    for name, value in expected.items():
        got = actual[name]
        assert got.shape == value.shape and got.dtype == value.dtype, (what, name)
        if np.issubdtype(value.dtype, np.floating):
            assert np.isfinite(value).all() and np.isfinite(got).all(), (what, name)
            scale = max(float(np.abs(value).max()), 1e-30)
            np.testing.assert_allclose(
                got, value, rtol=0, atol=STATE_TOLERANCE * scale, err_msg=f"{what} {name}"
            )
        else:
            np.testing.assert_array_equal(got, value, err_msg=f"{what} {name}")


# --- 1. the agents: member k of a population updates as a population of one ------------------

S, D = 3, 2
LOW, HIGH = np.array([-1.0, -2.0]), np.array([2.0, 1.0])
SHAPES = {"actor_hidden": [16], "critic_state_embedding": 8, "critic_hidden": [16], "batch_size": 16}
SEEDS = [5, 0, 12]
# Every value a member may have on its own, 0 beside > 0 where 0 switches a term off (KL, φ's own
# Adam, each derivative Bellman loss). Member 0's clip of 0.3 binds (checked below); member 1's
# Bellman errors (rewards of scale 3·3) lie in its Huber's linear part (δ = 0.3), member 2's
# (3·0.5) mostly in its quadratic part (δ = 5). OU damping 1 leaves no memory for a reset to erase;
# 0.15 leaves much.
DIFFERING = [
    {
        "actor_lr": 1e-3,
        "critic_lr": 1e-3,
        "reward_scale": 1.0,
        "discount": 0.99,
        "target_lag": 0.01,
        "grad_clip": 0.3,
        "huber_delta": 1.0,
        "kl_penalty": 0.0,
        "log_variance_lr": 0.0,
        "initial_log_variance": -1.0,
        "ou_damping": 0.15,
        "ou_stddev": 0.2,
        "derivative_bellman_k1": 0.0,
        "derivative_bellman_k2": 0.0,
    },
    {
        "actor_lr": 3e-3,
        "critic_lr": 2e-3,
        "reward_scale": 3.0,
        "discount": 0.9,
        "target_lag": 0.05,
        "grad_clip": 10.0,
        "huber_delta": 0.3,
        "kl_penalty": 0.5,
        "log_variance_lr": 1e-2,
        "initial_log_variance": -0.5,
        "ou_damping": 0.5,
        "ou_stddev": 0.05,
        "derivative_bellman_k1": 0.1,
        "derivative_bellman_k2": 0.0,
        "derivative_bellman_baseline": True,
    },
    {
        "actor_lr": 5e-4,
        "critic_lr": 5e-3,
        "reward_scale": 0.5,
        "discount": 0.95,
        "target_lag": 0.2,
        "grad_clip": 1.0,
        "huber_delta": 5.0,
        "kl_penalty": 0.0,
        "log_variance_lr": 0.0,
        "initial_log_variance": -2.0,
        "ou_damping": 1.0,
        "ou_stddev": 0.6,
        "derivative_bellman_k1": 0.0,
        "derivative_bellman_k2": 0.05,
    },
]
AGENTS = {"smoothie": SmoothieAgent, "ddpg": DDPGAgent}
STEPS = 12
# Episodes of members 0 and 1 end there. Not a palindrome, so a reversed member order shows: it
# would reset member 2 (OU damping 1: no memory, a reset changes nothing) instead of member 0
# (damping 0.15: its reset shows).
RESET_AT, RESET_MASK = 5, np.array([True, True, False])


def member_batches(member: int) -> list[Batch]:
    """Member `member`'s own stream of batches [B, ...]: rewards of scale 3 so that reward_scale,
    δ and the clip all matter."""
    rng = np.random.default_rng(100 + member)
    b = SHAPES["batch_size"]
    return [
        Batch(
            observations=rng.normal(size=(b, S)).astype(np.float32),
            actions=rng.uniform(LOW, HIGH, size=(b, D)).astype(np.float32),
            rewards=(3.0 * rng.normal(size=b)).astype(np.float32),
            next_observations=rng.normal(size=(b, S)).astype(np.float32),
            terminated=(rng.uniform(size=b) < 0.2).astype(np.float32),
        )
        for _ in range(STEPS)
    ]


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_each_member_updates_and_acts_as_a_population_of_one(agent, monkeypatch):
    """The compiled step (with the exploring actions it draws, as the training loop calls it) of
    a population of 3, seeds and every per-member hparam different, against three single runs fed
    the same batches and observations: the exploring actions and metrics of every step, and at
    the end every state variable (networks, targets, Adam slots and counters, random streams, OU
    state). The population's step is XLA-compiled as shipped; the single runs, the reference, run
    the same step as a plain TensorFlow graph (and cost half the compile time)."""
    cls = AGENTS[agent]
    population = cls(S, LOW, HIGH, seeds=SEEDS, hparams=DIFFERING, **SHAPES)
    with monkeypatch.context() as patch:
        patch.setattr(cls, "jit_compile", False)
        singles = [
            cls(S, LOW, HIGH, seed=seed, **SHAPES, **hp) for seed, hp in zip(SEEDS, DIFFERING, strict=True)
        ]
    batches = [member_batches(k) for k in range(3)]
    rng = np.random.default_rng(7)
    clip_bound = False
    for i in range(STEPS):
        stacked = Batch(*(np.stack(field) for field in zip(*(b[i] for b in batches), strict=True)))
        observations = rng.normal(size=(3, S)).astype(np.float32)
        metrics, actions = population.train_step_and_act(stacked, observations)
        assert actions.shape == (3, D)
        for k, single in enumerate(singles):
            alone, action = single.train_step_and_act(
                Batch(*(x[None] for x in batches[k][i])), observations[k : k + 1]
            )
            np.testing.assert_allclose(
                actions[k], action[0], rtol=0, atol=ACTION_TOLERANCE, err_msg=f"{i} {k}"
            )
            for key in sorted(set(alone) & set(metrics)):
                got, want = metrics[key].numpy()[k], alone[key].numpy()[0]
                if want.dtype == bool:
                    assert got == want, key
                else:  # sums that may cancel (the surrogate's value): relative, and absolute
                    np.testing.assert_allclose(got, want, rtol=STATE_TOLERANCE, atol=1e-6, err_msg=key)
        clip_bound |= bool(metrics["grad_norm/critic"][0] > DIFFERING[0]["grad_clip"])
        if i == RESET_AT:
            population.reset_noise(RESET_MASK)
            for single, ended in zip(singles, RESET_MASK, strict=True):
                if ended:
                    single.reset_noise()
    assert clip_bound, "member 0's clip never bound: the test would not see a shared clip norm"
    for k, single in enumerate(singles):
        assert_same_state(population.member_state(k), single.member_state(0), f"member {k}")
    # Not vacuous: the members learned different things.
    kernels = [population.member_state(k)["critic/q/kernel"] for k in range(3)]
    assert min(np.abs(kernels[0] - kernels[j]).max() for j in (1, 2)) > 1e-2


# --- 2. populations that are refused ------------------------------------------------------------

OTHER_VALUE = {
    "actor_hidden": [16, 16],
    "critic_state_embedding": 4,
    "critic_hidden": [8],
    "critic_activation": "relu",
    "batch_size": 8,
    "derivative_bellman_diagonal": True,
}


@pytest.mark.parametrize("key", SHAPE_KEYS)
def test_members_that_differ_in_a_shape_giving_key_are_refused(key):
    # Smoothie refuses a relu critic of its own accord; DDPG takes one, so it shows the refusal.
    cls = DDPGAgent if key == "critic_activation" else SmoothieAgent
    with pytest.raises(ValueError, match=rf"the members differ in {key} \("):
        cls(S, LOW, HIGH, seeds=[0, 1, 2], hparams=[{}, {}, {key: OTHER_VALUE[key]}], **SHAPES)
    # The trainer's way in: hparams records.
    hps = [bandit_hparams(), bandit_hparams(**{key: OTHER_VALUE[key]})]
    if key == "critic_activation":
        hps = [dataclasses.replace(hp, agent="ddpg") for hp in hps]
    space = types.SimpleNamespace(low=np.array([-2.0]), high=np.array([2.0]))
    with pytest.raises(ValueError, match=rf"the members differ in {key} \("):
        make_population(hps, 1, space, [0, 1])


def test_a_population_mixing_agents_is_refused():
    space = types.SimpleNamespace(low=np.array([-2.0]), high=np.array([2.0]))
    hps = [bandit_hparams("smoothie"), bandit_hparams("ddpg"), bandit_hparams("smoothie")]
    with pytest.raises(ValueError, match=r"the members differ in agent \(ddpg, smoothie\)"):
        make_population(hps, 1, space, [0, 1, 2])


@pytest.mark.parametrize(
    "key, value",
    [
        ("agent", "ddpg"),
        ("total_steps", 300),
        ("warmup_steps", 5),
        ("eval_interval", 60),
        ("eval_episodes", 3),
        ("checkpoint_interval", 70),
        ("updates_per_step", 2),
    ],
)
def test_a_population_trainer_needs_one_loop(tmp_path, key, value):
    assert key in training.LOOP_KEYS
    hps = [bandit_hparams(), bandit_hparams(**{key: value})]
    with pytest.raises(training.RunConfigError, match=rf"the members differ in {key} \("):
        training.PopulationTrainer("SmoothieBandit-v0", hps, [0, 1], [tmp_path / "a", tmp_path / "b"])
    assert list(tmp_path.iterdir()) == []


# --- 3. the trainer: each member's run is the run alone, in an ordinary run directory ----------

ENV = "SmoothieBandit-v0"
# Seeds 0 and 1 with different actor rates; a checkpoint every 10 steps puts one (step 10) before
# the first update (step 16, when the replay holds a batch). 150 steps: the drift of the
# population's XLA program from the single run's grows slowly with the length of the run (see
# STATE_TOLERANCE), and 150 steps cover three evaluations.
MEMBER_HPARAMS = [
    bandit_hparams(actor_lr=1e-3, total_steps=150, checkpoint_interval=10),
    bandit_hparams(actor_lr=3e-4, total_steps=150, checkpoint_interval=10),
]
EVAL_STEPS = [50, 100, 150]


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> list[pathlib.Path]:
    """The run directories of seeds 0 and 1 trained each alone (Trainer)."""
    root = tmp_path_factory.mktemp("alone")
    for seed, hp in enumerate(MEMBER_HPARAMS):
        training.Trainer(ENV, hp, seed, root / f"seed{seed}").run()
    return [root / f"seed{seed}" for seed in range(2)]


def final_model(logdir: pathlib.Path) -> dict[str, np.ndarray]:
    return CheckpointDirectory.read_model(CheckpointDirectory(logdir / "checkpoints").latest())


def checkpoint_steps(logdir: pathlib.Path) -> list[int]:
    return [int(p.name[len(PREFIX) :]) for p in CheckpointDirectory(logdir / "checkpoints").all()]


def assert_same_run(member: pathlib.Path, alone: pathlib.Path) -> None:
    """A member's run and the same run alone: final state and evaluation returns."""
    assert_same_state(final_model(member), final_model(alone), str(member))
    member_steps, member_returns = plotting.eval_returns(member)
    alone_steps, alone_returns = plotting.eval_returns(alone)
    assert list(member_steps) == list(alone_steps) == EVAL_STEPS
    np.testing.assert_allclose(member_returns, alone_returns, rtol=0, atol=RETURN_TOLERANCE)


def without_versions(logdir: pathlib.Path) -> dict:
    record = json.loads((logdir / "hparams.json").read_text())
    assert "versions" in record
    del record["versions"]
    return record


def test_population_trainer_runs_each_member_as_alone_into_ordinary_run_directories(tmp_path, alone):
    logdirs = [tmp_path / "seed0", tmp_path / "seed1"]
    trainer = training.PopulationTrainer(ENV, MEMBER_HPARAMS, [0, 1], logdirs)
    result = trainer.run()
    assert result["step"] == 150 and result["diverged"] == []
    assert plotting.find_runs([tmp_path]) == logdirs
    for k, (logdir, reference) in enumerate(zip(logdirs, alone, strict=True)):
        assert_same_run(logdir, reference)
        # The checkpoint on disk is the member's slice of the population's state.
        for name, value in trainer.agent.member_state(k).items():
            np.testing.assert_array_equal(final_model(logdir)[name], value)
        assert checkpoint_steps(logdir) == checkpoint_steps(reference) == [130, 140, 150]
        assert (
            CheckpointDirectory.read_state(CheckpointDirectory(logdir / "checkpoints").latest())["step"]
            == 150
        )
        record = without_versions(logdir)
        assert record == without_versions(reference)
        assert record["seed"] == k and record["env"] == ENV
        assert record["hparams"] == json.loads(json.dumps(dataclasses.asdict(MEMBER_HPARAMS[k])))
        assert evaluation.read_run(logdir)[:3] == (ENV, MEMBER_HPARAMS[k], k)
        act, env_id, step, env_kwargs = evaluation.saved_model_actor(logdir / "policy")
        assert (env_id, step, env_kwargs) == (ENV, 150, {})
        act_alone = evaluation.saved_model_actor(reference / "policy")[0]
        for observation in (np.ones(1), np.array([-0.7])):
            np.testing.assert_allclose(
                act(observation), act_alone(observation), rtol=0, atol=ACTION_TOLERANCE
            )
        run = plotting.load_run(logdir)
        assert run.seed == k and list(run.steps) == EVAL_STEPS
    # bin/eval reads a member's directory as any run's: the bandit's observation is always 1, so
    # its mean-action return is the last evaluation's.
    result = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "eval"), f"--logdir={logdirs[1]}", "--episodes=2"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["step"] == 150 and summary["episodes"] == 2
    last_eval = plotting.eval_returns(logdirs[1])[1][-1]
    assert summary["mean_return"] == pytest.approx(last_eval, abs=RETURN_TOLERANCE)


# --- 4. a member that diverges stops alone -------------------------------------------------------

# reward_scale 1e39 is a valid hparam (> 0) that float32 holds as inf, so the member's Bellman
# targets c·r are ±inf (the bandit's rewards are > 0) and its critic loss is inf at its first
# update, step 16: the step is forced by the hparam alone, with no chance involved, while the
# population's other members share the compiled step (and would catch any inf that leaked).
DIVERGING = {"reward_scale": 1e39}
FIRST_UPDATE = 16


def assert_diverged_at_the_first_update(logdir: pathlib.Path) -> None:
    record = json.loads((logdir / training.DIVERGED).read_text())
    assert record["step"] == FIRST_UPDATE
    assert record["reason"].startswith(f"non-finite loss at step {FIRST_UPDATE} (critic inf")
    assert checkpoint_steps(logdir) == [0, 10]  # the last good one (10) is kept, none after
    for path in CheckpointDirectory(logdir / "checkpoints").all():
        assert all(
            np.isfinite(v).all() for v in CheckpointDirectory.read_model(path).values() if v.dtype.kind == "f"
        )
    assert not (logdir / "policy").exists()


def test_a_diverging_member_stops_while_the_other_trains_as_alone(tmp_path, alone):
    logdirs = [tmp_path / "seed0", tmp_path / "seed1"]
    hps = [MEMBER_HPARAMS[0], dataclasses.replace(MEMBER_HPARAMS[1], **DIVERGING)]
    log: list[str] = []
    result = training.PopulationTrainer(ENV, hps, [0, 1], logdirs, on_log=log.append).run()
    assert result["step"] == 150 and result["diverged"] == ["seed1"]
    assert_diverged_at_the_first_update(logdirs[1])
    about_it = [line for line in log if "seed1" in line]
    assert len(about_it) == 1, log
    assert about_it[0].startswith(f"seed1: non-finite loss at step {FIRST_UPDATE} (critic inf")
    assert about_it[0].endswith("its last good checkpoint is kept (ckpt-0000000010), the others go on")
    assert len(plotting.eval_returns(logdirs[1])[0]) == 0  # its first evaluation (50) never came
    assert_same_run(logdirs[0], alone[0])
    assert (logdirs[0] / "policy").is_dir() and not (logdirs[0] / training.DIVERGED).exists()


BANDIT_ARGS = [
    "--env=SmoothieBandit-v0",
    f"--hparams={ROOT / 'hparams' / 'bandit_ddpg.json'}",
    "--hparam=actor_hidden=[16]",
    "--hparam=critic_hidden=[16]",
    "--hparam=critic_state_embedding=8",
    "--hparam=batch_size=16",
    "--hparam=replay_capacity=1000",
]


def test_train_seeds_exits_1_naming_the_member_that_diverged(tmp_path):
    """bin/train gives every member the same hparams, so this runs bin/train itself in a process
    whose `training.make_population` (looked up by the trainer when it builds the agent) gives
    seed 1 DIVERGING; the run directories still record the hparams of the command line."""
    script = tmp_path / "train_with_seed1_diverging.py"
    script.write_text(
        f"""import dataclasses, runpy, sys
sys.path.insert(0, {str(ROOT)!r})
from smoothie_tf.startup import import_tensorflow_quietly
import_tensorflow_quietly()
from smoothie_tf import training
population = training.make_population
def make_population(hps, observation_dim, action_space, seeds):
    hps = [dataclasses.replace(hp, **{DIVERGING!r}) if s == 1 else hp for hp, s in zip(hps, seeds)]
    return population(hps, observation_dim, action_space, seeds)
training.make_population = make_population
sys.argv[0] = {str(ROOT / "bin" / "train")!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""
    )
    args = [
        *BANDIT_ARGS,
        "--hparam=total_steps=40",
        "--hparam=eval_interval=20",
        "--hparam=checkpoint_interval=10",
    ]
    result = subprocess.run(
        [sys.executable, str(script), *args, "--seeds=0,1", f"--logdir={tmp_path / 'pop'}"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["bin/train: error: seed1 stopped: non-finite update (see diverged.json in each)"], (
        result.stderr
    )
    logged = [line for line in result.stdout.splitlines() if "non-finite" in line]
    assert len(logged) == 1 and logged[0].startswith(f"seed1: non-finite loss at step {FIRST_UPDATE}"), (
        result.stdout
    )
    assert_diverged_at_the_first_update(tmp_path / "pop" / "seed1")
    assert (
        json.loads((tmp_path / "pop" / "seed1" / "hparams.json").read_text())["hparams"]["reward_scale"]
        == 1.0
    )
    assert (
        checkpoint_steps(tmp_path / "pop" / "seed0")[-1] == 40
        and (tmp_path / "pop" / "seed0" / "policy").is_dir()
    )


# --- 5. bin/train --seeds: bad input, and a list of ranges ---------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds=a"], "--seeds='a': 'a' is not a seed (N) or a range (N-M)"),
        (["--seeds=1-"], "'1-' is not a seed"),
        (["--seeds=3-1"], "the range 3-1 is empty"),
        (["--seeds="], "'' is not a seed"),
        (["--seeds=-1"], "'-1' is not a seed"),
        (["--seeds=0,0"], "names seed 0 twice"),
        (["--seeds=0-2,1"], "names seed 1 twice"),
        (["--seed=0", "--seeds=0,1"], "give --seed (one run) or --seeds (a population), not both"),
        (["--seed=0", "--processes=2"], "--processes splits a population: give --seeds too"),
        (["--processes=2"], "--processes splits a population: give --seeds too"),
        (["--seeds=0,1", "--processes=3"], "--processes=3 is more than the 2 seed(s) of --seeds"),
        (["--seeds=0,1", "--processes=0"], "flag --processes=0: 0 is not a positive integer"),
        (["--seeds=0,1", "--processes=2", "--env=NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'"),
    ],
)
def test_bad_seeds_get_one_line_exit_2_and_nothing_written(tmp_path, flags, message):
    result = run_train(*BANDIT_ARGS, *flags, cwd=tmp_path)  # the default logdir is under cwd
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bin/train: error: ") and message in lines[0], (
        result.stderr
    )
    assert list(tmp_path.iterdir()) == []


SEEDS_RUN_STEPS = 20


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory) -> tuple[pathlib.Path, subprocess.CompletedProcess]:
    """bin/train --seeds=0-2,5 on the bandit, a few steps."""
    logdir = tmp_path_factory.mktemp("seeds") / "pop"
    steps = SEEDS_RUN_STEPS
    args = [
        f"--hparam=total_steps={steps}",
        f"--hparam=eval_interval={steps}",
        f"--hparam=checkpoint_interval={steps}",
    ]
    return logdir, run_train(*BANDIT_ARGS, *args, "--seeds=0-2,5", f"--logdir={logdir}")


def test_a_list_of_seeds_and_ranges_trains_each_seed_into_its_directory(seeds_run):
    logdir, result = seeds_run
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in logdir.iterdir()) == ["seed0", "seed1", "seed2", "seed5"]
    for seed in (0, 1, 2, 5):
        member = logdir / f"seed{seed}"
        assert evaluation.read_run(member)[2] == seed
        assert checkpoint_steps(member)[-1] == SEEDS_RUN_STEPS
        assert list(plotting.eval_returns(member)[0]) == [SEEDS_RUN_STEPS]
        assert evaluation.saved_model_actor(member / "policy")[2] == SEEDS_RUN_STEPS
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith(f"done: {SEEDS_RUN_STEPS} steps, last evaluation returns seed0 ")
    )
    first, second = final_model(logdir / "seed0"), final_model(logdir / "seed1")
    assert not np.array_equal(first["critic/q/kernel"], second["critic/q/kernel"])  # seeds make runs


def test_a_member_directory_holding_another_run_is_refused_untouched(seeds_run):
    """Seed 3's directory is free and seed 5's holds a run of other hparams: nothing is written,
    neither seed 3's directory nor anything in seed 5's."""
    logdir, _ = seeds_run
    before = tree_snapshot(logdir)
    result = run_train(*BANDIT_ARGS, "--hparam=actor_lr=0.5", "--seeds=3,5", f"--logdir={logdir}")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(logdir / "seed5") in lines[0] and "different run" in lines[0] and "actor_lr" in lines[0]
    assert tree_snapshot(logdir) == before
    assert not (logdir / "seed3").exists()


# --- 6. signals and kill -9: every member checkpoints, and resumes exactly -----------------------

# DDPG (the bandit's hparams file, cut down) on Pendulum: 200-step episodes, so the signals stop
# the members mid-episode (the environment is brought back by replaying the episode's actions)
# with the OU noise running.
PENDULUM_OVERRIDES = [
    "total_steps=300",
    "batch_size=16",
    "replay_capacity=1000",
    "eval_interval=150",
    "eval_episodes=1",
    "checkpoint_interval=50",
    "actor_hidden=[16]",
    "critic_hidden=[16]",
    "critic_state_embedding=8",
]
PENDULUM_HPARAMS = ROOT / "hparams" / "bandit_ddpg.json"


def latest_step(logdir: pathlib.Path) -> int | None:
    latest = CheckpointDirectory(logdir / "checkpoints").latest()
    return None if latest is None else int(latest.name[len(PREFIX) :])


def wait_for_checkpoints(logdirs: list[pathlib.Path], process: subprocess.Popen, at_least: int) -> None:
    """Returns as soon as each of `logdirs` has a checkpoint of step >= at_least."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        steps = [latest_step(d) for d in logdirs]
        if all(s is not None and s >= at_least for s in steps):
            return
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint >= {at_least} in {logdirs} (exit code {process.poll()})")


def test_signals_and_kill_9_then_resume_give_the_uninterrupted_population(tmp_path):
    """One population through SIGINT, SIGTERM and kill -9, each time run again by the same
    command, against the same population trained in one go: the checkpoint each signal leaves
    is the uninterrupted state of its step, and the end (weights, evaluation returns) is the same,
    bit for bit."""
    args = [
        "--env=Pendulum-v1",
        f"--hparams={PENDULUM_HPARAMS}",
        *(f"--hparam={o}" for o in PENDULUM_OVERRIDES),
        "--seeds=0,1",
        f"--logdir={tmp_path / 'pop'}",
    ]
    members = [tmp_path / "pop" / "seed0", tmp_path / "pop" / "seed1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    interrupted: dict[int, list[dict[str, np.ndarray]]] = {}  # step -> each member's checkpoint
    for signum, after in ((signal.SIGINT, 50), (signal.SIGTERM, 150)):
        process = subprocess.Popen(
            train_command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        wait_for_checkpoints(members, process, after)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 130, stderr
        steps = [latest_step(m) for m in members]
        assert steps[0] == steps[1] >= after, steps  # every member saved the step it stopped at
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert lines == [
            f"bin/train: error: interrupted: signal {signum} at step {steps[0]}; checkpoint saved"
        ]
        if interrupted:
            assert f"resumed 2 run(s) at step {max(interrupted)}" in stdout
        interrupted[steps[0]] = [final_model(m) for m in members]
    # kill -9 the moment seed0 has a new checkpoint: seed1's of that step may still be missing, and
    # the members go back to the latest step they both have.
    process = subprocess.Popen(
        train_command(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_checkpoints(members[:1], process, 200)
    process.kill()
    assert process.wait() == -signal.SIGKILL
    common = set.intersection(
        *({int(p.name[len(PREFIX) :]) for p in CheckpointDirectory(m / "checkpoints").all()} for m in members)
    )
    result = run_train(*args)
    assert result.returncode == 0, result.stderr
    assert f"resumed 2 run(s) at step {max(common)}" in result.stdout and max(common) >= 150
    assert [latest_step(m) for m in members] == [300, 300]

    hp = hparams_lib.apply_overrides(hparams_lib.load(PENDULUM_HPARAMS), PENDULUM_OVERRIDES)
    references = [tmp_path / "straight" / "seed0", tmp_path / "straight" / "seed1"]
    straight = training.PopulationTrainer("Pendulum-v1", [hp, hp], [0, 1], references)
    states_at: dict[int, list[dict[str, np.ndarray]]] = {}

    def record(progress):
        if progress.step in interrupted:
            states_at[progress.step] = [straight.agent.member_state(k) for k in range(2)]

    straight.on_progress = record
    straight.run()
    for step, states in interrupted.items():
        for k, state in enumerate(states):
            assert sorted(state) == sorted(states_at[step][k])
            for name, value in states_at[step][k].items():
                np.testing.assert_array_equal(state[name], value, err_msg=f"step {step} member {k} {name}")
    for member, reference in zip(members, references, strict=True):
        for name, value in final_model(reference).items():
            np.testing.assert_array_equal(final_model(member)[name], value, err_msg=name)
        steps, returns = plotting.eval_returns(member)
        assert list(steps) == [150, 300]
        np.testing.assert_array_equal(returns, plotting.eval_returns(reference)[1])


class CutOff(Exception):
    """Stands for a kill between two members' checkpoint writes."""


class SaveCutOffAt(training.PopulationTrainer):
    """Writes member 0's checkpoint of step `at` and dies before member 1's."""

    at = 0

    def save_checkpoints(self):
        if self.step != self.at:
            return super().save_checkpoints()
        member = self.members[0]
        member.checkpoints.save(
            self.step, self.agent.member_state(0), member.replay, member.state(self.step, self.pending_action)
        )
        raise CutOff


@pytest.mark.parametrize("at", [0, 50])
def test_a_save_cut_off_between_members_resumes_from_the_last_common_step(tmp_path, alone, at):
    """Killed after member 0 wrote a checkpoint that member 1 has not: the next run goes back to
    the latest step both have (the fresh start for step 0) and ends as the members alone."""
    logdirs = [tmp_path / "seed0", tmp_path / "seed1"]
    cut = type("Cut", (SaveCutOffAt,), {"at": at})(ENV, MEMBER_HPARAMS, [0, 1], logdirs)
    with pytest.raises(CutOff):
        cut.run()
    assert at in checkpoint_steps(logdirs[0]) and at not in checkpoint_steps(logdirs[1])
    logs = []
    training.PopulationTrainer(ENV, MEMBER_HPARAMS, [0, 1], logdirs, on_log=logs.append).run()
    resumed = [line for line in logs if line.startswith("resumed")]
    assert resumed == ([] if at == 0 else [f"resumed 2 run(s) at step {at - 10}"])
    for member, single in zip(logdirs, alone, strict=True):
        assert_same_run(member, single)


def test_members_without_a_common_checkpoint_are_refused_with_nothing_written(tmp_path):
    """seed0 holds a run past its step-0 checkpoint's pruning; seed1 is new: no step in common."""
    hp = MEMBER_HPARAMS[0]
    training.Trainer(ENV, hp, 0, tmp_path / "seed0", keep_checkpoints=3).run()
    before = tree_snapshot(tmp_path)
    with pytest.raises(training.RunConfigError, match="no step in common"):
        training.PopulationTrainer(ENV, [hp, hp], [0, 1], [tmp_path / "seed0", tmp_path / "seed1"]).run()
    assert tree_snapshot(tmp_path) == before
    assert not (tmp_path / "seed1").exists()


def test_members_whose_episodes_end_at_different_steps_reset_their_own_noise(tmp_path):
    """DDPG on Hopper-v4, where episodes end when the hopper falls, at steps that differ between
    seeds: each member's OU noise is reset at its own episode starts (a mask per member), so each
    member ends as the run of its seed alone, with its own θ, σ."""
    hps = [
        hopper_hparams(
            "ddpg", total_steps=300, warmup_steps=0, eval_interval=300, ou_damping=0.05, ou_stddev=0.3
        ),
        hopper_hparams(
            "ddpg", total_steps=300, warmup_steps=0, eval_interval=300, ou_damping=0.2, ou_stddev=0.5
        ),
    ]
    logs = []
    population = training.PopulationTrainer(
        "Hopper-v4", hps, [0, 1], [tmp_path / "seed0", tmp_path / "seed1"], on_log=logs.append
    )
    ends = []
    reset_noise = population.agent.reset_noise

    def recording_reset(members=None):
        ends.append((population.step, None if members is None else tuple(bool(x) for x in members)))
        reset_noise(members)

    population.agent.reset_noise = recording_reset
    population.run()
    episodes = [m.episode for m in population.members]
    # The members' episodes ended apart at least once: masks with one member only.
    assert any(mask in ((True, False), (False, True)) for _, mask in ends), ends
    assert sum(mask.count(True) for _, mask in ends) == sum(episodes)
    for seed, hp in enumerate(hps):
        alone = tmp_path / f"alone{seed}"
        training.Trainer("Hopper-v4", hp, seed, alone).run()
        assert_same_state(final_model(tmp_path / f"seed{seed}"), final_model(alone), f"seed{seed}")
