"""The training loop: exact resume, crash safety, bad input, dashboards, end-to-end runs."""

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf
from small_runs import ROOT, bandit_hparams, hopper_hparams
from tensorboard.backend.event_processing import event_accumulator

from smoothie_tf import evaluation, training
from smoothie_tf import hparams as hparams_lib
from smoothie_tf.agents import make_agent, make_population
from smoothie_tf.agents.base import FINITE
from smoothie_tf.checkpoints import CheckpointDirectory, CheckpointError
from smoothie_tf.replay import Batch


def agent_weights(trainer: training.Trainer) -> dict[str, np.ndarray]:
    """Every state variable of the agent (networks, targets, optimizers, random streams, noise)."""
    return {name: v.numpy() for name, v in trainer.agent.state_variables().items()}


def assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b) and len(a) > 8
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def eval_returns(logdir: pathlib.Path) -> list[tuple[int, float]]:
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    accumulator.Reload()
    events = accumulator.Tensors("eval/mean_return")
    return sorted((e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events)


def run_interrupted_then_resumed(env_id, hp, seed, logdir, stop_at):
    first = training.Trainer(env_id, hp, seed, logdir)

    def stop(progress):
        if progress.step == stop_at:
            first._request_stop(signal.SIGINT, None)

    first.on_progress = stop
    with pytest.raises(training.Interrupted):
        first.run()
    assert CheckpointDirectory(logdir / "checkpoints").latest().name.endswith(f"{stop_at:010d}")
    second = training.Trainer(env_id, hp, seed, logdir)
    second.run()
    return second


@pytest.mark.parametrize("agent", ["smoothie", "ddpg"])
def test_exact_resume_on_the_bandit(tmp_path, agent):
    hp = bandit_hparams(agent)
    straight = training.Trainer("SmoothieBandit-v0", hp, 3, tmp_path / "straight")
    straight.run()
    resumed = run_interrupted_then_resumed("SmoothieBandit-v0", hp, 3, tmp_path / "resumed", stop_at=77)
    assert_same_weights(agent_weights(straight), agent_weights(resumed))
    assert eval_returns(tmp_path / "straight") == eval_returns(tmp_path / "resumed")
    assert len(eval_returns(tmp_path / "straight")) == 4


def test_exact_resume_on_hopper_mid_episode(tmp_path):
    hp = hopper_hparams()
    straight = training.Trainer("Hopper-v4", hp, 5, tmp_path / "straight")
    straight.run()
    resumed = run_interrupted_then_resumed("Hopper-v4", hp, 5, tmp_path / "resumed", stop_at=263)
    assert_same_weights(agent_weights(straight), agent_weights(resumed))
    assert eval_returns(tmp_path / "straight") == eval_returns(tmp_path / "resumed")
    assert straight.episode == resumed.episode > 1  # episodes ended and restarted along the way


def test_a_population_resumes_without_a_member_that_diverged_before(tmp_path):
    """Member 0 diverges at the first update (step 16: reward_scale 1e39 makes its critic loss
    infinite). Interrupted at step 25 and resumed, the population leaves it out (its replay was
    never restored) and member 1 resumes from its checkpoint of step 25 and trains to the end
    exactly as in the uninterrupted run, one update a step."""
    base = bandit_hparams(total_steps=40, checkpoint_interval=10)
    hps = [dataclasses.replace(base, reward_scale=1e39), base]

    def population(root: pathlib.Path, **kwargs) -> training.PopulationTrainer:
        logdirs = [root / "seed0", root / "seed1"]
        return training.PopulationTrainer("SmoothieBandit-v0", hps, [0, 1], logdirs, **kwargs)

    straight = population(tmp_path / "straight")
    assert straight.run()["diverged"] == ["seed0"]
    first = population(tmp_path / "resumed")
    first.on_progress = lambda progress: progress.step == 25 and first._request_stop(signal.SIGINT, None)
    with pytest.raises(training.Interrupted):
        first.run()
    log: list[str] = []
    resumed = population(tmp_path / "resumed", on_log=log.append)
    result = resumed.run()
    assert result["step"] == 40 and result["diverged"] == ["seed0"]
    assert "resumed 1 run(s) at step 25" in log
    assert any(line.startswith("seed0 stopped earlier") for line in log)
    assert resumed.agent.critic_optimizer.iterations.numpy()[1] == 40 - base.batch_size + 1
    final = straight.agent.member_state(1)
    for name, value in resumed.agent.member_state(1).items():
        np.testing.assert_array_equal(value, final[name], err_msg=name)
    assert eval_returns(tmp_path / "resumed" / "seed1") == eval_returns(tmp_path / "straight" / "seed1")
    assert len(eval_returns(tmp_path / "straight" / "seed1")) == 1


def test_event_files_hold_the_pinned_tags(tmp_path):
    training.Trainer("SmoothieBandit-v0", bandit_hparams(), 0, tmp_path).run()
    accumulator = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = set(accumulator.Tags()["tensors"])
    for tag in [
        "eval/mean_return",
        "train/episode_return",
        "loss/critic",
        "loss/policy",
        "policy/mean_variance",
        "policy/variance",
        "policy/variance_0",
        "critic/q_mean",
        "perf/env_steps_per_sec",
    ]:
        assert tag in tags, tag
    histogram = accumulator.Tensors("policy/variance")[-1]
    assert tf.make_ndarray(histogram.tensor_proto).shape[-1] == 3  # TensorBoard's histogram buckets
    plugins = accumulator.PluginTagToContent("hparams")
    assert plugins, "no hparams dashboard"
    assert accumulator.PluginTagToContent("custom_scalars"), "no custom-scalars layout"


def test_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path):
    """From step 121 on the batches' rewards are NaN: the compiled step's critic loss is NaN (its
    own check says so), and the run stops at that step."""
    hp = bandit_hparams()
    trainer = training.Trainer("SmoothieBandit-v0", hp, 0, tmp_path)
    real_step, real_step_and_act = trainer.agent.train_step, trainer.agent.train_step_and_act

    def poison(batch):
        if trainer.step > 120:
            return batch._replace(rewards=np.full_like(batch.rewards, np.nan))
        return batch

    trainer.agent.train_step = lambda batch: real_step(poison(batch))
    trainer.agent.train_step_and_act = lambda batch, observations: real_step_and_act(
        poison(batch), observations
    )
    with pytest.raises(training.NonFiniteLossError, match=r"non-finite loss at step 121 \(critic nan"):
        trainer.run()
    checkpoints = CheckpointDirectory(tmp_path / "checkpoints")
    assert [p.name for p in checkpoints.all()] == [f"ckpt-{s:010d}" for s in (50, 100)]


