"""bin/eval and smoothie_tf.evaluation: the JSON contract, SavedModel against checkpoint, videos,
bad input."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import types

import gymnasium as gym
import numpy as np
import pytest
from small_runs import ROOT, bandit_hparams, hopper_hparams

from smoothie_tf import evaluation, training, video
from smoothie_tf.agents import AGENTS, make_agent
from smoothie_tf.checkpoints import CheckpointDirectory, CheckpointError
from smoothie_tf.envs import LQR_ID, make_env
from smoothie_tf.streams import MemberStreams

EVAL = [sys.executable, str(ROOT / "bin" / "eval")]


@pytest.fixture(scope="module")
def hopper_run(tmp_path_factory) -> pathlib.Path:
    """A finished 400-step Hopper-v4 run with small networks: checkpoints and exported policy."""
    logdir = tmp_path_factory.mktemp("run") / "hopper"
    training.Trainer("Hopper-v4", hopper_hparams(), 5, logdir).run()
    return logdir


@pytest.fixture(scope="module")
def ddpg_bandit_run(tmp_path_factory) -> pathlib.Path:
    """A finished 50-step DDPG run on SmoothieBandit-v0 (one-step episodes) with small networks."""
    logdir = tmp_path_factory.mktemp("run") / "ddpg_bandit"
    training.Trainer("SmoothieBandit-v0", bandit_hparams("ddpg", total_steps=50), 1, logdir).run()
    return logdir


def run_eval(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [*EVAL, *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300, cwd=cwd)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_eval_prints_a_summary_and_ends_with_the_json_contract(hopper_run):
    result = run_eval(f"--logdir={hopper_run}", "--episodes=3", "--seed=4")
    assert result.returncode == 0, result.stderr
    record = last_json(result.stdout)
    assert {"step", "episodes", "mean_return", "std_return"} <= set(record)
    assert record["step"] == 400 and record["episodes"] == 3 and record["deterministic"] is True
    assert record["mean_return"] == pytest.approx(np.mean(record["returns"]))
    assert record["std_return"] == pytest.approx(np.std(record["returns"]))
    assert "episode 3/3" in result.stdout and "mean return" in result.stdout


def test_saved_model_evaluates_like_its_checkpoint_on_the_same_seed(hopper_run):
    agent, env_id, step, _ = evaluation.load_agent(hopper_run)
    from_checkpoint = evaluation.run_episodes(env_id, evaluation.checkpoint_actor(agent, False, 0), 3, seed=9)
    act, saved_env, saved_step, _ = evaluation.saved_model_actor(hopper_run / "policy")
    from_saved_model = evaluation.run_episodes(saved_env, act, 3, seed=9)
    assert (saved_env, saved_step) == (env_id, step) == ("Hopper-v4", 400)
    assert from_saved_model.returns == from_checkpoint.returns
    assert from_saved_model.lengths == from_checkpoint.lengths
    other_seed = evaluation.run_episodes(saved_env, act, 3, seed=10)
    assert other_seed.returns != from_saved_model.returns  # the seed reaches the resets


def test_saved_model_runs_with_tensorflow_alone(hopper_run):
    """The exported policy loads in a process that never imports smoothie_tf."""
    code = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({str(hopper_run / 'policy')!r})\n"
        "a = m.mean_action(np.zeros([2, 11], np.float32)).numpy()\n"
        "assert 'smoothie_tf' not in sys.modules\n"
        "print(m.env_id.numpy().decode(), int(m.step.numpy()), a.shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Hopper-v4", "400", "(2,", "3)"]


def test_cli_saved_model_matches_cli_checkpoint(hopper_run):
    by_checkpoint = last_json(run_eval(f"--logdir={hopper_run}", "--episodes=2", "--seed=1").stdout)
    result = run_eval(f"--saved_model={hopper_run / 'policy'}", "--episodes=2", "--seed=1")
    assert result.returncode == 0, result.stderr
    by_saved_model = last_json(result.stdout)
    assert by_saved_model["returns"] == by_checkpoint["returns"]
    assert by_saved_model["step"] == by_checkpoint["step"] == 400


def test_stochastic_evaluation_is_seeded_and_differs_from_the_mean(hopper_run):
    agent, env_id, _, _ = evaluation.load_agent(hopper_run)
    first = evaluation.run_episodes(env_id, evaluation.checkpoint_actor(agent, True, 2), 2, seed=2)
    again = evaluation.run_episodes(env_id, evaluation.checkpoint_actor(agent, True, 2), 2, seed=2)
    mean = evaluation.run_episodes(env_id, evaluation.checkpoint_actor(agent, False, 2), 2, seed=2)
    assert first.returns == again.returns
    assert first.returns != mean.returns


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_reseed_acting_makes_the_exploring_actions_a_function_of_the_seed(name):
    """Every random stream an exploring action draws from (DDPG's OU ε_t included) restarts from the
    seed, and the OU state restarts from 0; the agent's own seed gives back its first actions."""
    small = {"actor_hidden": [8], "critic_state_embedding": 4, "critic_hidden": [8]}
    observation = np.array([0.3, -0.2, 0.5], np.float32)

    def agent():
        return AGENTS[name](3, [-1.0, -2.0], [2.0, 1.0], seed=11, **small)

    def actions(agent, count=4):
        return np.stack([agent.act(observation) for _ in range(count)])

    fresh = actions(agent())
    reseeded = agent()
    actions(reseeded, 3)  # moves every stream (and the OU state) on
    reseeded.reseed_acting(11)
    np.testing.assert_array_equal(actions(reseeded), fresh)
    reseeded.reseed_acting(5)
    with_5 = actions(reseeded)
    reseeded.reseed_acting(5)
    np.testing.assert_array_equal(actions(reseeded), with_5)
    assert not np.any(with_5 == fresh)


def test_stochastic_ddpg_evaluation_is_a_function_of_its_seed(ddpg_bandit_run):
    """The bandit's resets ignore their seed, so the returns differ by the acting noise alone."""
    agent, env_id, _, _ = evaluation.load_agent(ddpg_bandit_run)

    def returns(acting_seed: int) -> list[float]:
        actor = evaluation.checkpoint_actor(agent, True, acting_seed)
        return evaluation.run_episodes(env_id, actor, 6, seed=0).returns

    first, again, other, first_again = returns(0), returns(0), returns(1), returns(0)
    assert first == again == first_again
    assert len(set(first)) == 6 and not set(first) & set(other)
    mean = evaluation.run_episodes(env_id, evaluation.checkpoint_actor(agent, False, 0), 6, seed=0).returns
    assert len(set(mean)) == 1 and mean[0] not in first


def test_stochastic_ddpg_evaluation_restarts_the_ou_noise_at_each_episode_only():
    """On SmoothieLQR-v0 (200-step episodes), with a small untrained DDPG agent: each action is
    clip(μ(s) + x_{t+1}) with x_{t+1} = (1 − θ)·x_t + σ·ε_t, ε_t the OU stream's next normal draw;
    x is 0 before each episode's first action, and carries over from one step to the next within
    an episode (reset at episode starts only)."""
    hp = bandit_hparams("ddpg", ou_damping=0.15, ou_stddev=2.0)
    env = make_env(LQR_ID)
    observation_dim, low, high = env.observation_space.shape[0], env.action_space.low, env.action_space.high
    env.close()
    agent = make_agent(hp, observation_dim, types.SimpleNamespace(low=low, high=high), seed=2)
    actor = evaluation.checkpoint_actor(agent, True, 3)
    noise = agent.exploration_noise
    theta, sigma = hp.ou_damping, hp.ou_stddev
    # A copy of the OU process's stream (a population of one: its key and counter are [1]), set to
    # the stream's position before each action, draws that action's ε_t.
    copy = MemberStreams([0], name="copy")
    episodes = []  # per episode: (observation, x before, ε, x after, action) for each step

    def reset():
        actor.reset()
        episodes.append([])

    def act(observation):
        copy.keys.assign(noise.streams.keys)
        copy.counters.assign(noise.streams.counters)
        epsilon = copy.normal([agent.action_dim]).numpy()[0]
        state_before = noise.state.numpy()[0].copy()
        action = actor(observation)
        episodes[-1].append((observation, state_before, epsilon, noise.state.numpy()[0].copy(), action))
        return action

    results = evaluation.run_episodes(LQR_ID, evaluation.Actor(act, reset), 3, seed=3)
    assert results.lengths == [200] * 3 and [len(steps) for steps in episodes] == [200] * 3
    for steps in episodes:
        observations, before, epsilon, after, actions = map(np.stack, zip(*steps, strict=True))
        np.testing.assert_array_equal(before[0], 0.0)  # reset at the episode's start
        np.testing.assert_array_equal(before[1:], after[:-1])  # and not between its steps
        np.testing.assert_allclose(after, (1 - theta) * before + sigma * epsilon, rtol=1e-5, atol=1e-6)
        # x_t stays far from 0 within an episode: stationary std σ/sqrt(1 − (1 − θ)²) = 3.8
        # (measured: mean |x_t| 3.3 to 3.5 per episode).
        assert np.mean(np.abs(before[1:])) > 1.0, np.mean(np.abs(before[1:]))
        # Against bounds of ±5, some actions are clipped (measured: 21% to 26% of the coordinates).
        means = agent.policy(observations[None]).numpy()[0]
        np.testing.assert_allclose(actions, np.clip(means + after, low, high), rtol=1e-5, atol=1e-5)
    starts = [steps[0][3] for steps in episodes]  # x_1 = σ·ε of each episode: distinct draws
    assert len({float(x[0]) for x in starts}) == 3


def test_cli_stochastic_ddpg_evaluation_follows_its_seed(ddpg_bandit_run):
    """bin/eval --stochastic --seed=1 gives the returns of the library's stochastic evaluation with
    seed 1, not those with seed 0 (each from a freshly loaded agent, as the command has)."""
    result = run_eval(f"--logdir={ddpg_bandit_run}", "--stochastic", "--episodes=4", "--seed=1")
    assert result.returncode == 0, result.stderr
    record = last_json(result.stdout)
    assert record["deterministic"] is False and record["seed"] == 1
    returns = {}
    for seed in (0, 1):
        agent, env_id, _, _ = evaluation.load_agent(ddpg_bandit_run)
        actor = evaluation.checkpoint_actor(agent, True, seed)
        returns[seed] = evaluation.run_episodes(env_id, actor, 4, seed=seed).returns
    assert record["returns"] == returns[1]
    assert not set(returns[0]) & set(returns[1])


def test_a_checkpoint_named_by_its_name_is_evaluated(hopper_run):
    """--checkpoint=ckpt-<step> (a bare name) is the run's checkpoints/ckpt-<step>."""
    checkpoints = CheckpointDirectory(hopper_run / "checkpoints").all()
    assert len(checkpoints) >= 2
    result = run_eval(f"--logdir={hopper_run}", f"--checkpoint={checkpoints[0].name}", "--episodes=1")
    assert result.returncode == 0, result.stderr
    record = last_json(result.stdout)
    assert record["step"] == int(checkpoints[0].name.split("-")[-1]) < 400
    assert record["checkpoint"] == str(checkpoints[0])


def test_a_checkpoint_is_found_by_its_name_or_its_path(hopper_run):
    checkpoints = CheckpointDirectory(hopper_run / "checkpoints").all()
    for checkpoint in (checkpoints[0], str(checkpoints[0]), checkpoints[0].name):
        assert evaluation.find_checkpoint(hopper_run, checkpoint) == checkpoints[0]
    assert evaluation.find_checkpoint(hopper_run) == checkpoints[-1]
    with pytest.raises(evaluation.EvaluationError, match="full path") as error:
        evaluation.find_checkpoint(hopper_run, "ckpt-0000009999")
    assert all(path.name in str(error.value) for path in checkpoints)  # the names it could be


def test_a_checkpoint_without_its_model_is_reported_as_damaged(hopper_run, tmp_path):
    logdir = tmp_path / "run"
    shutil.copytree(hopper_run, logdir)
    latest = CheckpointDirectory(logdir / "checkpoints").latest()
    (latest / "model.npz").unlink()
    with pytest.raises(CheckpointError) as error:
        evaluation.load_agent(logdir)
    assert str(error.value).startswith(f"checkpoint {latest} is damaged: ") and "fit" not in str(error.value)


def test_a_policy_is_refused_on_an_env_of_other_sizes_before_any_episode(hopper_run):
    """Hopper-v4's policy (observations [11], actions [3]) on Walker2d-v4 ([17], [6])."""
    result = run_eval(f"--saved_model={hopper_run / 'policy'}", "--env=Walker2d-v4", "--episodes=1")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bin/eval: error:"), lines
    for text in ("observations of shape (11,)", "actions of shape (3,)", "Walker2d-v4 has"):
        assert text in lines[0], lines
    assert "(17,)" in lines[0] and "(6,)" in lines[0], lines
    assert "evaluating" not in result.stdout
    agent, _, _, _ = evaluation.load_agent(hopper_run)
    with pytest.raises(evaluation.EvaluationError, match=r"Walker2d-v4 has observations of shape \(17,\)"):
        evaluation.run_episodes("Walker2d-v4", evaluation.checkpoint_actor(agent, False, 0), 1, seed=0)


def test_an_action_size_mismatch_alone_is_refused():
    """SmoothieLQR-v0 with one actuator (B [3, 1]) has the observation size of the default task but
    not its action size."""
    calls = []
    actor = evaluation.Actor(lambda observation: calls.append(observation) or np.zeros(2), None, 3, 2)
    one_actuator = {"B": [[0.0], [1.0], [0.0]], "R": [[1.0]]}
    with pytest.raises(evaluation.EvaluationError, match=r"actions of shape \(2,\).*actions of shape \(1,\)"):
        evaluation.run_episodes(LQR_ID, actor, 1, seed=0, env_kwargs=one_actuator)
    assert calls == []
    assert evaluation.run_episodes(LQR_ID, actor, 1, seed=0).lengths == [200]  # the sizes fit


class _ListsNoFrames(gym.Env):
    """Takes render_mode but lists no rgb_array rendering."""

    metadata = {"render_modes": ["human"]}

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)


