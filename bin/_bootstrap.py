"""Puts every bin/ command inside an environment that satisfies requirements.txt.

The active interpreter is used when it already has every pinned package at its pinned
version; otherwise the project's `.venv` is created (or refreshed when requirements.txt
changed) and the command re-executes itself inside it.
"""

import fcntl
import hashlib
import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys
import venv

ROOT = pathlib.Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".requirements.sha256"


def _pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)", line)
        if match:
            pins[match.group(1)] = match.group(3)
    return pins


def _satisfied() -> bool:
    for name, version in _pins().items():
        try:
            if importlib.metadata.version(name) != version:
                return False
        except importlib.metadata.PackageNotFoundError:
            return False
    return True


def _digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def _install_venv() -> None:
    VENV.mkdir(exist_ok=True)
    with open(VENV / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another command may be installing right now
        if STAMP.exists() and STAMP.read_text() == _digest() and VENV_PYTHON.exists():
            return
        print(
            f"Installing requirements.txt into {VENV} (first run takes a minute or two)...", file=sys.stderr
        )
        if not VENV_PYTHON.exists():
            venv.EnvBuilder(with_pip=True).create(VENV)
        pip = [str(VENV_PYTHON), "-m", "pip", "--disable-pip-version-check"]
        subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "install", "--quiet", "-r", str(REQUIREMENTS)], check=True)
        STAMP.write_text(_digest())


def ensure_environment() -> None:
    """Returns when this interpreter satisfies requirements.txt; otherwise re-executes in .venv."""
    in_project_venv = pathlib.Path(sys.prefix).resolve() == VENV.resolve()
    if in_project_venv and STAMP.exists() and STAMP.read_text() == _digest():
        return
    if not in_project_venv and _satisfied():
        return
    try:
        _install_venv()
    except (subprocess.CalledProcessError, OSError) as error:
        print(f"error: could not install requirements.txt into {VENV}: {error}", file=sys.stderr)
        sys.exit(1)
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])


def import_tensorflow_quietly() -> None:
    """TensorFlow imported with its C++ start-up messages silenced (smoothie_tf.startup)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from smoothie_tf.startup import import_tensorflow_quietly as quiet_import

    quiet_import()


HELP_ARGUMENTS = ("-h", "--help", "-help", "--helpfull", "--helpshort")


def parse_flags(argv: list[str], fail) -> list[str]:
    """The tool's absl flags parsed from argv; returns the other arguments (argv[0] first).

    --help (or -h) prints the tool's docstring and its flags, exit 0; a bad flag goes to
    `fail(message, 2)` (one line, exit 2)."""
    from absl import flags

    if any(argument in HELP_ARGUMENTS for argument in argv[1:]):
        main = sys.modules["__main__"]
        print((main.__doc__ or "").strip() + "\n\nflags:\n" + flags.FLAGS.main_module_help())
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(str(error), 2)
