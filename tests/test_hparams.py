"""The hparams record: files, overrides, types, ranges."""

import dataclasses
import json
import pathlib
import re

import pytest

from smoothie_tf import hparams as hparams_lib
from smoothie_tf.hparams import HParams, HParamsError

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC_KEYS = """agent total_steps actor_lr critic_lr reward_scale discount target_lag batch_size grad_clip
huber_delta updates_per_step kl_penalty initial_log_variance ou_damping ou_stddev replay_capacity
warmup_steps eval_interval eval_episodes checkpoint_interval actor_hidden critic_state_embedding
critic_hidden derivative_bellman_k1 derivative_bellman_k2 derivative_bellman_diagonal
derivative_bellman_baseline""".split()


def test_every_spec_key_is_declared_and_documented():
    docs = hparams_lib.describe()
    for key in SPEC_KEYS:
        assert key in docs and len(docs[key]) > 10, key


@pytest.mark.parametrize(
    "name", ["smoothie", "smoothie_kl", "smoothie_slow_variance", "ddpg", "bandit_smoothie", "bandit_ddpg"]
)
def test_shipped_files_load_and_validate(name):
    hp = hparams_lib.load(ROOT / "hparams" / f"{name}.json")
    hparams_lib.validate(hp)


@pytest.mark.parametrize("name", ["smoothie", "smoothie_kl", "smoothie_slow_variance", "ddpg"])
def test_mujoco_files_use_the_papers_fixed_values_and_ranges(name):
    hp = hparams_lib.load(ROOT / "hparams" / f"{name}.json")
    assert (hp.discount, hp.target_lag, hp.batch_size, hp.grad_clip, hp.updates_per_step, hp.huber_delta) == (
        0.995,
        0.01,
        128,
        4.0,
        1,
        1.0,
    )
    assert 1e-6 <= hp.actor_lr <= 1e-3 and 1e-6 <= hp.critic_lr <= 1e-3 and 0.01 <= hp.reward_scale <= 0.3
    if name == "smoothie_kl":
        assert 1e-6 <= hp.kl_penalty <= 4e-2
    if name == "smoothie_slow_variance":
        assert (hp.agent, hp.kl_penalty, hp.log_variance_lr) == ("smoothie", 0.0, 1e-5)
    if name == "ddpg":
        assert 1e-4 <= hp.ou_damping <= 1e-3 and 1e-3 <= hp.ou_stddev <= 1.0
    assert hp.actor_hidden == [400, 300] and hp.critic_state_embedding == 400 and hp.critic_hidden == [300]


@pytest.mark.parametrize(
    "name", ["smoothie", "smoothie_kl", "smoothie_slow_variance", "ddpg", "bandit_smoothie", "bandit_ddpg"]
)
def test_the_readme_says_where_every_value_of_a_file_comes_from(name):
    readme = (ROOT / "hparams" / "README.md").read_text()
    section = readme.split("## The synthetic task")[1 if name.startswith("bandit") else 0]
    for key in json.loads((ROOT / "hparams" / f"{name}.json").read_text()):
        assert re.search(rf"^\| [^|]*\b{key}\b", section, re.MULTILINE), key


def test_bandit_files_match_the_task_description():
    smoothie = hparams_lib.load(ROOT / "hparams" / "bandit_smoothie.json")
    ddpg = hparams_lib.load(ROOT / "hparams" / "bandit_ddpg.json")
    for hp in (smoothie, ddpg):
        assert hp.warmup_steps == 0 and hp.actor_lr == 2e-5 and hp.critic_lr == 1e-3
    assert (ddpg.agent, ddpg.ou_damping, ddpg.ou_stddev) == ("ddpg", 0.15, 0.2)
    assert (smoothie.agent, smoothie.kl_penalty) == ("smoothie", 0.0)
    for hp in (smoothie, ddpg):
        assert 5000 <= hp.total_steps <= 7000 and hp.eval_episodes <= 5
        assert hp.eval_interval < hp.total_steps and hp.checkpoint_interval < hp.total_steps
        assert hp.replay_capacity >= hp.total_steps  # nothing is dropped
    different = {k for k, v in dataclasses.asdict(smoothie).items() if dataclasses.asdict(ddpg)[k] != v}
    assert different == {"agent"}  # a fair comparison: nothing else differs


