"""What bin/bandit and bin/lqr share: both methods trained for several seeds, each run in
`<logdir>/<agent>/seed<N>` from the method's hparams file with the same overrides.

Everything that can refuse the command does so before any training (exit 2, one line): the
methods asked for, the figure's path, the run directories' paths, the hparams, and a run
directory holding another run. `training_errors` maps what a run raises to the commands' exit
codes."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Callable, Sequence

METHODS = ("smoothie", "ddpg")
Fail = Callable[[str, int], None]  # prints one line and exits with the code


def run_dir(root: pathlib.Path, agent: str, seed: int) -> pathlib.Path:
    return root / agent / f"seed{seed}"


def checked_configs(
    hparams_files: Callable[[str], pathlib.Path],
    agents: Sequence[str],
    seeds: int,
    logdir: str,
    out: str,
    overrides: Sequence[str],
    fail: Fail,
) -> tuple[pathlib.Path, dict]:
    """(root of the runs, agent -> its validated hparams: `hparams_files(agent)` with the
    overrides), in the order asked, duplicates dropped; `fail`s on an unknown method, a figure or
    run directory that cannot be written, or bad hparams. Imports no TensorFlow, so a refusal is
    quick."""
    from smoothie_tf import hparams as hparams_lib
    from smoothie_tf.startup import output_dir_problem, output_file_problem

    unknown = sorted(set(agents) - set(METHODS))
    if unknown or not agents:
        fail(f"--agents takes smoothie and/or ddpg, got {','.join(agents) or 'nothing'}", 2)
    agents = list(dict.fromkeys(agents))
    problem = output_file_problem(out)
    if problem is not None:
        fail(f"--out: {problem}", 2)
    root = pathlib.Path(logdir)
    runs = [run_dir(root, agent, seed) for agent in agents for seed in range(seeds)]
    problem = next(filter(None, map(output_dir_problem, [root, *runs])), None)
    if problem is not None:
        fail(f"--logdir: {problem}", 2)
    configs = {}
    try:
        for agent in agents:
            hp = hparams_lib.load(hparams_files(agent))
            configs[agent] = hparams_lib.apply_overrides(hp, overrides)
            hparams_lib.validate(configs[agent])
    except hparams_lib.HParamsError as error:
        fail(str(error), 2)
    return root, configs


def check_run_dirs(root: pathlib.Path, configs: dict, seeds: int, env_id: str, fail: Fail) -> None:
    """`fail`s (exit 2) when any run directory holds another run, before any of them trains."""
    from smoothie_tf.run_dirs import RunConfigError, check_logdir, resolved_config

    try:
        for agent, hp in configs.items():
            for seed in range(seeds):
                check_logdir(run_dir(root, agent, seed), resolved_config(hp, env_id, seed))
    except RunConfigError as error:
        fail(str(error), 2)


@contextlib.contextmanager
def training_errors(fail: Fail):
    """A run's errors as the commands' exit codes: a logdir or checkpoint that cannot be used 2,
    a stop by SIGINT/SIGTERM (checkpoint saved) 130, a non-finite loss or weights 1."""
    from smoothie_tf.checkpoints import CheckpointError
    from smoothie_tf.training import Interrupted, NonFiniteLossError, RunConfigError

    try:
        yield
    except (RunConfigError, CheckpointError) as error:
        fail(str(error), 2)
    except Interrupted as error:
        fail(f"interrupted: {error}", 130)
    except NonFiniteLossError as error:
        fail(str(error), 1)
