"""Bad input typed at the `assay` command line: each case runs the real CLI.

Every case asserts the exit status (2 for bad input), the whole message line
that Assay prints, and that no traceback is printed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from assay_testing import run_assay


def error_lines(stderr: str) -> list[str]:
    """Return the lines of stderr that Assay wrote itself, and reject tracebacks."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("assay: ")]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with an empty assay.yaml, which selects every default."""
    (tmp_path / "assay.yaml").write_text("")
    return tmp_path


# --report-dir ---------------------------------------------------------------


def test_report_dir_is_file(project: Path):
    target = project / "evidence"
    target.write_text("not a folder\n")

    result = run_assay("run", "--report-dir", str(target), cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        f"assay: --report-dir={str(target)!r}: the path is a file, not a folder. "
        "Pass a folder that Assay can create and write"
    ]


def test_report_dir_parent_is_file(project: Path):
    parent = project / "evidence"
    parent.write_text("not a folder\n")
    target = parent / "run-1"

    result = run_assay("run", "--report-dir", str(target), cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        f"assay: --report-dir={str(target)!r}: a parent of the folder is a file. "
        "Pass a folder that Assay can create and write"
    ]


def test_config_report_dir_is_file(project: Path):
    (project / "evidence").write_text("not a folder\n")
    (project / "assay.yaml").write_text("evidence:\n  report_dir: evidence/runs\n")

    result = run_assay("run", cwd=project)

    assert result.status == 2
    [line] = error_lines(result.stderr)
    assert line.startswith(
        "assay: assay.yaml:2: evidence.report_dir='evidence/runs': a parent of the "
        f"folder is a file: {project / 'evidence' / 'runs'}/"
    )
    assert line.endswith(
        ". Point evidence.report_dir at a folder Assay can write, or pass --report-dir"
    )


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder that no user can write, root included (chattr +i)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr is not installed, so no folder is read-only for root")
    marked = subprocess.run([chattr, "+i", str(folder)], capture_output=True, text=True)
    if marked.returncode != 0:
        pytest.skip(f"chattr +i failed on this file system: {marked.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def test_report_dir_read_only(project: Path, read_only_folder: Path):
    result = run_assay("run", "--report-dir", str(read_only_folder), cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        f"assay: --report-dir={str(read_only_folder)!r}: cannot create or write the "
        "folder (Operation not permitted). Pass a folder that Assay can create and "
        "write"
    ]
    assert list(read_only_folder.iterdir()) == []
