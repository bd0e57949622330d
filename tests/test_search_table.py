"""scripts/search_table.py: a search's trials.csv as a markdown table, its best configuration copied."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "search_table.py"
HEADER = "rank,trial_id,status,ranked_by,score,final_return,actor_lr,reward_scale,logdir,error\n"
ROWS = [
    "1,t_m1,done,second_half_mean,843.588,539.5,3.3648589e-06,0.063067,/runs/t/member1,\n",
    "2,t_m0,diverged,second_half_mean,nan,nan,0.00081,0.2,/runs/t/member0,\n",
    "3,u_m0,unfinished,second_half_mean,,,,,/runs/u/member0,\n",
]


def search_dir(path: pathlib.Path, best: bool = True) -> pathlib.Path:
    path.mkdir()
    space = {"actor_lr": [1e-6, 1e-3], "reward_scale": [0.01, 0.3]}
    (path / "search.json").write_text(json.dumps({"space": space, "score": "second_half_mean"}))
    (path / "trials.csv").write_text(HEADER + "".join(ROWS))
    if best:
        (path / "best_hparams.json").write_text('{"actor_lr": 3.3648589e-06}')
    return path


def run(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, arguments)], capture_output=True, text=True)


def test_the_table_lists_every_row_in_order_with_the_searched_keys(tmp_path):
    directory = search_dir(tmp_path / "search")
    out, best = tmp_path / "table.md", tmp_path / "best.json"
    result = run(directory, f"--out={out}", f"--best={best}")
    assert result.returncode == 0, result.stderr
    assert (
        out.read_text()
        == result.stdout
        == (
            "| rank | trial | status | score (second_half_mean) | final return | actor_lr | reward_scale |\n"
            "| --- | --- | --- | --- | --- | --- | --- |\n"
            "| 1 | t_m1 | done | 843.6 | 539.5 | 3.365e-06 | 0.06307 |\n"
            "| 2 | t_m0 | diverged | – | – | 0.00081 | 0.2 |\n"
            "| 3 | u_m0 | unfinished | – | – | – | – |\n"
        )
    )
    assert best.read_text() == (directory / "best_hparams.json").read_text()


@pytest.mark.parametrize(
    "damage",
    ["no_search_json", "bad_json", "missing_key", "no_best", "out_dir_missing", "best_dir_missing"],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, damage):
    directory = search_dir(tmp_path / "search", best=damage != "no_best")
    out, best = tmp_path / "table.md", tmp_path / "best.json"
    if damage == "no_search_json":
        (directory / "search.json").unlink()
    elif damage == "bad_json":
        (directory / "search.json").write_text("{not json")
    elif damage == "missing_key":
        (directory / "search.json").write_text(json.dumps({"space": {"critic_lr": [0, 1]}, "score": "last"}))
    elif damage == "out_dir_missing":
        out = tmp_path / "nowhere" / "table.md"
    elif damage == "best_dir_missing":
        best = tmp_path / "nowhere" / "best.json"
    result = run(directory, f"--out={out}", f"--best={best}")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("search_table.py: error: ") and result.stderr.count("\n") == 1
    assert not out.exists() and not best.exists()
