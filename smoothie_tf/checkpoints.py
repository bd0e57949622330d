"""Atomic, complete checkpoints of a training run.

A checkpoint is a directory `ckpt-<step>` holding:
  model.npz      the agent's state, one array per named variable (networks, targets,
                 optimizer slots, random streams, exploration noise): one member's slices, so a
                 member of a population writes the same checkpoint as a single run
  replay.npz     the replay buffer (no pickle)
  state.json     counters, the NumPy RNG state, the current episode's seed and actions, the env id

It is written under a temporary name and renamed into place, so a crash mid-write leaves the
previous checkpoints untouched; an old checkpoint is renamed to a temporary name before its files
are deleted, so a crash mid-deletion leaves no checkpoint with files missing. Stray temporary
directories are removed on the next start.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import zipfile

import numpy as np

PREFIX = "ckpt-"
TEMPORARY = ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this run (another env, another shape, damaged)."""


def _fsync_tree(directory: pathlib.Path) -> None:
    for path in [*directory.iterdir(), directory]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CheckpointDirectory:
    """The checkpoints of one run, newest last; keeps the `keep` most recent."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = pathlib.Path(directory)
        self.keep = keep

    def all(self) -> list[pathlib.Path]:
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
        return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))

    def latest(self) -> pathlib.Path | None:
        found = self.all()
        return found[-1] if found else None

    def remove_temporaries(self) -> None:
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.name.startswith(TEMPORARY):
                    shutil.rmtree(path, ignore_errors=True)

    def save(self, step: int, arrays: dict[str, np.ndarray], replay, state: dict) -> pathlib.Path:
        """Writes checkpoint `step` atomically and prunes old ones; returns its directory."""
        final = self.directory / f"{PREFIX}{step:010d}"
        if final.exists():
            return final
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f"{TEMPORARY}{PREFIX}{step:010d}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        with open(temporary / "model.npz", "wb") as file:
            np.savez(file, allow_pickle=False, **arrays)
        replay.save(temporary / "replay.npz")
        (temporary / "state.json").write_text(json.dumps(state))
        _fsync_tree(temporary)
        os.rename(temporary, final)
        _fsync_tree(self.directory)
        for old in self.all()[: -self.keep]:
            # Renamed out of the listing first: a crash in the middle of deleting its files leaves
            # a temporary (removed on the next start), never a checkpoint with files missing.
            doomed = self.directory / f"{TEMPORARY}{old.name}-removed-{os.getpid()}"
            os.rename(old, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        return final

    @staticmethod
    def read_state(path: pathlib.Path) -> dict:
        try:
            return json.loads((path / "state.json").read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"checkpoint {path} is damaged: {error}") from error

    @staticmethod
    def read_model(path: pathlib.Path) -> dict[str, np.ndarray]:
        """The agent's arrays of checkpoint `path`, by name (see `ActorCriticAgent.member_state`)."""
        try:
            with np.load(path / "model.npz", allow_pickle=False) as saved:
                return {name: saved[name] for name in saved.files}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise CheckpointError(f"checkpoint {path} is damaged: {error}") from error
