"""A population split over several processes, one TensorFlow thread each (`bin/train --processes`).

On a CPU, a member's update costs a core about as much in a population as alone, and one process
leaves a core idle while Python steps the environments; one one-thread population per core keeps
both cores busy (README, Populations and Speed). Each part is an ordinary `bin/train --seeds=...`
of its own seeds, so it writes, resumes and refuses exactly as that command does; this module
builds the parts' commands, starts them, relays their output line by line with a prefix naming
their seeds, passes signals on, and combines their exit codes. Imports no TensorFlow.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
# Set in a part's environment to the pid of the process that started it (`stop_with_parent`).
PARENT_VARIABLE = "SMOOTHIE_TF_PARENT_PID"
PR_SET_PDEATHSIG = 1


def split_seeds(seeds: Sequence[int], parts: int) -> list[list[int]]:
    """Consecutive groups of sizes differing by at most one, the larger first:
    split_seeds([0..7], 2) -> [[0..3], [4..7]]; split_seeds([0..4], 2) -> [[0, 1, 2], [3, 4]]."""
    if not 1 <= parts <= len(seeds):
        raise ValueError(f"cannot split {len(seeds)} seeds into {parts} processes")
    size, extra = divmod(len(seeds), parts)
    groups, start = [], 0
    for part in range(parts):
        end = start + size + (part < extra)
        groups.append(list(seeds[start:end]))
        start = end
    return groups


def seeds_text(seeds: Sequence[int]) -> str:
    """[0, 1, 2, 3] -> '0-3'; [0, 3, 7] -> '0,3,7' (the --seeds syntax)."""
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def part_commands(
    script: str,
    env_id: str,
    hparams_file: str,
    overrides: Sequence[str],
    logdir: str,
    env_kwargs: str | None,
    groups: Sequence[Sequence[int]],
) -> list[list[str]]:
    """One `bin/train` command line per group: the same env, hparams file, overrides (in their
    order), logdir and env keyword arguments, and --seeds=<group>."""
    common = [sys.executable, script, f"--env={env_id}", f"--hparams={hparams_file}"]
    common += [f"--hparam={override}" for override in overrides]
    common.append(f"--logdir={logdir}")
    if env_kwargs is not None:
        common.append(f"--env_kwargs={env_kwargs}")
    return [[*common, f"--seeds={seeds_text(group)}"] for group in groups]


class _IgnoringBrokenPipes:
    """A part's stdout or stderr: once the process relaying it is gone, what is written is lost,
    but writing does not raise, so the part still reaches its checkpoint on the way out. Anything
    else (encoding, fileno, buffer, ...) is the stream's own."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError):
            self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def stop_with_parent() -> None:
    """Called first thing in a part: the kernel is to send it SIGTERM when the process that
    started it dies (kill -9 included), so that it checkpoints and stops instead of training on
    unseen; if that process has died already, the part exits at once. Its output no longer raises
    once nobody reads it. A no-op in a process not started by `run_parts`; on systems without
    prctl a part trains on until its end."""
    parent = os.environ.pop(PARENT_VARIABLE, None)
    if parent is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):
        sys.exit(130)
    sys.stdout, sys.stderr = _IgnoringBrokenPipes(sys.stdout), _IgnoringBrokenPipes(sys.stderr)


def _relay(stream, out, prefix: str, lock: threading.Lock) -> None:
    """Copies `stream` to `out` line by line with `prefix`. Reads to the end whatever happens to
    `out` (closed, a broken pipe): a part whose output is not read would block on its next write."""
    for line in stream:
        if not line.endswith("\n"):
            line += "\n"
        with lock, contextlib.suppress(OSError, ValueError):
            out.write(prefix + line)
            out.flush()
    stream.close()


def combined_exit_code(codes: Sequence[int], interrupted: bool) -> int:
    """130 after a signal; otherwise the most serious part's: bad input 2, then failure 1, then
    interrupted 130 (a part stopped by a signal of its own), then 0."""
    if interrupted:
        return 130
    for code in (2, 1, 130):
        if code in codes:
            return code
    return 1 if any(c not in (0, 1, 2, 130) for c in codes) else 0


def run_parts(commands: Sequence[Sequence[str]], prefixes: Sequence[str]) -> int:
    """Runs each command in a one-thread process, all at once, relaying their stdout and stderr
    line by line with their prefix; SIGINT or SIGTERM is passed on to every part as SIGTERM (each
    checkpoints and exits 130), and no part is started after one. Returns `combined_exit_code`
    once every part has ended. Call it from the main thread: a part's parent-death signal follows
    the thread that started it."""
    environment = {**os.environ, **ONE_THREAD, PARENT_VARIABLE: str(os.getpid())}
    lock = threading.Lock()
    interrupted = False
    parts: list[subprocess.Popen] = []

    def stop_parts(signum, frame) -> None:
        nonlocal interrupted
        interrupted = True
        for part in parts:
            with contextlib.suppress(ProcessLookupError):
                part.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_parts) for sig in (signal.SIGINT, signal.SIGTERM)}
    relays = []
    try:
        for command, prefix in zip(commands, prefixes, strict=True):
            if interrupted:
                break
            part = subprocess.Popen(
                command,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                bufsize=1,
            )
            parts.append(part)
            for stream, out in ((part.stdout, sys.stdout), (part.stderr, sys.stderr)):
                relay = threading.Thread(target=_relay, args=(stream, out, prefix, lock), daemon=True)
                relay.start()
                relays.append(relay)
        if interrupted:  # a signal came while the last part was starting
            stop_parts(signal.SIGTERM, None)
        codes = [part.wait() for part in parts]
        for relay in relays:
            relay.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return combined_exit_code(codes, interrupted)