def with_one_nan(variable: tf.Variable, when: tf.Variable) -> tf.Tensor:
    """`variable` with its first entry NaN where `when` is true, itself otherwise."""
    first = tf.reshape(tf.one_hot(0, tf.size(variable), on_value=True, off_value=False), tf.shape(variable))
    return tf.where(first & when, tf.constant(float("nan"), variable.dtype), variable)


def checkpointed_float_values(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Every floating-point array of a checkpoint's model, read from disk."""
    values = CheckpointDirectory.read_model(path)
    return {name: v for name, v in values.items() if np.issubdtype(np.asarray(v).dtype, np.floating)}


@pytest.mark.parametrize(
    "agent, broken_at, updates_per_step",
    [("smoothie", 100, 1), ("ddpg", 73, 1), ("ddpg", 73, 2)],
)
def test_an_update_that_breaks_the_weights_stops_the_run_before_its_checkpoint(
    tmp_path, monkeypatch, agent, broken_at, updates_per_step
):
    """The first update of step `broken_at` (100: a checkpoint step; 73: not one) leaves a NaN in
    the critic while the losses it reports (computed before the update) are finite: the run stops
    at that step, right after that update, and the last checkpoint, step 50's, holds finite
    weights. With two updates per step the first is a plain `train_step` (the second also draws
    the next action), and the run stops after it, before the second."""
    poison = tf.Variable(False)

    def make_poisoned_agent(*args, **kwargs):
        built = make_population(*args, **kwargs)
        update_targets = built.update_targets

        def poisoned_update_targets():  # the end of the compiled step, after every update
            update_targets()
            kernel = built.critic.trainable_variables[0]
            kernel.assign(with_one_nan(kernel, poison))

        built.update_targets = poisoned_update_targets
        return built

    monkeypatch.setattr(training, "make_population", make_poisoned_agent)
    hp = bandit_hparams(agent, updates_per_step=updates_per_step)
    assert hp.checkpoint_interval == 50 and hp.total_steps > broken_at
    trainer = training.Trainer("SmoothieBandit-v0", hp, 0, tmp_path)
    trainer.on_progress = lambda progress: poison.assign(progress.step == broken_at - 1)
    with pytest.raises(training.NonFiniteLossError) as raised:
        trainer.run()
    message = str(raised.value)
    assert message.startswith(f"non-finite weights after the update at step {broken_at} (its losses: critic ")
    assert "nan" not in message and message.endswith(
        f"the run stopped and its last good checkpoint is kept (ckpt-{50:010d})"
    )
    assert trainer.step == broken_at
    # Updates from step batch_size on, updates_per_step a step; of step broken_at's, the first only.
    updates = updates_per_step * (broken_at - hp.batch_size) + 1
    assert trainer.agent.critic_optimizer.iterations.numpy().tolist() == [updates]
    checkpoints = CheckpointDirectory(tmp_path / "checkpoints")
    assert [p.name for p in checkpoints.all()] == [f"ckpt-{50:010d}"]
    values = checkpointed_float_values(checkpoints.latest())
    assert len(values) > 8 and all(np.all(np.isfinite(v)) for v in values.values())
    assert any(name.startswith("critic/") for name in values)  # the critic's weights are there
    assert np.isnan(trainer.agent.critic.trainable_variables[0].numpy()[0, 0, 0])  # the poison did land


def test_the_finite_check_covers_the_policy_and_the_critic():
    """One infinite entry in the policy (mean layers or φ) or the critic turns the check false; the
    train step reports the check on the weights its update leaves."""
    hp = bandit_hparams("ddpg")
    agent = make_agent(hp, 1, types.SimpleNamespace(low=np.array([-2.0]), high=np.array([2.0])), seed=0)
    assert agent.weights_are_finite().numpy().tolist() == [True]  # one per member
    for network in ("policy", "critic"):
        variables = getattr(agent, network).variables
        assert network != "policy" or any(v is agent.policy.log_variance for v in variables)
        for variable in variables:
            saved = variable.numpy()
            broken = saved.copy()
            broken.reshape(-1)[-1] = np.inf
            variable.assign(broken)
            assert agent.weights_are_finite().numpy().tolist() == [False], (network, variable.path)
            variable.assign(saved)
    assert agent.weights_are_finite().numpy().tolist() == [True]
    rng = np.random.default_rng(0)
    batch = Batch(
        observations=np.ones([hp.batch_size, 1], np.float32),
        actions=rng.uniform(-2, 2, [hp.batch_size, 1]).astype(np.float32),
        rewards=rng.normal(size=hp.batch_size).astype(np.float32),
        next_observations=np.ones([hp.batch_size, 1], np.float32),
        terminated=np.ones(hp.batch_size, np.float32),
    )
    assert agent.train_step(batch)[FINITE].numpy() is np.True_
    agent.policy.variables[0].assign(np.full(agent.policy.variables[0].shape, np.nan, np.float32))
    assert agent.train_step(batch)[FINITE].numpy() is np.False_


def test_checkpoint_from_another_env_is_refused(tmp_path):
    trainer = training.Trainer("SmoothieBandit-v0", bandit_hparams(total_steps=50), 0, tmp_path / "run")
    trainer.run()
    assert CheckpointDirectory(tmp_path / "run" / "checkpoints").latest().name == f"ckpt-{50:010d}"
    other = training.Trainer("Hopper-v4", hopper_hparams(), 0, tmp_path / "run")  # its checkpoints
    with pytest.raises(CheckpointError, match="from env SmoothieBandit-v0"):
        other.restore(50)


def test_exported_policy_runs_with_tensorflow_alone(tmp_path):
    trainer = training.Trainer("SmoothieBandit-v0", bandit_hparams(total_steps=50), 0, tmp_path)
    trainer.run()
    loaded = tf.saved_model.load(str(tmp_path / "policy"))
    observations = tf.ones([4, 1])
    np.testing.assert_allclose(
        loaded.mean_action(observations), trainer.agent.policy(observations[None])[0], rtol=1e-6
    )


@pytest.mark.parametrize("file", ["smoothie", "smoothie_kl", "ddpg"])
def test_short_hopper_run_trains_end_to_end(tmp_path, file):
    hp = hparams_lib.load(ROOT / "hparams" / f"{file}.json")
    hp = dataclasses.replace(
        hp, total_steps=2000, warmup_steps=500, eval_interval=2000, eval_episodes=1, checkpoint_interval=1000
    )
    result = training.Trainer("Hopper-v4", hp, 0, tmp_path).run()
    assert result["step"] == 2000 and np.isfinite(result["last_eval_return"])
    assert len(CheckpointDirectory(tmp_path / "checkpoints").all()) == 2
    saved = json.loads((tmp_path / "hparams.json").read_text())
    assert saved["env"] == "Hopper-v4" and saved["hparams"]["agent"] == hp.agent and "versions" in saved


# --- the command line -------------------------------------------------------------------------


def train_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "bin" / "train"), *args]