def test_overrides_are_typed():
    hp = hparams_lib.apply_overrides(
        HParams(),
        [
            "actor_lr=3e-4",
            "batch_size=64",
            "agent=ddpg",
            "critic_hidden=[64,64]",
            "reward_scale=1",
            "total_steps=2e6",
        ],
    )
    assert hp.actor_lr == 3e-4 and hp.batch_size == 64 and hp.agent == "ddpg"
    assert hp.critic_hidden == [64, 64] and hp.reward_scale == 1.0 and isinstance(hp.reward_scale, float)
    assert hp.total_steps == 2_000_000 and isinstance(hp.total_steps, int)
    flags = hparams_lib.apply_overrides(
        HParams(), ["derivative_bellman_diagonal=true", "derivative_bellman_baseline=false"]
    )
    assert flags.derivative_bellman_diagonal is True and flags.derivative_bellman_baseline is False
    # A string key takes the text as it is, even when it would parse as JSON; later overrides win.
    assert hparams_lib.apply_overrides(HParams(), ['agent="ddpg"']).agent == "ddpg"
    assert (
        hparams_lib.apply_overrides(
            HParams(), ["critic_activation=relu", "critic_activation=1"]
        ).critic_activation
        == "1"
    )
    assert hparams_lib.apply_overrides(HParams(), []) == HParams()


@pytest.mark.parametrize(
    "override, message",
    [
        ("batch_size=big", "--hparam: batch_size must be an integer, got 'big'"),
        ("batch_size=1.5", "batch_size must be an integer, got 1.5"),
        ("batch_size=true", "batch_size must be an integer, got True"),
        ("actor_lr=fast", "actor_lr must be a finite number, got 'fast'"),
        ("actor_lr=NaN", "actor_lr must be a finite number, got nan"),
        ("initial_log_variance=-Infinity", "initial_log_variance must be a finite number, got -inf"),
        ("derivative_bellman_diagonal=1", "derivative_bellman_diagonal must be true or false, got 1"),
        ("derivative_bellman_diagonal=True", "derivative_bellman_diagonal must be true or false, got 'True'"),
        (
            "critic_hidden=[64,1.5]",
            r"critic_hidden must be a list of integers such as \[400,300\], got \[64, 1.5\]",
        ),
        ("critic_hidden=300", "critic_hidden must be a list of integers"),
        ("actor_lrr=0.1", r"--hparam: unknown key 'actor_lrr' \(did you mean 'actor_lr'\?\)"),
        ("zzz=1", "unknown key 'zzz' .the keys are documented in smoothie_tf/hparams.py"),
        ("actor_lr", "KEY=VALUE"),
        ("=3", "KEY=VALUE"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(HParamsError, match=message) as caught:
        hparams_lib.apply_overrides(HParams(), [override])
    assert "\n" not in str(caught.value)


def test_the_issues_example_messages():
    with pytest.raises(HParamsError, match="^actor_lr must be > 0, got -0.1$"):
        hparams_lib.validate(dataclasses.replace(HParams(), actor_lr=-0.1))
    with pytest.raises(HParamsError, match="^batch_size 256 is larger than replay_capacity 100$"):
        hparams_lib.validate(dataclasses.replace(HParams(), batch_size=256, replay_capacity=100))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"actor_lr": -0.1}, "actor_lr must be > 0"),
        ({"critic_lr": 0.0}, "critic_lr must be > 0"),
        ({"discount": 0.0}, r"discount must be in \(0, 1\], got 0.0"),
        ({"discount": 1.5}, r"discount must be in \(0, 1\], got 1.5"),
        ({"target_lag": 2.0}, r"target_lag must be in \(0, 1\]"),
        ({"target_lag": 0.0}, r"target_lag must be in \(0, 1\]"),
        ({"grad_clip": 0.0}, "grad_clip must be > 0"),
        ({"huber_delta": -1.0}, "huber_delta must be > 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"agent": "ppo"}, r"agent must be one of \('smoothie', 'ddpg'\), got 'ppo'"),
        ({"critic_hidden": []}, "critic_hidden must be a non-empty list of positive sizes"),
        ({"actor_hidden": [400, 0]}, "actor_hidden must be a non-empty list of positive sizes"),
        ({"kl_penalty": -1.0}, "kl_penalty must be >= 0"),
        ({"critic_activation": "relu"}, "action-Hessian is zero"),
        ({"critic_activation": "gelu"}, "critic_activation must be one of"),
        ({"eval_episodes": 0}, "eval_episodes must be >= 1"),
        ({"eval_interval": 0}, "eval_interval must be >= 1"),
        ({"checkpoint_interval": 0}, "checkpoint_interval must be >= 1"),
        ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
        ({"ou_damping": 0.0}, r"ou_damping must be in \(0, 1\]"),
        ({"batch_size": "128"}, "batch_size must be an integer, got '128'"),
        ({"actor_lr": float("nan")}, "actor_lr must be a finite number"),
    ],
)
def test_out_of_range_values(change, message):
    with pytest.raises(HParamsError, match=message):
        hparams_lib.validate(dataclasses.replace(HParams(), **change))


