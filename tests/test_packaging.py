"""pyproject.toml: `pip install .` and `pip install -e .` give smoothie_tf alone, importable from
outside the checkout; the wheel holds the library and nothing else of the checkout; the
dependencies are requirements.txt's pins.

The builds run without network (--no-build-isolation), with the setuptools of this environment,
on a copy of the checkout: a build writes build/ and smoothie_tf.egg-info/ into the tree it builds.
"""

import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from small_runs import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMPORT_CHECK = (
    "import json, sys, smoothie_tf, smoothie_tf.agents; print(json.dumps([smoothie_tf.__file__, sys.path]))"
)


def missing_build_backend() -> str | None:
    """Why this environment cannot build the project offline, or None when it can."""
    # pip's default when pyproject.toml has no [build-system].
    requires = PYPROJECT.get("build-system", {}).get("requires", ["setuptools>=40.8.0"])
    (backend,) = (Requirement(r) for r in requires)
    try:
        version = importlib.metadata.version(backend.name)
    except importlib.metadata.PackageNotFoundError:
        return f"{backend.name} is not installed, and the builds here run without network"
    if not backend.specifier.contains(version):
        return (
            f"{backend.name} {version} is installed and pyproject.toml's [build-system] needs {backend}; "
            "the builds here run without network"
        )
    return None


needs_build_backend = pytest.mark.skipif(
    missing_build_backend() is not None, reason=str(missing_build_backend())
)


