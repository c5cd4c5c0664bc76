"""Smoke tests of the benchmark scripts in benchmarks/, in their quick mode.

Each script runs as a subprocess, as benchmarks/README.md describes, and
writes into a results file of its own. The tests check that the script
ends cleanly and writes its section; they assert no speed.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
PGBENCH = Path("/usr/lib/postgresql/15/bin/pgbench")

SCRIPTS = {
    "lint_rate.py": "## assay lint: statements per second (quick mode)",
    "run_time.py": (
        "## assay run: wall time and peak RSS on the reference target (quick mode)"
    ),
    "probe_rate.py": "## Cross-tenant probes per second against pgbench (quick mode)",
}


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/record.py, imported under a name no other module uses."""
    name = "assay_benchmarks_record"
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / "record.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class is built.
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_writes_section(script: str, tmp_path: Path) -> None:
    if script == "probe_rate.py" and not (PGBENCH.exists() or shutil.which("pgbench")):
        pytest.skip("pgbench is not installed")
    results = tmp_path / "results.md"
    results.write_text("# Benchmark results\n\n## Another benchmark\n\nkept\n")

    completed = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / script),
            "--quick",
            "--results",
            str(results),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    text = results.read_text()
    assert SCRIPTS[script] in text
    assert f"- command (from the repository root): `python benchmarks/{script}" in text
    assert "- machine: nproc " in text
    assert "## Another benchmark\n\nkept\n" in text


def test_write_section_replaces_own_section(record: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    results.write_text("# Results\n\n## Mine\n\nold\n\n## Theirs\n\nkept\n")

    record.write_section(results, "Mine", "new")

    assert results.read_text() == "# Results\n\n## Mine\n\nnew\n\n## Theirs\n\nkept\n"


def test_write_section_appends_new_section(record: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    results.write_text("# Results\n\n## Theirs\n\nkept\n")

    record.write_section(results, "Mine", "new")

    assert results.read_text() == "# Results\n\n## Theirs\n\nkept\n\n## Mine\n\nnew\n"


def test_write_section_creates_missing_file(record: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "results.md"

    record.write_section(results, "Mine", "new")

    text = results.read_text()
    assert text.startswith("# Benchmark results\n")
    assert text.endswith("\n\n## Mine\n\nnew\n")
