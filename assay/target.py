"""The application under test: started by Assay as a real process, or already running.

``app.command`` is split like a shell line, then each word is filled in from
``{port}``, ``{host}``, ``{database_url}``, ``{dsn}``, ``{key}``,
``{jwt_secret}``, ``{log_dir}`` and ``{python}``; so are the values of ``app.env``. The
process runs in its own process group with stdout and stderr written to files
in a private temporary folder. ``AppProcess.stop`` ends the whole group
(SIGTERM, then SIGKILL), and runs on normal exit, on an exception, on
Ctrl-C and at interpreter exit.

An application that exits before it is ready, never becomes ready, or finds
its port taken raises ``AppStartError`` with its last log lines; that error is
the user's to fix, so ``assay run`` exits with status 2.

Requests carry a user's identity as the application expects it: for a
Supabase-style application an HS256 JWT signed with ``app.jwt_secret``
(``mint_jwt``).
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import hashlib
import hmac
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import httpx
from psycopg.conninfo import conninfo_to_dict

from assay.canaries import Canary, encodings, register, registered
from assay.config import Config
from assay.errors import TargetError, UsageError

__all__ = [
    "AppClient",
    "CanaryKey",
    "AppProcess",
    "AppStartError",
    "LaunchSpec",
    "Refusal",
    "conninfo_to_url",
    "free_port",
    "launch_spec",
    "mint_jwt",
    "new_canary_key",
    "redact",
    "start_app",
]

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
LOG_TAIL_LINES = 20
STOP_GRACE_SECONDS = 5.0
POLL_INTERVAL_SECONDS = 0.05
PLACEHOLDERS = (
    "port",
    "host",
    "database_url",
    "dsn",
    "key",
    "jwt_secret",
    "log_dir",
    "python",
)
PR_SET_PDEATHSIG = 1

# Processes started and not yet stopped, so interpreter exit can stop them.
_LIVE: set["AppProcess"] = set()


class AppStartError(TargetError, UsageError):
    """The application did not start, did not become ready, or lost its port.

    It is a ``UsageError`` too, because the fix is in the application or in
    ``app:`` of assay.yaml, so the CLI exits with status 2.
    """

    exit_status = 2


# Identity ---------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_jwt(
    secret: str,
    *,
    sub: str,
    email: str | None = None,
    role: str = "authenticated",
    audience: str = "authenticated",
    ttl_seconds: int = 3600,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Sign an HS256 JWT with the claims Supabase's auth server puts in one."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "role": role,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if email is not None:
        claims["email"] = email
    claims.update(extra or {})
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256)
    return signing_input + "." + _b64url(signature.digest())


# Placeholders -----------------------------------------------------------------


def conninfo_to_url(dsn: str) -> str:
    """Return a ``postgresql://`` URL for a libpq DSN (a URL is returned as is).

    A unix-socket host goes into the ``host`` query parameter, as libpq reads it.
    """
    if dsn.startswith(("postgresql://", "postgres://")):
        return dsn
    params = conninfo_to_dict(dsn)
    user = quote(str(params.pop("user", "")), safe="")
    password = params.pop("password", None)
    host = str(params.pop("host", ""))
    port = params.pop("port", None)
    dbname = quote(str(params.pop("dbname", "")), safe="")
    auth = user + (f":{quote(str(password), safe='')}" if password else "")
    authority = f"{auth}@" if auth else ""
    query: dict[str, str] = {str(k): str(v) for k, v in params.items()}
    if host.startswith("/"):
        query["host"] = host
        if port:
            query["port"] = str(port)
        netloc = authority
    else:
        netloc = authority + host + (f":{port}" if port else "")
    url = f"postgresql://{netloc}/{dbname}"
    if query:
        url += "?" + "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())
    return url


def _fill(template: str, values: Mapping[str, str], config: Config, keys: tuple) -> str:
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError) as error:
        raise config.error(
            keys,
            template,
            f"unknown or malformed placeholder ({error})",
            "Use only "
            + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            + "; write {{ and }} for literal braces",
        ) from None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


# Launch -------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchSpec:
    """A resolved start command: argv, folder, environment, port and readiness."""

    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str]
    port: int
    ready_path: str
    ready_timeout: float
    log_dir: Path
    extra_logs: tuple[Path, ...] = ()
    # The parts of the environment that Assay set, shown in messages without values.
    assay_env: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def launch_spec(
    config: Config,
    *,
    dsn: str,
    key: str = "",
    env: Mapping[str, str] | None = None,
    log_dir: Path,
    port: int | None = None,
) -> LaunchSpec:
    """Resolve ``app:`` of `config` into a LaunchSpec; bad values raise ConfigError.

    `key` is the encoded encryption key, `env` extra variables (the key
    variable, provider URLs) set before ``app.env`` is applied.
    """
    app = config.app
    if app is None or not app.command:
        raise TargetError(f"{config.file} has no app.command, so Assay cannot start it")

    if port is None:
        port = app.port if app.port else free_port()
    values = {
        "port": str(port),
        "host": HOST,
        "database_url": conninfo_to_url(dsn),
        "dsn": dsn,
        "key": key,
        "jwt_secret": app.jwt_secret or "",
        "log_dir": str(log_dir),
        "python": sys.executable,
    }

    try:
        words = shlex.split(app.command)
    except ValueError as error:
        raise config.error(
            ("app", "command"),
            app.command,
            f"cannot split the command ({error})",
            "Close the quotes in app.command",
        ) from None
    argv = tuple(_fill(word, values, config, ("app", "command")) for word in words)

    child_env = dict(os.environ)
    child_env.update(env or {})
    for name, template in app.env.items():
        child_env[name] = _fill(template, values, config, ("app", "env", name))
    child_env.setdefault("PYTHONUNBUFFERED", "1")

    cwd = config.path(app.cwd)
    if not cwd.is_dir():
        raise config.error(
            ("app", "cwd"),
            app.cwd,
            f"folder not found ({cwd})",
            "Point app.cwd at the folder the command runs in",
        )
    extra_logs = tuple(
        (cwd / _fill(path, values, config, ("app", "logs", index))).resolve()
        for index, path in enumerate(app.logs)
    )
    return LaunchSpec(
        argv=argv,
        cwd=cwd,
        env=child_env,
        port=port,
        ready_path=app.ready_path,
        ready_timeout=app.ready_timeout,
        log_dir=log_dir,
        extra_logs=extra_logs,
        assay_env=tuple(sorted(set(env or {}) | set(app.env))),
    )


def redact(text: str) -> str:
    """Replace every registered canary, in every encoding, with its redacted label."""
    for canary in registered():
        for form in encodings(canary.value).values():
            word = form.decode("latin-1")
            if word in text:
                text = text.replace(word, canary.redacted())
    return text


def _tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return []
    return text.rstrip().splitlines()[-lines:]


def _death_signal() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM if Assay dies.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


@dataclass
class Refusal:
    """The outcome of a start that was expected to fail: exit, service or neither."""

    exited: bool
    returncode: int | None
    served: bool
    seconds: float
    last_status: int | None = None


@dataclass
class AppProcess:
    """One run of the application: the process, its log files and its URL."""

    spec: LaunchSpec
    process: subprocess.Popen[bytes] | None = None
    stdout_path: Path = field(init=False)
    stderr_path: Path = field(init=False)
    last_status: int | None = None
    last_body: str = ""
    last_error: str = ""
    ready_seconds: float | None = None
    _http: httpx.Client | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.stdout_path = self.spec.log_dir / "stdout.log"
        self.stderr_path = self.spec.log_dir / "stderr.log"

    def __hash__(self) -> int:
        return id(self)

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def log_paths(self) -> list[Path]:
        """Every file the application wrote its output to."""
        return [self.stdout_path, self.stderr_path, *self.spec.extra_logs]

    def read_logs(self) -> dict[Path, bytes]:
        """Return the bytes of each log file that exists."""
        found = {}
        for path in self.log_paths:
            try:
                found[path] = path.read_bytes()
            except OSError:
                continue
        return found

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last lines of stderr and stdout, canaries redacted."""
        parts = []
        for path in self.log_paths:
            text = _tail(path, lines)
            if text:
                parts.append(f"--- {path.name} (last {len(text)} lines) ---")
                parts.extend(text)
        return redact("\n".join(parts)) if parts else "(the application wrote nothing)"

    # Start and readiness --------------------------------------------------------

    def start(self) -> None:
        """Spawn the command in a new process group, its output going to files."""
        if self.spec.port and port_in_use(self.spec.port):
            raise AppStartError(
                f"port {self.spec.port} on {HOST} is already in use by another "
                "process, so the application cannot listen on it. Stop that process "
                "or remove app.port to let Assay pick a free port"
            )
        self.spec.log_dir.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            try:
                self.process = subprocess.Popen(
                    self.spec.argv,
                    cwd=self.spec.cwd,
                    env=self.spec.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=_death_signal,
                )
            except OSError as error:
                raise AppStartError(
                    f"could not run {shlex.join(self.spec.argv[:1])} in "
                    f"{self.spec.cwd}: {error.strerror}. Fix app.command"
                ) from None
        _LIVE.add(self)
        logger.info(
            "started the application (pid %d) on port %d: %s",
            self.process.pid,
            self.spec.port,
            self.spec.argv[0],
        )

    def poll_ready(self) -> bool:
        """Make one readiness request; return True on a 2xx status."""
        if self._http is None:
            # One client for all polls: building one loads the CA bundle each time.
            self._http = httpx.Client(timeout=1.0)
        try:
            response = self._http.get(self.url + self.spec.ready_path)
        except httpx.HTTPError as error:
            self.last_error = f"{type(error).__name__}: {error}"
            return False
        self.last_status = response.status_code
        self.last_body = response.text[:300]
        return 200 <= response.status_code < 300

    def wait_ready(self) -> float:
        """Poll the readiness path until 2xx; return the seconds it took.

        Raises AppStartError (and stops the process) when the process exits
        first or the timeout passes.
        """
        started = time.monotonic()
        deadline = started + self.spec.ready_timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise self._fail(
                    f"the application exited with status {self.process.returncode} "
                    f"before GET {self.spec.ready_path} answered"
                )
            if self.poll_ready():
                self.ready_seconds = time.monotonic() - started
                logger.info(
                    "the application returned 2xx to GET %s after %.2f s",
                    self.spec.ready_path,
                    self.ready_seconds,
                )
                return self.ready_seconds
            if time.monotonic() >= deadline:
                raise self._fail(
                    f"timed out after {self.spec.ready_timeout:g} s waiting for GET "
                    f"{self.url}{self.spec.ready_path} to return a 2xx status; "
                    f"{self._last_seen()}"
                )
            time.sleep(POLL_INTERVAL_SECONDS)

    def wait_refusal(self, timeout: float | None = None) -> Refusal:
        """Wait for an application expected to refuse to start; report what it did.

        Returns when the process exits, when it serves the readiness path, or
        when `timeout` passes with neither.
        """
        started = time.monotonic()
        deadline = started + (timeout or self.spec.ready_timeout)
        while time.monotonic() < deadline:
            code = self.process.poll() if self.process else None
            if code is not None:
                return Refusal(True, code, False, time.monotonic() - started)
            if self.poll_ready():
                return Refusal(
                    False, None, True, time.monotonic() - started, self.last_status
                )
            time.sleep(POLL_INTERVAL_SECONDS)
        return Refusal(False, None, False, time.monotonic() - started, self.last_status)

    def _last_seen(self) -> str:
        if self.last_status is not None:
            return f"last response: {self.last_status} {self.last_body!r}"
        return f"last error: {self.last_error or 'none'}"

    def _fail(self, reason: str) -> AppStartError:
        self.stop()
        return AppStartError(
            f"{reason}. Command: {shlex.join(self.spec.argv)} (in {self.spec.cwd}). "
            f"Run it by hand to see why, or fix app.command, app.ready_path or "
            f"app.ready_timeout.\n{self.tail()}"
        )

    # Stop ----------------------------------------------------------------------

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """End the process group: SIGTERM, then SIGKILL after a grace period."""
        _LIVE.discard(self)
        if self._http is not None:
            self._http.close()
            self._http = None
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("the application ignored SIGTERM; sending SIGKILL")
                self._signal_group(signal.SIGKILL)
                process.wait(STOP_GRACE_SECONDS)
            logger.info("stopped the application (pid %d)", process.pid)
        # Children that outlived the leader still belong to its group.
        self._signal_group(signal.SIGKILL)
        return process.returncode

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def remove_logs(self) -> None:
        """Delete the log folder; the logs may hold leaked canary values."""
        remove_log_dir(self.spec.log_dir)

    def __enter__(self) -> "AppProcess":
        """Start (unless started) and wait until ready; clean up if either fails."""
        try:
            if self.process is None:
                self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            self.remove_logs()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.remove_logs()


