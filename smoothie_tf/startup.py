"""Process start-up shared by the command-line programs and Ray Tune's trial workers, and the
checks of an output path that the commands and the training loop make before the work."""

import functools
import os
import pathlib
import sys


@functools.cache
def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and probes its devices with stderr closed, so that its C++ start-up
    messages (no CUDA driver on a CPU machine, absl's pre-init notice) do not bury ours. Calls
    after the first do nothing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def output_file_problem(path: str | os.PathLike, suffixes: tuple[str, ...] = (".png",)) -> str | None:
    """Why the file at `path` could not be written, or None when it can: a suffix not among
    `suffixes` (any suffix when empty), a directory in its place, or a nearest existing parent
    that is not a writable directory (missing parents are created when it is written). The
    commands check an output this way before the work whose result it holds."""
    path = pathlib.Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        return f"must name a {' or '.join(suffixes)} file, got {path}"
    if path.is_dir():
        return f"{path} is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    return _parent_problem(path)


def output_dir_problem(path: str | os.PathLike) -> str | None:
    """Why the directory at `path` could not be made or written into, or None when it can: a
    file in its place, or a nearest existing parent that is not a writable directory."""
    path = pathlib.Path(path)
    if path.exists():
        if not path.is_dir():
            return f"{path} is a file, not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable"
        return None
    return _parent_problem(path)


def _parent_problem(path: pathlib.Path) -> str | None:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, so {path} cannot be made"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable, so {path} cannot be made"
    return None