def pip(python: str, *args: str, cwd: pathlib.Path) -> None:
    command = [python, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def import_outside(python: str, cwd: pathlib.Path, **environment: str) -> tuple[pathlib.Path, list[str]]:
    """(smoothie_tf.__file__, sys.path) in a fresh process started in `cwd`, with `environment`
    (PYTHONPATH as given there, or none)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env |= {"TF_CPP_MIN_LOG_LEVEL": "3", **environment}
    result = subprocess.run(
        [python, "-c", IMPORT_CHECK], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    file, path = json.loads(result.stdout.strip().splitlines()[-1])
    return pathlib.Path(file), path


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> pathlib.Path:
    """A copy of the checkout's files (its other top-level folders included), without the
    environment, git data, caches or runs."""
    copy = tmp_path_factory.mktemp("checkout") / "smoothie_tf_checkout"
    ignored = shutil.ignore_patterns(
        ".venv", ".git", "runs", "tmp", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
    )
    shutil.copytree(ROOT, copy, ignore=ignored)
    return copy


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> pathlib.Path:
    """An empty working directory away from the checkout and its copy."""
    return tmp_path_factory.mktemp("elsewhere")


@needs_build_backend
def test_the_wheel_holds_smoothie_tf_and_nothing_else_of_the_checkout(checkout, tmp_path):
    pip(
        sys.executable,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        str(tmp_path),
        ".",
        cwd=checkout,
    )
    (wheel,) = tmp_path.glob("smoothie_tf-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read("smoothie_tf-0.1.0.dist-info/METADATA").decode()
    assert {name.split("/")[0] for name in names} == {"smoothie_tf", "smoothie_tf-0.1.0.dist-info"}
    sources = {str(p.relative_to(checkout)) for p in (checkout / "smoothie_tf").rglob("*.py")}
    assert {name for name in names if name.endswith(".py")} == sources
    assert {"smoothie_tf/agents/factory.py", "smoothie_tf/training.py"} <= sources
    assert "smoothie_tf-0.1.0.dist-info/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "Requires-Dist: tensorflow~=2.21.0" in metadata.splitlines()


@needs_build_backend
def test_pip_install_into_a_target_imports_from_there(checkout, outside, tmp_path):
    target = tmp_path / "site"
    pip(
        sys.executable,
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--target",
        str(target),
        ".",
        cwd=checkout,
    )
    assert sorted(p.name for p in target.iterdir()) == ["smoothie_tf", "smoothie_tf-0.1.0.dist-info"]
    file, _ = import_outside(sys.executable, outside, PYTHONPATH=str(target))
    assert file == target / "smoothie_tf" / "__init__.py"


@needs_build_backend
def test_editable_install_into_a_fresh_venv_imports_the_checkout(checkout, outside, tmp_path):
    """The venv sees this environment's packages (TensorFlow, pip, setuptools) through a .pth
    file: with --system-site-packages it would see the base interpreter's, not those of the venv
    running the tests."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    venv_site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = [path for path in sys.path if pathlib.Path(path).name in ("site-packages", "dist-packages")]
    pathlib.Path(venv_site, "outer_environment.pth").write_text("\n".join(ours) + "\n")
    pip(python, "install", "--no-deps", "--no-build-isolation", "--editable", ".", cwd=checkout)
    file, path = import_outside(python, outside)
    assert file == checkout / "smoothie_tf" / "__init__.py"
    assert str(checkout) not in path and str(ROOT) not in path  # smoothie_tf alone is mapped in
    # Editable: a module added to the checkout afterwards imports without reinstalling.
    (checkout / "smoothie_tf" / "editable_probe.py").write_text("VALUE = 17\n")
    try:
        probe = subprocess.run(
            [python, "-c", "from smoothie_tf.editable_probe import VALUE; print(VALUE)"],
            capture_output=True,
            text=True,
            cwd=outside,
            timeout=120,
        )
    finally:
        (checkout / "smoothie_tf" / "editable_probe.py").unlink()
    assert probe.stdout.strip() == "17", probe.stderr


def requirement_lines() -> list[Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [Requirement(line.split("#", 1)[0]) for line in lines if line.split("#", 1)[0].strip()]


def test_the_build_backend_is_pinned_in_requirements():
    """Each [build-system] requirement has an exact pin in requirements.txt that satisfies it, so
    the environment bin/* installs from requirements.txt can build the package offline. The build
    tests above skip in an environment that cannot; without the pin they would skip silently."""
    build = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert build, "pyproject.toml's [build-system] requires nothing"
    pins = {canonicalize_name(r.name): r for r in requirement_lines()}
    for requirement in build:
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement} ([build-system]) is not pinned in requirements.txt"
        versions = [spec.version for spec in pin.specifier if spec.operator == "=="]
        assert len(versions) == 1, pin
        assert requirement.specifier.contains(Version(versions[0])), (pin, requirement)


def test_dependencies_are_the_requirements_pins_widened_to_patch_releases():
    """Each pin X==A.B.C of requirements.txt is declared as X~=A.B.C (>= A.B.C, < A.(B+1)), in the
    dependencies or an extra, with the same extras; nothing else is declared. A pin of the build
    backend (what an offline build needs in the environment) must satisfy [build-system] instead."""
    project = PYPROJECT["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    by_name = {canonicalize_name(r.name): r for r in declared}
    assert len(by_name) == len(declared), "a package is declared twice"
    build = {canonicalize_name(r.name): r for r in map(Requirement, PYPROJECT["build-system"]["requires"])}
    pins = {canonicalize_name(r.name): r for r in requirement_lines()}
    runtime_pins = {name: pin for name, pin in pins.items() if name not in build}
    assert set(by_name) == set(runtime_pins), (
        f"requirements.txt only: {sorted(set(runtime_pins) - set(by_name))}; "
        f"pyproject.toml only: {sorted(set(by_name) - set(runtime_pins))}"
    )
    for name, pin in pins.items():
        (version,) = (spec.version for spec in pin.specifier if spec.operator == "==")
        if name in build:
            assert build[name].specifier.contains(Version(version)), (pin, build[name])
            continue
        assert str(by_name[name].specifier) == f"~={version}", name
        assert by_name[name].extras == pin.extras, name
        assert by_name[name].specifier.contains(Version(version))