gym.register(id="SmoothieTestListsNoFrames-v0", entry_point=_ListsNoFrames)


def test_render_problem_tells_which_envs_cannot_record():
    assert video.render_problem("Hopper-v4") is None
    for env_id, reason in [
        (LQR_ID, "its constructor takes no render_mode"),
        ("SmoothieTestListsNoFrames-v0", "its render modes: ['human']"),
    ]:
        assert (
            video.render_problem(env_id)
            == f"{env_id} cannot record videos: it does not render rgb_array frames ({reason})"
        )


def test_videos_of_an_env_that_cannot_render_are_refused_before_any_episode(ddpg_bandit_run, tmp_path):
    videos = tmp_path / "videos"
    result = run_eval(f"--logdir={ddpg_bandit_run}", "--episodes=1", f"--video_dir={videos}")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "bin/eval: error: SmoothieBandit-v0 cannot record videos: it does not render rgb_array frames "
        "(its constructor takes no render_mode)"
    ]
    assert "evaluating" not in result.stdout and not videos.exists()


def test_a_genuine_rendering_failure_keeps_the_renderers_message(tmp_path, monkeypatch):
    """Hopper-v4 can render: a renderer that fails (an unknown MUJOCO_GL backend) is reported as
    the rendering failure it is, after the episode ran."""
    import mujoco  # noqa: F401  (this process keeps the backend it imported MuJoCo with)

    monkeypatch.setenv("MUJOCO_GL", "no-such-backend")  # the rendering process fails to start it
    episodes = []
    act = evaluation.Actor(lambda observation: np.zeros(3), None, 11, 3)
    with pytest.raises(
        video.VideoError,
        match="MUJOCO_GL=no-such-backend failed: .*invalid value for environment variable MUJOCO_GL",
    ):
        evaluation.run_episodes(
            "Hopper-v4", act, 1, 0, video_dir=tmp_path, on_episode=lambda *a: episodes.append(a)
        )
    assert len(episodes) == 1


