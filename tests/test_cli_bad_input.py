"""Bad input typed at the `assay` command line: each case runs the real CLI.

Every case asserts the exit status (2 for bad input), the whole message line
that Assay prints, and that no traceback is printed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from assay_testing import copy_acme_migrations, run_assay, write_config


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


def test_report_dir_not_empty(project: Path):
    target = project / "evidence"
    target.mkdir()
    (target / "evidence.json").write_text("{}\n")
    (target / "notes.txt").write_text("left by hand\n")

    result = run_assay("run", "--report-dir", str(target), cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        f"assay: --report-dir={str(target)!r}: the folder is not empty (evidence.json, "
        "notes.txt), and the manifest would sign those files as evidence of this "
        "run. Pass a new or empty folder, or remove the old evidence first"
    ]
    assert sorted(path.name for path in target.iterdir()) == [
        "evidence.json",
        "notes.txt",
    ]


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder that no user can write, root included (chattr +i)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr is not installed, so no folder is read-only for root")
    marked = subprocess.run(
        [chattr, "+i", str(folder)], capture_output=True, text=True, check=False
    )
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


# signals --------------------------------------------------------------------


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A private TMPDIR with a short path, so PostgreSQL's socket path fits.

    It is world-writable like /tmp, because Assay running as root starts
    PostgreSQL as an unprivileged user that must reach its folder in TMPDIR.
    """
    folder = Path(tempfile.mkdtemp(prefix="assay-cli-", dir="/tmp"))
    folder.chmod(0o1777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def tagged_processes(tag: str) -> list[str]:
    """Return the command lines of live processes whose environment contains `tag`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if tag.encode() in (proc / "environ").read_bytes():
                found.append(
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except OSError:
            continue
    return found


def test_sigterm_stops_run_and_cleans_up(tmp_path: Path, short_tmp: Path):
    copy_acme_migrations(tmp_path)
    # The app never becomes ready, so the run is inside a check when SIGTERM comes.
    sleeper = "open('app-started', 'w').close(); import time; time.sleep(300)"
    write_config(
        tmp_path,
        {
            "migrations": {"path": "supabase/migrations"},
            "app": {"command": f'{{python}} -c "{sleeper}"', "ready_timeout": 300},
            "encryption": {},
        },
    )
    tag = f"ASSAY_CLI_TEST_TAG={uuid.uuid4().hex}"
    env = {**os.environ, "TMPDIR": str(short_tmp), tag.split("=")[0]: tag.split("=")[1]}
    env.pop("ASSAY_CANARY_DIR", None)
    command = [sys.executable, "-m", "assay", "run", "--controls", "TE-1"]
    command += ["--report-dir", str(tmp_path / "evidence")]
    run = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "app-started").exists():
            assert run.poll() is None, b"".join(run.communicate()).decode()
            assert time.monotonic() < deadline, "the app was not started within 120 s"
            time.sleep(0.1)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()

    assert run.returncode == 143
    assert error_lines(stderr.decode()) == ["assay: stopped by SIGTERM"]
    assert tagged_processes(tag) == []
    assert list(short_tmp.iterdir()) == []
    evidence = json.loads((tmp_path / "evidence" / "evidence.json").read_text())
    assert evidence["run"]["interrupted"] == (
        "the run was stopped (Ctrl-C or SIGTERM) before every check ran, "
        "so this evidence is incomplete"
    )


# assay lint -----------------------------------------------------------------


def test_lint_without_tenancy(project: Path):
    result = run_assay("lint", cwd=project)

    assert result.status == 2
    assert result.stdout == ""
    assert error_lines(result.stderr) == [
        "assay: assay.yaml: no tenancy section, so assay lint has no rule to run. "
        "Add a tenancy section naming the tenant column and tables (see the README)"
    ]


def test_lint_controls_without_static_rule(project: Path):
    (project / "assay.yaml").write_text(
        "tenancy:\n  column: organization_id\n  tenant_table: public.organizations\n"
    )

    result = run_assay("lint", "--controls", "TE-1,OP-1", cwd=project)

    assert result.status == 2
    assert result.stdout == ""
    assert error_lines(result.stderr) == [
        "assay: --controls='TE-1,OP-1': assay lint has no static rule for these "
        "controls. Select one of TI-1, TI-2, TI-3, TI-5, or use assay run for the "
        "others"
    ]


# assay run options ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "invalid value 0: give 1 or more processes (1 runs without xdist)"),
        ("-3", "invalid value -3: give 1 or more processes (1 runs without xdist)"),
        ("abc", "invalid value 'abc': give a whole number of processes, 1 or more"),
    ],
)
def test_run_workers_invalid(project: Path, value: str, message: str):
    result = run_assay("run", f"--workers={value}", cwd=project)

    assert result.status == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"assay run: error: argument --workers: {message}"
    )
    assert not (project / "reports").exists()


# assay.yaml values ------------------------------------------------------------


@pytest.mark.parametrize("port", [0, 65536, 99999])
def test_app_port_out_of_range(project: Path, port: int):
    (project / "assay.yaml").write_text(
        f"app:\n  command: serve --port {{port}}\n  port: {port}\n"
    )

    result = run_assay("run", cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        f"assay: assay.yaml:3: app.port={port}: a TCP port must be between 1 and "
        "65535. Give a free port, or remove app.port to let Assay pick one"
    ]


def test_app_settings_checked_before_start(project: Path):
    (project / "assay.yaml").write_text(
        "app:\n  command: serve --port {port}\n  ready_timeout: -5\n"
    )

    result = run_assay("run", cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        "assay: assay.yaml:3: app.ready_timeout=-5.0: the timeout must be positive. "
        "Give the seconds to wait for readiness, e.g. 20"
    ]
    # Rejected before pytest started: no check ran and no evidence folder exists.
    assert result.stdout == ""
    assert not (project / "reports").exists()


def test_bad_waiver_checked_before_start(project: Path):
    (project / "waivers.yaml").write_text(
        "waivers:\n"
        "  - control: TI-66\n"
        "    scope: {table: public.plans}\n"
        "    reason: global price list\n"
        "    approver: security@example.com\n"
        "    expires: 2999-01-01\n"
    )

    result = run_assay("run", cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        "assay: waivers.yaml:2: waivers.0.control='TI-66': unknown control. Known "
        "controls: DM-1, DM-2, DM-3, OP-1, OP-2, OP-3, TE-1, TE-2, TE-3, TE-4, TI-1, "
        "TI-2, TI-3, TI-4, TI-5, TI-6, WH-1, WH-2, WH-3"
    ]
    assert result.stdout == ""
    assert not (project / "reports").exists()


def test_misspelt_section_value_elided(project: Path):
    (project / "assay.yaml").write_text(
        "tenancey:\n"
        "  column: organization_id\n"
        "  tenant_table: public.organizations\n"
        "  membership: {table: public.members, user_column: user_id}\n"
    )

    result = run_assay("lint", cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        "assay: assay.yaml:1: tenancey={...}: unknown key. Did you mean 'tenancy'?"
    ]


def test_section_not_mapping_lists_keys(project: Path):
    (project / "assay.yaml").write_text("database: auto\n")

    result = run_assay("lint", cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        "assay: assay.yaml:1: database='auto': expected a mapping. Write it as "
        "key: value lines with the keys provider, url, flavor, image, bindir"
    ]


# YAML syntax ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'database:\n  provider: "auto\nmigrations:\n  path: db\n',
            "assay.yaml:5: invalid YAML: while scanning a quoted scalar that starts "
            "at line 2, found unexpected end of stream. Fix the syntax between lines "
            "2 and 5 (indentation, a missing colon or quote)",
        ),
        (
            "database:\n\tprovider: auto\n",
            "assay.yaml:2: invalid YAML: found character '\\t' that cannot start any "
            "token. Indent with spaces, because YAML does not allow tabs there",
        ),
        (
            "database:\n  provider: auto\n---\nmigrations: {}\n",
            "assay.yaml:3: invalid YAML: expected a single document in the stream "
            "that starts at line 1, but found another document. Fix the syntax "
            "between lines 1 and 3 (indentation, a missing colon or quote)",
        ),
        (
            "database\n  provider: auto\n",
            "assay.yaml:2: invalid YAML: mapping values are not allowed here. Fix "
            "the syntax at that line (indentation, a missing colon or quote)",
        ),
    ],
    ids=["unclosed-quote", "tab", "two-documents", "missing-colon"],
)
def test_yaml_syntax_error_located(project: Path, text: str, message: str):
    (project / "assay.yaml").write_text(text)

    result = run_assay("lint", cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [f"assay: {message}"]


def test_config_path_is_folder(project: Path, tmp_path_factory):
    # Outside the current folder, so the path is printed as given.
    folder = tmp_path_factory.mktemp("config-folder")

    result = run_assay("run", "--config", str(folder), cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        f"assay: {folder}: the path is a folder, not a file. Give the path of the "
        "YAML file itself"
    ]


# migrations -----------------------------------------------------------------


TENANCY_YAML = (
    "tenancy:\n"
    "  column: organization_id\n"
    "  tenant_table: public.organizations\n"
    "  membership: {table: public.members, user_column: user_id}\n"
)


def test_migrations_path_is_file(project: Path):
    (project / "init.sql").write_text("create table t (id int);\n")
    (project / "assay.yaml").write_text(
        "migrations:\n  path: init.sql\n" + TENANCY_YAML
    )

    result = run_assay("lint", cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        f"assay: assay.yaml:2: migrations.path='init.sql': is a file, not a folder "
        f"({project / 'init.sql'}). Point migrations.path at the folder holding the "
        ".sql migrations"
    ]


def test_run_tenant_table_not_created(project: Path):
    copy_acme_migrations(project)
    (project / "assay.yaml").write_text(
        "migrations:\n  path: supabase/migrations\n"
        + TENANCY_YAML.replace("public.organizations", "public.orgs")
    )

    result = run_assay(
        "run", "--controls", "TI-3", cwd=project, report_dir=project / "evidence"
    )

    message = (
        "assay.yaml:5: tenancy.tenant_table='public.orgs': no migration creates this "
        "table. Name the table whose primary key is the tenant id"
    )
    assert result.status == 2
    assert error_lines(result.stderr) == [f"assay: {message}"]
    # The same words as `assay lint`, and no TI-3 finding built on the wrong table.
    assert result.control("TI-3")["status"] == "error"
    assert result.control("TI-3")["findings"] == []
    lint = run_assay("lint", cwd=project)
    assert error_lines(lint.stderr) == [f"assay: {message}"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_retries", "-1", "0 or more"),
        ("max_wait_seconds", "-5", "0 or more"),
        ("timeout_seconds", "0", "more than 0"),
    ],
)
def test_vanta_limit_invalid(project: Path, key: str, value: str, expected: str):
    (project / "assay.yaml").write_text(
        f"vanta:\n  documents: {{report.html: doc-1}}\n  {key}: {value}\n"
    )

    result = run_assay(
        "upload", "vanta", "--dry-run", str(project / "run"), cwd=project
    )

    shown = repr(float(value)) if "seconds" in key else value
    assert result.status == 2
    assert error_lines(result.stderr) == [
        f"assay: assay.yaml:3: vanta.{key}={shown}: {key} must be {expected}. "
        f"Give {key} as a number {expected}, or remove it for the default"
    ]


# global options ---------------------------------------------------------------


def test_log_level_unknown(project: Path):
    result = run_assay("--log-level", "LOUD", "lint", cwd=project)

    assert result.status == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "assay: error: argument --log-level: invalid level 'LOUD' (from --log-level "
        "or ASSAY_LOG_LEVEL): use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )


def test_attested_unknown_control(project: Path):
    (project / "assay.yaml").write_text(
        "attested:\n"
        "  - control: OP-9\n"
        "    file: evidence/op-9.md\n"
        "    owner: platform@example.com\n"
        "    max_age_days: 90\n"
    )

    result = run_assay("run", cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        "assay: assay.yaml:2: attested.0.control='OP-9': no attested control has "
        "this id. Name one of OP-1, OP-2, OP-3"
    ]
    assert not (project / "reports").exists()


def test_control_id_as_argument(project: Path):
    result = run_assay("run", "TI-1", cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        "assay: TI-1 is a control id, but arguments after `run` go to pytest. "
        "Select controls with --controls TI-1"
    ]
    assert not (project / "reports").exists()


def test_run_membership_table_not_created(project: Path):
    copy_acme_migrations(project)
    (project / "assay.yaml").write_text(
        "migrations:\n  path: supabase/migrations\n"
        + TENANCY_YAML.replace("public.members", "public.memberz")
    )

    result = run_assay(
        "run", "--controls", "TI-3", cwd=project, report_dir=project / "evidence"
    )

    assert result.status == 2
    assert error_lines(result.stderr) == [
        "assay: assay.yaml:6: tenancy.membership.table='public.memberz': no "
        "migration creates this table. Name the table that says which user "
        "belongs to which tenant"
    ]
    assert result.control("TI-3")["status"] == "error"


# database ---------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["auto", "local"])
def test_bindir_without_binaries(project: Path, provider: str):
    copy_acme_migrations(project)
    (project / "assay.yaml").write_text(
        f"database:\n  provider: {provider}\n  bindir: /nonexistent/bin\n"
        "migrations:\n  path: supabase/migrations\n" + TENANCY_YAML
    )

    result = run_assay(
        "run", "--controls", "TI-1", cwd=project, report_dir=project / "evidence"
    )

    assert result.status == 2
    assert error_lines(result.stderr) == [
        "assay: assay.yaml:3: database.bindir='/nonexistent/bin': the folder has no "
        "executable postgres and initdb. Set it to the folder that pg_config "
        "--bindir prints, or remove it so that Assay searches"
    ]


# leftovers ------------------------------------------------------------------


def test_workers_leave_no_temp_folder(
    project: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
):
    copy_acme_migrations(project)
    (project / "assay.yaml").write_text(
        "migrations:\n  path: supabase/migrations\n" + TENANCY_YAML
    )
    monkeypatch.setenv("TMPDIR", str(short_tmp))

    result = run_assay(
        "run",
        "--workers",
        "2",
        "--controls",
        "TI-3",
        cwd=project,
        report_dir=project / "evidence",
    )

    assert result.status == 0, result.stdout + result.stderr
    assert result.control("TI-3")["status"] == "passed"
    assert list(short_tmp.iterdir()) == []


def test_database_url_not_postgres(project: Path):
    (project / "assay.yaml").write_text(
        "database:\n  provider: url\n  url: mysql://app:hunter2@db.internal/app\n"
    )

    result = run_assay("lint", cwd=project)

    assert result.status == 2
    assert error_lines(result.stderr) == [
        "assay: assay.yaml:3: database.url='mysql://app:***@db.internal/app': Assay "
        "needs PostgreSQL, not a mysql:// URL. Write it as "
        "postgresql://USER:PASSWORD@HOST:PORT/DB"
    ]
    assert "hunter2" not in result.stderr
