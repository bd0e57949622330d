"""The hparams record: files, overrides, types, ranges."""

import dataclasses
import json
import pathlib

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


@pytest.mark.parametrize("name", ["smoothie", "smoothie_kl", "ddpg", "bandit_smoothie", "bandit_ddpg"])
def test_shipped_files_load_and_validate(name):
    hp = hparams_lib.load(ROOT / "hparams" / f"{name}.json")
    hparams_lib.validate(hp)


@pytest.mark.parametrize("name", ["smoothie", "smoothie_kl", "ddpg"])
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
    if name == "ddpg":
        assert 1e-4 <= hp.ou_damping <= 1e-3 and 1e-3 <= hp.ou_stddev <= 1.0
    assert hp.actor_hidden == [400, 300] and hp.critic_state_embedding == 400 and hp.critic_hidden == [300]


def test_bandit_files_match_the_task_description():
    smoothie = hparams_lib.load(ROOT / "hparams" / "bandit_smoothie.json")
    ddpg = hparams_lib.load(ROOT / "hparams" / "bandit_ddpg.json")
    for hp in (smoothie, ddpg):
        assert hp.warmup_steps == 0 and hp.actor_lr == 2e-5 and hp.critic_lr == 1e-3
    assert (ddpg.agent, ddpg.ou_damping, ddpg.ou_stddev) == ("ddpg", 0.15, 0.2)
    assert smoothie.agent == "smoothie"


def test_overrides_are_typed():
    hp = hparams_lib.apply_overrides(
        HParams(),
        ["actor_lr=3e-4", "batch_size=64", "agent=ddpg", "critic_hidden=[64,64]", "reward_scale=1"],
    )
    assert hp.actor_lr == 3e-4 and hp.batch_size == 64 and hp.agent == "ddpg"
    assert hp.critic_hidden == [64, 64] and isinstance(hp.reward_scale, float)
    assert hparams_lib.apply_overrides(
        HParams(), ["derivative_bellman_diagonal=true"]
    ).derivative_bellman_diagonal


@pytest.mark.parametrize(
    "override, message",
    [
        ("batch_size=big", "batch_size must be int, got 'big'"),
        ("batch_size=1.5", "batch_size must be int"),
        ("actor_lr=fast", "actor_lr must be float"),
        ("derivative_bellman_diagonal=1", "derivative_bellman_diagonal must be bool"),
        ("critic_hidden=[64,1.5]", "critic_hidden must be list"),
        ("actor_lrr=0.1", "unknown key 'actor_lrr'"),
        ("actor_lr", "KEY=VALUE"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(HParamsError, match=message.replace("[", r"\[")):
        hparams_lib.apply_overrides(HParams(), [override])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"actor_lr": -0.1}, "actor_lr must be > 0"),
        ({"critic_lr": 0.0}, "critic_lr must be > 0"),
        ({"discount": 0.0}, r"discount must be in \(0, 1\]"),
        ({"discount": 1.5}, r"discount must be in \(0, 1\]"),
        ({"target_lag": 2.0}, "target_lag"),
        ({"batch_size": 256, "replay_capacity": 100}, "batch_size 256 is larger than replay_capacity 100"),
        ({"agent": "ppo"}, "agent must be one of"),
        ({"critic_hidden": []}, "critic_hidden"),
        ({"kl_penalty": -1.0}, "kl_penalty"),
        ({"critic_activation": "relu"}, "action-Hessian is zero"),
        ({"eval_episodes": 0}, "eval_episodes"),
    ],
)
def test_out_of_range_values(change, message):
    with pytest.raises(HParamsError, match=message):
        hparams_lib.validate(dataclasses.replace(HParams(), **change))


def test_discount_of_one_and_ddpg_with_relu_are_allowed():
    hparams_lib.validate(dataclasses.replace(HParams(), discount=1.0))
    hparams_lib.validate(dataclasses.replace(HParams(), agent="ddpg", critic_activation="relu"))


def test_files_with_problems(tmp_path):
    with pytest.raises(HParamsError, match="cannot read hparams file .*missing.json"):
        hparams_lib.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(HParamsError, match="malformed JSON"):
        hparams_lib.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(HParamsError, match="expected a JSON object"):
        hparams_lib.load(tmp_path / "list.json")
    (tmp_path / "unknown.json").write_text(json.dumps({"agent": "smoothie", "learning_rate": 1}))
    with pytest.raises(HParamsError, match="unknown key 'learning_rate'"):
        hparams_lib.load(tmp_path / "unknown.json")
    (tmp_path / "type.json").write_text(json.dumps({"batch_size": "128"}))
    with pytest.raises(HParamsError, match="batch_size must be int"):
        hparams_lib.load(tmp_path / "type.json")


def test_missing_keys_take_defaults_and_json_round_trips():
    hp = hparams_lib.from_dict({"agent": "ddpg", "actor_lr": 5e-4})
    assert hp.critic_lr == HParams().critic_lr and hp.agent == "ddpg"
    assert hparams_lib.from_json(hparams_lib.to_json(hp)) == hp