def run_train(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(train_command(*args), capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def tree_snapshot(directory: pathlib.Path) -> dict:
    return {
        str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in directory.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished_bandit_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("finished")
    training.Trainer("SmoothieBandit-v0", bandit_hparams(total_steps=50), 0, logdir).run()
    return logdir


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown_env", "unknown environment 'NoSuchEnv-v0'"),
        ("discrete_env", "Discrete"),
        ("missing_file", "no_such_file.json"),
        ("malformed_json", "malformed.json"),
        ("unknown_key", "actor_lrr"),
        ("wrong_type", "batch_size"),
        ("negative_lr", "actor_lr"),
        ("discount_out_of_range", "discount"),
        ("batch_over_capacity", "replay_capacity"),
        ("unknown_flag", "no_such_flag"),
        ("bad_lqr_matrix", "R must be positive definite"),
        ("unknown_env_kwarg", "no_such_matrix"),
        ("malformed_env_kwargs", "--env_kwargs is not valid JSON"),
        ("env_kwargs_not_an_object", "--env_kwargs must be a JSON object"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(tmp_path, case, message):
    good = str(ROOT / "hparams" / "bandit_smoothie.json")
    logdir = tmp_path / "run"
    args = {
        "unknown_env": ["--env=NoSuchEnv-v0", f"--hparams={good}"],
        "discrete_env": ["--env=CartPole-v1", f"--hparams={good}"],
        "missing_file": ["--env=SmoothieBandit-v0", f"--hparams={tmp_path / 'no_such_file.json'}"],
        "malformed_json": [
            "--env=SmoothieBandit-v0",
            f"--hparams={write(tmp_path / 'malformed.json', '{oops')}",
        ],
        "unknown_key": ["--env=SmoothieBandit-v0", f"--hparams={good}", "--hparam=actor_lrr=0.1"],
        "wrong_type": ["--env=SmoothieBandit-v0", f"--hparams={good}", "--hparam=batch_size=big"],
        "negative_lr": ["--env=SmoothieBandit-v0", f"--hparams={good}", "--hparam=actor_lr=-0.1"],
        "discount_out_of_range": ["--env=SmoothieBandit-v0", f"--hparams={good}", "--hparam=discount=1.5"],
        "batch_over_capacity": [
            "--env=SmoothieBandit-v0",
            f"--hparams={good}",
            "--hparam=batch_size=256",
            "--hparam=replay_capacity=100",
        ],
        "unknown_flag": ["--env=SmoothieBandit-v0", f"--hparams={good}", "--no_such_flag=1"],
        "bad_lqr_matrix": [
            "--env=SmoothieLQR-v0",
            f"--hparams={good}",
            '--env_kwargs={"R": [[1, 0], [0, -1]]}',
        ],
        "unknown_env_kwarg": [
            "--env=SmoothieLQR-v0",
            f"--hparams={good}",
            '--env_kwargs={"no_such_matrix": 1}',
        ],
        "malformed_env_kwargs": ["--env=SmoothieLQR-v0", f"--hparams={good}", "--env_kwargs={R: 1"],
        "env_kwargs_not_an_object": ["--env=SmoothieLQR-v0", f"--hparams={good}", "--env_kwargs=[1, 2]"],
    }[case]
    result = run_train(*args, f"--logdir={logdir}")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not logdir.exists()


def test_an_update_that_breaks_the_weights_is_exit_1_with_one_line_and_no_checkpoint(tmp_path):
    """An actor learning rate past float32's range turns the policy's weights infinite at the
    first update (step 16, a checkpoint step), whose losses were computed before it."""
    args = [
        "--env=SmoothieBandit-v0",
        f"--hparams={ROOT / 'hparams' / 'bandit_ddpg.json'}",
        "--hparam=actor_lr=1e39",
        "--hparam=batch_size=16",
        "--hparam=checkpoint_interval=16",
        "--hparam=total_steps=100",
        "--hparam=actor_hidden=[8]",
        "--hparam=critic_hidden=[8]",
        "--hparam=critic_state_embedding=4",
        f"--logdir={tmp_path}",
    ]
    result = run_train(*args)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bin/train: error: non-finite weights after the update at step 16 ")
    assert lines[0].endswith("the run stopped before its first checkpoint")
    assert CheckpointDirectory(tmp_path / "checkpoints").all() == []


def test_progress_lines_time_the_steps_between_them_and_the_end_is_rounded(tmp_path):
    """Without a terminal: a line at the start (no rate yet), then every 30 s and at the end, each
    with the rate since the line before."""
    args = [f"--hparams={ROOT / 'hparams' / 'bandit_smoothie.json'}", "--hparam=total_steps=300"]
    result = run_train("--env=SmoothieBandit-v0", *args, f"--logdir={tmp_path}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first, *later = [line for line in lines if " steps/s) " in line]  # more of them on a slow machine
    assert first.startswith("step 1/300 (- steps/s) episode return "), first
    assert first.endswith(" eval return -"), first
    assert later[-1].startswith("step 300/300 ("), later
    assert all(float(line.split("(")[1].split()[0]) > 0 for line in later), later
    last_return = eval_returns(tmp_path)[-1][1]
    assert lines[-1] == f"done: 300 steps, last evaluation return {last_return:.2f}, logdir {tmp_path}"


def test_logdir_of_another_run_is_refused_untouched(finished_bandit_run):
    before = tree_snapshot(finished_bandit_run)
    good = str(ROOT / "hparams" / "bandit_smoothie.json")
    result = run_train(
        "--env=SmoothieBandit-v0",
        f"--hparams={good}",
        "--hparam=actor_lr=0.5",
        f"--logdir={finished_bandit_run}",
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "actor_lr" in lines[0] and "different run" in lines[0], result.stderr
    assert tree_snapshot(finished_bandit_run) == before


@pytest.mark.parametrize("case", ["a_file", "the_parent_of_runs", "a_folder_of_other_files"])
def test_a_logdir_that_is_not_a_run_is_refused_untouched(tmp_path, case):
    """A file, or a directory holding files but no hparams.json, is not taken for a new run."""
    if case == "a_file":
        logdir = write(tmp_path / "notes.txt", "kept")
        message = f"--logdir: {logdir} is a file, not a directory"
    else:
        logdir = tmp_path / "logdir"
        children = (
            ["seed0", "seed1"] if case == "the_parent_of_runs" else ["a.txt", "b.txt", "c.txt", "d.txt"]
        )
        logdir.mkdir()
        for name in children:
            if name.startswith("seed"):
                (logdir / name).mkdir()
            else:
                write(logdir / name, name)
        shown = ", ".join(children[:3]) + (", ..." if len(children) > 3 else "")
        message = f"{logdir} holds {shown} but no run (no hparams.json); choose a new or empty --logdir"
    before = tree_snapshot(tmp_path), sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = run_train(
        "--env=SmoothieBandit-v0",
        f"--hparams={ROOT / 'hparams' / 'bandit_smoothie.json'}",
        f"--logdir={logdir}",
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"bin/train: error: {message}"], result.stderr
    assert (tree_snapshot(tmp_path), sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))) == before


def test_running_a_finished_run_again_writes_nothing_but_a_missing_policy(tmp_path):
    """No events file, no checkpoint, no policy export: the run directory is left as it was. A
    run stopped after its last checkpoint but before its policy export gets the policy."""
    hp = bandit_hparams(total_steps=20, eval_interval=20, checkpoint_interval=20)
    assert training.Trainer("SmoothieBandit-v0", hp, 0, tmp_path).run()["step"] == 20
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    before = tree_snapshot(tmp_path)
    assert training.Trainer("SmoothieBandit-v0", hp, 0, tmp_path).run()["step"] == 20
    assert tree_snapshot(tmp_path) == before
    shutil.rmtree(tmp_path / "policy")
    assert training.Trainer("SmoothieBandit-v0", hp, 0, tmp_path).run()["step"] == 20
    assert evaluation.saved_model_actor(tmp_path / "policy")[2] == 20


def test_a_finished_run_on_read_only_storage_is_still_recognised(finished_bandit_run, monkeypatch):
    config = training.resolved_config(bandit_hparams(total_steps=50), "SmoothieBandit-v0", 0)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a user, on read-only storage
    assert training.check_logdir(finished_bandit_run, config) is True


def test_an_empty_logdir_or_one_left_by_a_start_cut_off_is_a_new_run(tmp_path):
    config = training.resolved_config(bandit_hparams(total_steps=30), "SmoothieBandit-v0", 0)
    assert training.check_logdir(tmp_path / "new", config) is False
    assert training.check_logdir(tmp_path, config) is False  # exists, empty
    write(tmp_path / "hparams.json.tmp", "{cut off")
    assert training.check_logdir(tmp_path, config) is False
    write(tmp_path / "other", "")
    with pytest.raises(training.RunConfigError, match=r"holds other but no run"):
        training.check_logdir(tmp_path, config)


def wait_for_new_checkpoint(logdir: pathlib.Path, process, timeout=120.0) -> None:
    """Returns once the process has written a checkpoint newer than those there now (or ended)."""
    checkpoints = CheckpointDirectory(logdir / "checkpoints")
    before = checkpoints.latest()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoints.latest() != before:
            return
        time.sleep(0.02)


def test_kill_9_at_random_moments_then_resume_completes(tmp_path):
    good = str(ROOT / "hparams" / "bandit_ddpg.json")
    total = 1500
    args = [
        "--env=SmoothieBandit-v0",
        f"--hparams={good}",
        f"--hparam=total_steps={total}",
        "--hparam=checkpoint_interval=40",
        "--hparam=eval_interval=500",
        "--hparam=actor_hidden=[32,32]",
        "--hparam=critic_hidden=[32]",
        "--hparam=critic_state_embedding=16",
        f"--logdir={tmp_path}",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    rng = np.random.default_rng(0)
    for _ in range(3):
        process = subprocess.Popen(
            train_command(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for_new_checkpoint(tmp_path, process)
        time.sleep(rng.uniform(0.0, 1.0))
        process.kill()
        process.wait()
        for checkpoint in CheckpointDirectory(tmp_path / "checkpoints").all():  # each one left behind loads
            CheckpointDirectory.read_state(checkpoint)
            assert (checkpoint / "replay.npz").exists()
    # SIGINT saves a checkpoint and exits 130.
    process = subprocess.Popen(
        train_command(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_for_new_checkpoint(tmp_path, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    if process.returncode != 0:  # 0 only if it finished before the signal arrived
        assert process.returncode == 130, stderr
        interrupted_at = CheckpointDirectory.read_state(
            CheckpointDirectory(tmp_path / "checkpoints").latest()
        )
        assert f"at step {interrupted_at['step']}; checkpoint saved" in stderr.decode()
    result = run_train(*args)
    assert result.returncode == 0, result.stderr
    latest = CheckpointDirectory(tmp_path / "checkpoints").latest()
    assert CheckpointDirectory.read_state(latest)["step"] == total
    small = dataclasses.replace(
        hparams_lib.load(good), actor_hidden=[32, 32], critic_hidden=[32], critic_state_embedding=16
    )
    kept = CheckpointDirectory(tmp_path / "checkpoints").all()
    assert len(kept) == 3
    for checkpoint in kept:  # every one restores fully
        step = CheckpointDirectory.read_state(checkpoint)["step"]
        probe = training.Trainer("SmoothieBandit-v0", small, 0, tmp_path)
        probe.restore(step)
        assert probe.step == step and len(probe.replay) == min(step, small.replay_capacity)


def test_checkpoint_from_another_env_is_refused_by_the_command_line(tmp_path, finished_bandit_run):
    hopper = hparams_lib.load(ROOT / "hparams" / "smoothie.json")
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "hparams.json").write_text(json.dumps(training.resolved_config(hopper, "Hopper-v4", 0)))
    shutil.copytree(finished_bandit_run / "checkpoints", logdir / "checkpoints")
    before = tree_snapshot(logdir)
    result = run_train(
        "--env=Hopper-v4", f"--hparams={ROOT / 'hparams' / 'smoothie.json'}", f"--logdir={logdir}"
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "from env SmoothieBandit-v0" in lines[0], result.stderr
    assert tree_snapshot(logdir) == before


def test_a_crash_while_an_old_checkpoint_is_deleted_leaves_only_complete_checkpoints(tmp_path, monkeypatch):
    from smoothie_tf import checkpoints as checkpoints_lib
    from smoothie_tf.replay import ReplayBuffer

    directory = CheckpointDirectory(tmp_path / "checkpoints", keep=2)
    replay = ReplayBuffer(4, 1, 1)
    for step in (10, 20):
        directory.save(step, {"w": np.zeros(2)}, replay, {"step": step})

    class Killed(BaseException):
        pass

    delete = shutil.rmtree

    def dies_half_way(path, ignore_errors=False):
        if not (pathlib.Path(path) / "replay.npz").exists():  # not a checkpoint: delete as usual
            return delete(path, ignore_errors=ignore_errors)
        (pathlib.Path(path) / "replay.npz").unlink()  # one file gone, then the process dies
        raise Killed

    monkeypatch.setattr(checkpoints_lib.shutil, "rmtree", dies_half_way)
    with pytest.raises(Killed):
        directory.save(30, {"w": np.ones(2)}, replay, {"step": 30})
    monkeypatch.undo()
    left = directory.all()
    assert [path.name for path in left] == [f"ckpt-{20:010d}", f"ckpt-{30:010d}"]
    for path in left:
        assert {f.name for f in path.iterdir()} == {"model.npz", "replay.npz", "state.json"}
    directory.remove_temporaries()  # what the next start does
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == [path.name for path in left]


def test_damaged_replay_in_a_checkpoint_is_a_checkpoint_error(tmp_path):
    training.Trainer("SmoothieBandit-v0", bandit_hparams(total_steps=50), 0, tmp_path / "run").run()
    latest = CheckpointDirectory(tmp_path / "run" / "checkpoints").latest()
    (latest / "replay.npz").write_bytes(b"not an npz file")
    fresh = training.Trainer("SmoothieBandit-v0", bandit_hparams(total_steps=50), 0, tmp_path / "run")
    with pytest.raises(CheckpointError, match="unusable replay buffer"):
        fresh.restore(CheckpointDirectory.read_state(latest)["step"])


def test_a_run_on_another_thread_trains_without_signal_handlers(tmp_path):
    """Ray Tune runs trials on worker threads, where Python refuses signal handlers."""
    import threading

    outcome = {}
    before = signal.getsignal(signal.SIGINT)
    trainer = training.Trainer("SmoothieBandit-v0", bandit_hparams(total_steps=60), 0, tmp_path / "run")
    thread = threading.Thread(target=lambda: outcome.update(trainer.run()))
    thread.start()
    thread.join(timeout=300)
    assert outcome["step"] == 60 and signal.getsignal(signal.SIGINT) is before


def test_env_kwargs_make_the_env_and_identify_the_run(tmp_path):
    """A run made with env keyword arguments trains on that env (its evaluation env too), records
    them, exports them with the policy, resumes with them, and refuses other ones."""
    R = [[3.0, 0.0], [0.0, 2.0]]
    hp = bandit_hparams(total_steps=40, eval_interval=40, checkpoint_interval=20)
    trainer = training.Trainer("SmoothieLQR-v0", hp, 0, tmp_path, env_kwargs={"R": R})
    np.testing.assert_array_equal(trainer.env.unwrapped.R, R)
    np.testing.assert_array_equal(trainer.eval_env.unwrapped.R, R)
    trainer.run()
    assert json.loads((tmp_path / "hparams.json").read_text())["env_kwargs"] == {"R": R}
    assert evaluation.read_run(tmp_path)[3] == {"R": R}
    assert evaluation.saved_model_actor(tmp_path / "policy")[3] == {"R": R}
    with pytest.raises(training.RunConfigError, match="env_kwargs"):
        training.Trainer("SmoothieLQR-v0", hp, 0, tmp_path).run()
    resumed = training.Trainer("SmoothieLQR-v0", hp, 0, tmp_path, env_kwargs={"R": R})
    assert resumed.run()["step"] == 40


def test_a_run_recorded_without_env_kwargs_resumes_without_them(tmp_path):
    """hparams.json written before env keyword arguments were recorded has no "env_kwargs"."""
    hp = bandit_hparams(total_steps=30, checkpoint_interval=30)
    record = training.resolved_config(hp, "SmoothieBandit-v0", 0)
    del record["env_kwargs"]
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "hparams.json").write_text(json.dumps(record))
    assert training.check_logdir(tmp_path, training.resolved_config(hp, "SmoothieBandit-v0", 0))
    with pytest.raises(training.RunConfigError, match="env_kwargs"):
        training.check_logdir(tmp_path, training.resolved_config(hp, "SmoothieBandit-v0", 0, {"bumps": []}))
