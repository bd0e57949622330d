"""The documentation's references hold: every "docs/design.md section N" cited in the repository
names a section of docs/design.md, every Markdown file the code and documents cite is in the
repository, every repository path README.md and docs/design.md name exists, and design section
4's hparams keys are the declared ones."""

import pathlib
import re

import pytest
from small_runs import ROOT
from test_hparams import SPEC_KEYS

from smoothie_tf import hparams as hparams_lib

DESIGN = ROOT / "docs" / "design.md"
CITED_FOLDERS = ("README.md", "docs", "smoothie_tf", "tests", "results", "hparams", "bin", "scripts")
# A path under one of the repository's own folders, globs allowed (`hparams/lqr_*.json`); not a
# command's output path (`--out=results/report.png`).
FOLDERS = "smoothie_tf|tests|results|docs|hparams|scripts|bin"
REPO_PATH = re.compile(rf"(?<![\w/.=-])((?:{FOLDERS})/[\w./*-]*[\w*/])")


def design_sections() -> dict[int, str]:
    """Section number -> its text, from the '## N. Title' headings."""
    parts = re.split(r"^## (\d+)\. .*$", DESIGN.read_text(), flags=re.M)
    return {int(number): text for number, text in zip(parts[1::2], parts[2::2], strict=True)}


def cited_files() -> list:
    files = []
    for name in CITED_FOLDERS:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(path.rglob("*"))
    texts = [f for f in files if f.is_file() and f.suffix in {".py", ".md", ".sh", ""}]
    return [f for f in texts if "__pycache__" not in f.parts]


def test_design_sections_are_numbered_one_to_ten():
    assert sorted(design_sections()) == list(range(1, 11))


def test_every_cited_design_section_exists():
    sections = design_sections()
    citations = []
    for path in cited_files():
        text = path.read_text(errors="replace")
        for match in re.finditer(r"docs/design\.md\s+sections?\s+(\d+(?:(?:,\s*|\s+and\s+)\d+)*)", text):
            for number in re.findall(r"\d+", match.group(1)):
                citations.append((path.relative_to(ROOT), int(number)))
    assert len(citations) >= 20, citations  # the code cites the design throughout
    assert [c for c in citations if c[1] not in sections] == []


def test_every_cited_markdown_file_is_in_the_repository():
    """A citation such as `results/lqr.md` or `lqr.md` beside the citing file must resolve: a user
    with the repository alone can follow it."""
    in_repository = {p.name for p in ROOT.rglob("*.md") if not {".venv", "runs"} & set(p.parts)}
    cited, missing = set(), []
    # Tests and scripts name files they write; a flag's value (`--markdown=FILE.md`) is an output too.
    citing = [p for p in cited_files() if not {"tests", "scripts"} & set(p.relative_to(ROOT).parts)]
    for path in citing:
        for name in re.findall(r"(?<![\w/.=$}-])([\w/.-]*\w\.md)\b", path.read_text(errors="replace")):
            cited.add(name)
            here = [ROOT / name, path.parent / name]
            if not any(p.is_file() for p in here) and pathlib.PurePath(name).name not in in_repository:
                missing.append((str(path.relative_to(ROOT)), name))
    assert len(cited) >= 10, cited
    assert missing == []


@pytest.mark.parametrize("document", ["README.md", "docs/design.md"])
def test_every_repository_path_a_document_names_exists(document):
    text = (ROOT / document).read_text()
    named = sorted(set(REPO_PATH.findall(text)))
    assert len(named) >= 5, named
    missing = [p for p in named if not any(ROOT.glob(p.rstrip("/")))]
    assert missing == []


def test_section_4_lists_declared_hparams_keys_and_every_pinned_one():
    section = design_sections()[4]
    listing = section[section.index("- hparams keys") :]
    listed = set(re.findall(r"`([a-z][a-z0-9_]*)`", listing))
    declared = set(hparams_lib.describe())
    assert listed - declared == set()
    assert set(SPEC_KEYS) - listed == set()