def renderer_available() -> bool:
    """Whether MuJoCo renders offscreen here (EGL), tried in a process without TensorFlow."""
    code = (
        "import gymnasium as gym\n"
        "env = gym.make('Hopper-v4', render_mode='rgb_array'); env.reset(seed=0)\n"
        "assert env.render().shape[-1] == 3\n"
    )
    environment = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, env=environment, timeout=120)
    return result.returncode == 0


@pytest.mark.skipif(not renderer_available(), reason="MuJoCo cannot render offscreen on this machine")
def test_video_dir_gets_one_mp4_per_episode_with_every_frame(hopper_run, tmp_path):
    import imageio.v2 as imageio

    videos = tmp_path / "videos"
    # A relative --video_dir is taken from the working directory, as every path a command is given.
    result = run_eval(f"--logdir={hopper_run}", "--episodes=2", "--video_dir=videos", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = last_json(result.stdout)
    assert sorted(os.listdir(videos)) == ["episode_000.mp4", "episode_001.mp4"]
    assert record["videos"] == ["videos/episode_000.mp4", "videos/episode_001.mp4"]
    for path, length in zip(record["videos"], record["lengths"], strict=True):
        reader = imageio.get_reader(tmp_path / path)
        frames = [frame for frame in reader]
        assert len(frames) == length + 1  # the reset frame and one per step
        assert frames[0].ndim == 3 and frames[0].std() > 10  # a picture, not a blank frame
        assert reader.get_meta_data()["fps"] == pytest.approx(125)


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "exactly one of --logdir"),
        (["--logdir=/nonexistent/run"], "is not a directory"),
        (["--logdir={run}", "--saved_model={run}/policy"], "exactly one of"),
        (["--saved_model={run}/policy", "--stochastic"], "mean action only"),
        (["--logdir={run}", "--checkpoint=ckpt-missing"], "does not exist: give a checkpoint's full path"),
        (["--checkpoint=ckpt-0000000200"], "--checkpoint needs --logdir=DIR"),
        (["--logdir={run}", "--episodes=0"], "episodes"),
        (["--logdir={run}/checkpoints"], "no hparams.json"),
        (["--saved_model={run}/checkpoints"], "not an exported policy"),
        (["--logdir={run}", "--env=Walker2d-v4"], "was trained on Hopper-v4"),
        (["--logdir={run}", "--video_dir={run}"], "is not empty"),
        (["--logdir={run}", "--video_dir={run}/hparams.json"], "hparams.json is a file, not a directory"),
        (["--saved_model={run}/policy", "--video_dir={run}/hparams.json/sub"], "hparams.json is a file, so"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(hopper_run, args, message):
    before = sorted(str(p) for p in hopper_run.rglob("*"))
    result = run_eval(*(arg.format(run=hopper_run) for arg in args))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bin/eval: error:") and message in lines[0], lines
    assert "evaluating" not in result.stdout  # refused before any episode
    assert sorted(str(p) for p in hopper_run.rglob("*")) == before


def test_eval_makes_the_env_with_the_runs_env_kwargs(tmp_path):
    """A run trained with env keyword arguments is evaluated on that env, from its checkpoint and
    from its exported policy: the returns are those of the env with them, not of the default."""
    Q = [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]]  # three times the default state cost
    hp = bandit_hparams(total_steps=20, eval_interval=20, eval_episodes=1, checkpoint_interval=20)
    training.Trainer("SmoothieLQR-v0", hp, 0, tmp_path, env_kwargs={"Q": Q}).run()
    by_checkpoint = run_eval(f"--logdir={tmp_path}", "--episodes=1", "--seed=2")
    by_saved_model = run_eval(f"--saved_model={tmp_path / 'policy'}", "--episodes=1", "--seed=2")
    for result in (by_checkpoint, by_saved_model):
        assert result.returncode == 0, result.stderr
        assert last_json(result.stdout)["env_kwargs"] == {"Q": Q}
    assert last_json(by_saved_model.stdout)["returns"] == last_json(by_checkpoint.stdout)["returns"]
    agent, env_id, _, _ = evaluation.load_agent(tmp_path)
    actor = evaluation.checkpoint_actor(agent, False, 2)
    with_kwargs = evaluation.run_episodes(env_id, actor, 1, seed=2, env_kwargs={"Q": Q}).returns
    default = evaluation.run_episodes(env_id, actor, 1, seed=2).returns
    assert last_json(by_checkpoint.stdout)["returns"] == pytest.approx(with_kwargs, rel=1e-6)
    assert with_kwargs != pytest.approx(default, rel=0.5)


