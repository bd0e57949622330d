"""Shipped hparams files cut down to small networks and short budgets, for the tests."""

import dataclasses
import os
import pathlib

from smoothie_tf import hparams as hparams_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SMALL_NETWORKS = {"actor_hidden": [32, 32], "critic_state_embedding": 16, "critic_hidden": [32]}


BANDIT_BUDGET = {"batch_size": 16, "replay_capacity": 1000, "total_steps": 200, "eval_interval": 50}
BANDIT_BUDGET |= {"eval_episodes": 2, "checkpoint_interval": 50}
HOPPER_BUDGET = {"batch_size": 32, "replay_capacity": 5000, "total_steps": 400, "warmup_steps": 150}
HOPPER_BUDGET |= {"eval_interval": 200, "eval_episodes": 1, "checkpoint_interval": 200}


def small_hparams(file: str, budget: dict, **overrides) -> hparams_lib.HParams:
    """A shipped hparams file with small networks and a short budget."""
    hp = hparams_lib.load(ROOT / "hparams" / f"{file}.json")
    return dataclasses.replace(hp, **{**SMALL_NETWORKS, **budget, **overrides})


def bandit_hparams(agent: str = "smoothie", **overrides) -> hparams_lib.HParams:
    return small_hparams(f"bandit_{agent}", BANDIT_BUDGET, **overrides)


def hopper_hparams(file: str = "smoothie", **overrides) -> hparams_lib.HParams:
    return small_hparams(file, HOPPER_BUDGET, **overrides)


def without_tensorflow(directory: pathlib.Path) -> dict:
    """os.environ with a `tensorflow` package that fails to import first on the path: a command run
    with it shows that it did its work, or refused its input, without loading TensorFlow."""
    package = directory / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text('raise ImportError("tensorflow was imported")\n')
    path = [str(directory), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
