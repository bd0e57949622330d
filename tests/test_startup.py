"""Output paths checked before the work whose result they hold (`startup.output_*_problem`)."""

import os
import pathlib

from smoothie_tf.startup import import_tensorflow_quietly, output_dir_problem, output_file_problem


def test_a_file_under_existing_or_missing_directories_can_be_written(tmp_path):
    assert output_file_problem(tmp_path / "figure.png") is None
    assert output_file_problem(tmp_path / "new" / "deeper" / "figure.PNG") is None
    (tmp_path / "old.png").write_bytes(b"")
    assert output_file_problem(tmp_path / "old.png") is None  # overwritten, as asked
    assert output_file_problem(tmp_path / "table.md", suffixes=(".md",)) is None
    assert output_file_problem(tmp_path / "anything.pdf", suffixes=()) is None


def test_a_file_with_another_suffix_is_refused(tmp_path):
    assert (
        output_file_problem(tmp_path / "figure.jpg")
        == f"must name a .png file, got {tmp_path / 'figure.jpg'}"
    )
    assert "must name a .md or .txt file" in output_file_problem(tmp_path / "t.png", suffixes=(".md", ".txt"))


def test_a_file_where_a_directory_is_or_under_a_file_is_refused(tmp_path):
    (tmp_path / "taken.png").mkdir()
    assert output_file_problem(tmp_path / "taken.png") == f"{tmp_path / 'taken.png'} is a directory"
    (tmp_path / "notes").write_text("")
    target = tmp_path / "notes" / "deeper" / "figure.png"
    assert output_file_problem(target) == f"{tmp_path / 'notes'} is a file, so {target} cannot be made"


def test_a_directory_is_refused_where_a_file_is(tmp_path):
    assert output_dir_problem(tmp_path) is None
    assert output_dir_problem(tmp_path / "new" / "run") is None
    (tmp_path / "file").write_text("")
    assert output_dir_problem(tmp_path / "file") == f"{tmp_path / 'file'} is a file, not a directory"
    assert output_dir_problem(tmp_path / "file" / "run") == (
        f"{tmp_path / 'file'} is a file, so {tmp_path / 'file' / 'run'} cannot be made"
    )


def test_a_directory_without_write_permission_is_refused(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only = tmp_path / "read_only.png"
    read_only.write_bytes(b"")
    # Permissions do not bind root, so the check is shown with os.access answering as for a user.
    monkeypatch.setattr(os, "access", lambda path, mode: pathlib.Path(path) not in (locked, read_only))
    assert output_file_problem(read_only) == f"{read_only} is not writable"
    assert output_dir_problem(locked) == f"{locked} is not writable"
    assert (
        output_dir_problem(locked / "run") == f"{locked} is not writable, so {locked / 'run'} cannot be made"
    )
    assert (
        output_file_problem(locked / "f.png")
        == f"{locked} is not writable, so {locked / 'f.png'} cannot be made"
    )
    assert output_dir_problem(tmp_path) is None
    (locked / "kept.png").write_bytes(b"")  # a writable file is overwritten in place
    assert output_file_problem(locked / "kept.png") is None


def test_tensorflow_is_imported_quietly_once(monkeypatch):
    import_tensorflow_quietly()
    redirected = []
    monkeypatch.setattr(os, "dup2", lambda *args: redirected.append(args))
    import_tensorflow_quietly()  # plotting calls it for every run's event file
    assert redirected == []