@atexit.register
def _stop_all() -> None:
    for app in list(_LIVE):
        app.stop()


# Client ----------------------------------------------------------------------------


class AppClient:
    """A client for the application under test, used by checks.

    `url` is the base URL; `as_user(user)` returns the headers that make a
    request act as a seeded user; `request` sends one request. `process` is
    None for an application someone else started (``app.url``), which then
    has no log files.
    """

    def __init__(
        self,
        url: str,
        *,
        jwt_secret: str | None,
        process: AppProcess | None = None,
        dsn: str | None = None,
        seed: Any = None,
        key: bytes | None = None,
        providers: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.jwt_secret = jwt_secret
        self.process = process
        self.dsn = dsn
        self.seed = seed
        self.key = key
        self.providers = dict(providers or {})
        self.http = httpx.Client(
            base_url=self.url, timeout=10.0, follow_redirects=False
        )

    @property
    def started_by_assay(self) -> bool:
        return self.process is not None

    @property
    def log_paths(self) -> list[Path]:
        return self.process.log_paths if self.process else []

    def token_for(self, user: Any) -> str:
        """Mint a JWT for a seeded user (anything with `id` and `email`)."""
        if not self.jwt_secret:
            raise TargetError(
                "app.jwt_secret is not set, so Assay cannot sign a user's JWT; set it "
                "to the secret the application verifies tokens with"
            )
        return mint_jwt(self.jwt_secret, sub=str(user.id), email=user.email)

    def as_user(self, user: Any) -> dict[str, str]:
        """Return the headers that make a request act as `user`."""
        return {"Authorization": f"Bearer {self.token_for(user)}"}

    def request(
        self, method: str, path: str, *, user: Any = None, **kwargs: Any
    ) -> httpx.Response:
        """Send one request, as `user` when given; other arguments go to httpx."""
        headers = dict(kwargs.pop("headers", None) or {})
        if user is not None:
            headers.update(self.as_user(user))
        return self.http.request(method, path, headers=headers, **kwargs)

    def close(self) -> None:
        self.http.close()


def make_log_dir() -> Path:
    """Create the private folder for one application run's output."""
    return Path(tempfile.mkdtemp(prefix="assay-app-"))


def remove_log_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# Keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryKey:
    """An encryption key Assay chose, registered as a canary in each text form."""

    raw: bytes = field(repr=False)
    encoded: str = field(repr=False)
    label: str = "encryption key"

    def redacted(self) -> str:
        return f"<key canary {self.label}>"


def new_canary_key(
    encoding: str = "base64", *, length: int = 32, label: str = "encryption key"
) -> CanaryKey:
    """Make a random key of `length` bytes, encode it, and register its forms.

    ``raw`` keys are printable (an environment variable cannot hold NUL), so
    they are drawn from the URL-safe alphabet.
    """
    if encoding == "raw":
        raw = secrets.token_urlsafe(length)[:length].encode()
    else:
        raw = secrets.token_bytes(length)
    if encoding == "hex":
        encoded = raw.hex()
    elif encoding == "raw":
        encoded = raw.decode()
    else:
        encoded = base64.b64encode(raw).decode()
    # The run searches its own output for every registered value; the text forms
    # cover what a leak of raw key bytes turns into in a text file.
    for form, text in (
        ("base64", base64.b64encode(raw).decode()),
        ("hex", raw.hex()),
        ("base64url", base64.urlsafe_b64encode(raw).decode().rstrip("=")),
    ):
        register(Canary(value=text, kind="key", label=f"{label} ({form})"))
    if encoding == "raw":
        register(Canary(value=encoded, kind="key", label=f"{label} (raw)"))
    return CanaryKey(raw=raw, encoded=encoded, label=label)


def check_app_config(config: Config) -> None:
    """Reject an app section that names neither or both of command and url."""
    app = config.app
    if app is None:
        return
    if bool(app.command) == bool(app.url):
        raise config.error(
            ("app",),
            None,
            "app needs exactly one of command and url",
            "Give command (Assay starts the application) or url (it is "
            "already running), not both",
        )
    if not app.ready_path.startswith("/"):
        raise config.error(
            ("app", "ready_path"),
            app.ready_path,
            "the path must start with /",
            f"Write /{app.ready_path}",
        )
    if app.ready_timeout <= 0:
        raise config.error(
            ("app", "ready_timeout"),
            app.ready_timeout,
            "the timeout must be positive",
            "Give the seconds to wait for readiness, e.g. 20",
        )


def start_app(
    config: Config,
    *,
    dsn: str,
    key: CanaryKey | None,
    provider_urls: Mapping[str, str],
    extra_env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> AppProcess:
    """Spawn the application with Assay's key and provider URLs; do not wait.

    The caller waits with ``wait_ready`` (or ``wait_refusal``) and must call
    ``stop``; the log folder is removed by ``AppProcess.remove_logs``.
    """
    check_app_config(config)
    env: dict[str, str] = {}
    if key is not None and config.encryption is not None:
        env[config.encryption.key_env] = key.encoded
    for provider, variable in config.app.providers.items():
        if provider not in provider_urls:
            raise config.error(
                ("app", "providers", provider),
                variable,
                "no provider fake by this name",
                "Use one of " + ", ".join(sorted(provider_urls)),
            )
        env[variable] = provider_urls[provider]
    env.update(extra_env or {})
    log_dir = make_log_dir()
    try:
        spec = launch_spec(
            config,
            dsn=dsn,
            key=key.encoded if key else "",
            env=env,
            log_dir=log_dir,
            port=port,
        )
        process = AppProcess(spec)
        process.start()
    except BaseException:
        remove_log_dir(log_dir)
        raise
    return process