def test_rendering_is_stopped_after_a_minute_and_a_second_a_frame(monkeypatch, tmp_path):
    """A renderer that hangs is stopped: VideoError, not a traceback, and no half-written video
    left; a long evaluation gets its time."""
    asked = {}

    def hang(*args, timeout, **kwargs):
        asked["timeout"], asked["request"] = timeout, json.loads(kwargs["input"])
        (tmp_path / "v").mkdir()
        (tmp_path / "v" / "a.tmp.mp4").write_bytes(b"half a video")  # cut off by the timeout
        raise subprocess.TimeoutExpired(args[0], timeout)

    monkeypatch.setattr(subprocess, "run", hang)
    monkeypatch.chdir(tmp_path)
    episodes = [{"seed": 0, "actions": [[0.0]] * 999, "path": "v/a.mp4"}, {"seed": 1, "actions": []}]
    episodes[1]["path"] = str(tmp_path / "b.mp4")
    with pytest.raises(video.VideoError, match="took over 1061 s; it was stopped"):
        video.render_episodes("Hopper-v4", episodes)
    assert asked["timeout"] == 60 + 1000 + 1
    paths = [episode["path"] for episode in asked["request"]["episodes"]]
    assert paths == [str(tmp_path / "v" / "a.mp4"), str(tmp_path / "b.mp4")]
    assert list((tmp_path / "v").iterdir()) == []  # so the same --video_dir can be used again
