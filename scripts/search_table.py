#!/usr/bin/env python3
"""A finished search as a markdown table, and its best configuration as an hparams file.

    .venv/bin/python scripts/search_table.py SEARCH_DIR --out=results/NAME.md [--best=results/NAME_best.json]

Reads `SEARCH_DIR/search.json` (the search's request) and `SEARCH_DIR/trials.csv` (bin/search's
table) and writes one row per configuration, best first: its rank, trial, status, score, final
evaluation return and the searched hparams. The score column is named after the score the
search ranked by. With --best, copies `SEARCH_DIR/best_hparams.json`. Standard library only.
Exit codes: 0 written, 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
import shutil
import sys


def fail(message: str) -> None:
    print(f"search_table.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def number(text: str, digits: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return "–"
    return "–" if math.isnan(value) else format(value, digits)


def table(search: dict, rows: list[dict]) -> str:
    keys = list(search["space"])
    header = ["rank", "trial", "status", f"score ({search['score']})", "final return", *keys]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [
            row["rank"],
            row["trial_id"],
            row["status"],
            number(row["score"], ".1f"),
            number(row["final_return"], ".1f"),
            *(number(row[key], ".4g") for key in keys),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("search_dir", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--best", type=pathlib.Path)
    args = parser.parse_args(argv)
    request, trials = args.search_dir / "search.json", args.search_dir / "trials.csv"
    for path in (request, trials):
        if not path.is_file():
            fail(f"{path} does not exist: is {args.search_dir} a bin/search logdir?")
    best = args.search_dir / "best_hparams.json"
    if args.best and not best.is_file():
        fail(f"{best} does not exist: no trial of this search has finished")
    try:
        search = json.loads(request.read_text())
        with trials.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        text = table(search, rows)
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        fail(f"{args.search_dir} does not hold a bin/search table this script reads: {error!r}")
    for path in (args.out, args.best):
        if path is not None and not path.parent.is_dir():
            fail(f"{path.parent} is not a directory")
    args.out.write_text(text)
    if args.best:
        shutil.copyfile(best, args.best)
    print(text, end="")


if __name__ == "__main__":
    main(sys.argv[1:])