def test_discount_of_one_and_ddpg_with_relu_are_allowed():
    hparams_lib.validate(dataclasses.replace(HParams(), discount=1.0))
    hparams_lib.validate(dataclasses.replace(HParams(), agent="ddpg", critic_activation="relu"))


def test_files_with_problems(tmp_path):
    with pytest.raises(HParamsError, match="cannot read hparams file .*missing.json: No such file"):
        hparams_lib.load(tmp_path / "missing.json")
    cases = {
        "bad.json": ("{oops", "hparams file .*bad.json is malformed JSON: Expecting property name"),
        "list.json": ("[1, 2]", "expected a JSON object of hparams, got list"),
        "unknown.json": (
            json.dumps({"agent": "smoothie", "actor_lrr": 1e-4}),
            r"^hparams file .*unknown.json: unknown key 'actor_lrr' \(did you mean 'actor_lr'\?\)$",
        ),
        "type.json": (json.dumps({"batch_size": "128"}), "batch_size must be an integer, got '128'"),
        "twice.json": ('{"actor_lr": 1e-4, "actor_lr": 1e-3}', "twice.json: key 'actor_lr' appears twice"),
        "nan.json": ('{"critic_lr": NaN}', "critic_lr must be a finite number, got nan"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(HParamsError, match=message) as caught:
            hparams_lib.load(tmp_path / name)
        assert "\n" not in str(caught.value), name
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(HParamsError, match="is not UTF-8 text"):
        hparams_lib.load(tmp_path / "binary.json")
    with pytest.raises(HParamsError, match="cannot read hparams file"):
        hparams_lib.load(tmp_path)  # a directory


def test_missing_keys_take_defaults_and_json_round_trips(tmp_path):
    (tmp_path / "partial.json").write_text(
        json.dumps({"agent": "ddpg", "actor_lr": 5e-4, "batch_size": 64.0})
    )
    hp = hparams_lib.load(tmp_path / "partial.json")
    assert (hp.agent, hp.actor_lr, hp.batch_size) == ("ddpg", 5e-4, 64)
    assert dataclasses.replace(hp, agent="smoothie", actor_lr=1e-4, batch_size=128) == HParams()
    changed = hparams_lib.apply_overrides(
        hp, ["critic_hidden=[7,8]", "derivative_bellman_baseline=true", "kl_penalty=0.01"]
    )
    text = hparams_lib.to_json(changed)
    assert set(json.loads(text)) == set(dataclasses.asdict(HParams()))  # every key written
    assert hparams_lib.from_json(text) == changed
    assert hparams_lib.to_json(hparams_lib.from_json(text)) == text
    with pytest.raises(HParamsError, match="hparams JSON is malformed JSON"):
        hparams_lib.from_json("{")


def test_the_record_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        HParams().actor_lr = 1.0  # type: ignore[misc]
    assert HParams().actor_hidden is not HParams().actor_hidden  # no shared default list
