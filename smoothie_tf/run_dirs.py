"""A run directory: what identifies the run it holds, and whether a command may train into it.

TensorFlow-free, so that a command can refuse a directory before it imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from smoothie_tf import hparams as hparams_lib
from smoothie_tf.startup import output_dir_problem

DIVERGED = "diverged.json"  # written in a member's run directory when its update turned non-finite
ALL_DIVERGED = "every member of this population has diverged before; nothing to train"


def left_out(name: str, logdir: pathlib.Path) -> str:
    """The line that says a member which diverged before is not trained again."""
    return f"{name} stopped earlier ({logdir / DIVERGED}); it is left out"


class RunConfigError(ValueError):
    """The logdir belongs to a different run (other hparams, env or seed)."""


def resolved_config(hp: hparams_lib.HParams, env_id: str, seed: int, env_kwargs: dict | None = None) -> dict:
    """What identifies a run: its hparams, env (with the keyword arguments it is made with) and
    seed (compared when a logdir is reused)."""
    return {
        "hparams": dataclasses.asdict(hp),
        "env": env_id,
        "env_kwargs": dict(env_kwargs or {}),
        "seed": seed,
    }


def check_logdir(logdir: pathlib.Path, config: dict) -> bool:
    """True when logdir holds this run already (resume); raises RunConfigError if another run, or
    anything but a run: a file, a directory of other files (the parent of runs, for instance)."""
    # An existing run is not asked to be writable: one that is finished is only read back.
    problem = output_dir_problem(logdir) if not logdir.is_dir() else None
    if problem is not None:
        raise RunConfigError(f"--logdir: {problem}")
    saved = logdir / "hparams.json"
    if not saved.exists():
        if (logdir / "checkpoints").exists():
            raise RunConfigError(f"{logdir} has checkpoints but no hparams.json; refusing to reuse it")
        # A run writes hparams.json first; before it, at most its temporary (a start cut off).
        others = (
            sorted(p.name for p in logdir.iterdir() if p.name != "hparams.json.tmp")
            if logdir.exists()
            else []
        )
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise RunConfigError(
                f"{logdir} holds {shown} but no run (no hparams.json); choose a new or empty --logdir"
            )
        return False
    try:
        previous = json.loads(saved.read_text())
    except json.JSONDecodeError as error:
        raise RunConfigError(f"{saved} is not valid JSON: {error}") from error
    # A run recorded before env keyword arguments existed was made without any.
    previous = {key: previous.get(key, {} if key == "env_kwargs" else None) for key in config}
    if previous != config:
        diffs = _differences(previous, config)
        raise RunConfigError(f"{logdir} holds a different run ({diffs}); choose another --logdir")
    return True


def _differences(old: dict, new: dict, prefix: str = "") -> str:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _differences(a, b, f"{prefix}{key}.")
            if inner:
                out.append(inner)
        elif a != b:
            out.append(f"{prefix}{key}: saved {a!r}, now {b!r}")
    return "; ".join(out)
