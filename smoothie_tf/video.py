"""MP4 videos of evaluation episodes, rendered in a child process that never imports TensorFlow.

MuJoCo's EGL renderer crashes (SIGSEGV) in a process that has loaded TensorFlow: both carry
LLVM, and Mesa's software rasteriser picks up the wrong one. So an episode is recorded as its
reset seed and its actions, and `python -m smoothie_tf.video` replays it in a fresh process
(MuJoCo is deterministic: the same seed and actions give the same states) and writes the MP4.

Offscreen rendering needs an OpenGL backend: MUJOCO_GL=egl (Mesa's libEGL, Debian package
libegl1 with libgl1-mesa-dri) is used unless MUJOCO_GL is already set. `render_problem` tells,
before any episode and without rendering, whether an environment can make frames at all.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import warnings
from collections.abc import Sequence

import numpy as np

DEFAULT_FPS = 125  # Hopper-v4 and its siblings advance 0.008 s of simulated time per step


class VideoError(RuntimeError):
    """The renderer failed; the message carries its last line of output."""


def render_problem(env_id: str, env_kwargs: dict | None = None) -> str | None:
    """Why episodes of `env_id` cannot be recorded, or None when they can: an environment whose
    constructor takes no `render_mode`, or that has no "rgb_array" among its metadata's render
    modes. It makes the environment with render_mode="rgb_array" and closes it without rendering
    (MuJoCo creates its OpenGL context at the first frame), so it is safe where TensorFlow is
    loaded. Raises EnvError when the environment cannot be made at all."""
    from smoothie_tf.envs import EnvError, make_env

    cannot = f"{env_id} cannot record videos: it does not render rgb_array frames"
    try:
        with warnings.catch_warnings():  # Gymnasium warns of a render mode the env does not list
            warnings.simplefilter("ignore")
            env = make_env(env_id, render_mode="rgb_array", **dict(env_kwargs or {}))
    except EnvError as error:
        if isinstance(error.__cause__, TypeError) and "render_mode" in str(error.__cause__):
            return f"{cannot} (its constructor takes no render_mode)"
        raise
    try:
        modes = list(env.metadata.get("render_modes") or [])
    finally:
        env.close()
    if "rgb_array" not in modes:
        return f"{cannot} (its render modes: {modes})"
    return None


def render_episodes(
    env_id: str,
    episodes: Sequence[dict],
    fps: int = DEFAULT_FPS,
    timeout: float | None = None,
    env_kwargs: dict | None = None,
) -> None:
    """Renders each {"seed", "actions", "path"} in one child process; raises VideoError.
    A relative path is taken from this process's working directory. `env_kwargs` (JSON values)
    go to `gymnasium.make`. `timeout` (seconds) defaults to a minute plus a second a frame, so
    that a renderer which hangs is stopped and a long evaluation is not."""
    episodes = [{**episode, "path": str(pathlib.Path(episode["path"]).absolute())} for episode in episodes]
    if timeout is None:
        timeout = 60 + sum(len(episode["actions"]) + 1 for episode in episodes)
    request = {"env_id": env_id, "env_kwargs": dict(env_kwargs or {}), "fps": fps, "episodes": episodes}
    environment = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    renderer = f"MUJOCO_GL={environment['MUJOCO_GL']}"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "smoothie_tf.video"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
            cwd=str(pathlib.Path(__file__).resolve().parent.parent),  # where `-m smoothie_tf` is found
        )
    except subprocess.TimeoutExpired as error:
        for episode in episodes:  # the video cut off midway; finished ones are kept
            _temporary(pathlib.Path(episode["path"])).unlink(missing_ok=True)
        raise VideoError(f"rendering with {renderer} took over {timeout:g} s; it was stopped") from error
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        if result.returncode < 0:
            reason = f"killed by signal {-result.returncode} ({reason})"
        raise VideoError(f"rendering with {renderer} failed: {reason}")


def _temporary(path: pathlib.Path) -> pathlib.Path:
    """Where a video is written before it is renamed to `path`."""
    return path.with_name(path.stem + ".tmp.mp4")


def _render(env_id: str, seed: int, actions: list, path: pathlib.Path, fps: int, env_kwargs: dict) -> int:
    """Replays one episode, writes its MP4 atomically; returns the number of frames."""
    import imageio.v2 as imageio

    from smoothie_tf.envs import make_env

    env = make_env(env_id, render_mode="rgb_array", **env_kwargs)
    try:
        env.reset(seed=seed)
        frames = [env.render()]
        for action in actions:
            env.step(np.asarray(action, dtype=env.action_space.dtype))
            frames.append(env.render())
    finally:
        env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    # macro_block_size 1: frames of any size are written as they are, not resized.
    imageio.mimwrite(temporary, frames, fps=fps, macro_block_size=1, ffmpeg_log_level="error")
    os.replace(temporary, path)
    return len(frames)


def main() -> None:
    warnings.filterwarnings("ignore", message=r".*is out of date\. You should consider upgrading")
    request = json.load(sys.stdin)
    for episode in request["episodes"]:
        _render(
            request["env_id"],
            int(episode["seed"]),
            episode["actions"],
            pathlib.Path(episode["path"]),
            int(request["fps"]),
            request.get("env_kwargs", {}),
        )


if __name__ == "__main__":
    main()
