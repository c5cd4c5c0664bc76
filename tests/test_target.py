"""The application harness: placeholders, readiness, early exit, stopping, JWTs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from pathlib import Path

import pytest

from assay.config import load_config
from assay.errors import ConfigError, UsageError
from assay.target import (
    AppStartError,
    CanaryKey,
    conninfo_to_url,
    mint_jwt,
    new_canary_key,
    start_app,
)

# A tiny HTTP server: serves /health after an optional delay, and can start a
# grandchild that sleeps, to prove the whole process group is stopped.
SERVER = """\
import http.server, os, subprocess, sys, time
port = int(sys.argv[1])
delay = float(os.environ.get("DELAY", "0"))
if os.environ.get("CHILD_PID_FILE"):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open(os.environ["CHILD_PID_FILE"], "w").write(str(child.pid))
print("server starting on", port, flush=True)
print("key is", os.environ.get("KEY_VAR", ""), file=sys.stderr, flush=True)
time.sleep(delay)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def config_for(tmp_path: Path, app: str) -> object:
    (tmp_path / "server.py").write_text(SERVER)
    path = tmp_path / "assay.yaml"
    path.write_text(app)
    return load_config(path)


def app_yaml(command: str = "{python} server.py {port}", extra: str = "") -> str:
    return (
        "app:\n"
        f'  command: "{command}"\n'
        "  ready_timeout: 5\n"
        "  env:\n"
        "    KEY_VAR: '{key}'\n"
        f"{extra}"
        "encryption:\n"
        "  key_env: APP_KEY\n"
    )


def test_app_starts_ready_and_stops(tmp_path):
    config = config_for(tmp_path, app_yaml())
    process = start_app(config, dsn="dbname=x", key=None, provider_urls={})
    try:
        seconds = process.wait_ready()
        assert seconds < 5
        assert process.alive()
    finally:
        process.stop()
    assert not process.alive()
    assert b"server starting" in process.stdout_path.read_bytes()
    process.remove_logs()
    assert not process.spec.log_dir.exists()


def test_key_reaches_env_and_placeholder(tmp_path):
    config = config_for(tmp_path, app_yaml())
    key = new_canary_key("hex")
    with start_app(config, dsn="dbname=x", key=key, provider_urls={}) as process:
        assert process.spec.env["APP_KEY"] == key.encoded
        assert process.spec.env["KEY_VAR"] == key.encoded


def test_stop_ends_grandchildren(tmp_path):
    config = config_for(tmp_path, app_yaml())
    pid_file = tmp_path / "child.pid"
    process = start_app(
        config,
        dsn="dbname=x",
        key=None,
        provider_urls={},
        extra_env={"CHILD_PID_FILE": str(pid_file)},
    )
    process.wait_ready()
    child = int(pid_file.read_text())
    process.stop()
    process.remove_logs()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _running(child):
        time.sleep(0.05)
    assert not _running(child)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.is_file() and status.read_text().split()[2] != "Z"


def test_early_exit_shows_log_tail(tmp_path):
    command = (
        "{python} -c 'import sys; "
        'print(\\"no database\\", file=sys.stderr); sys.exit(4)\''
    )
    config = config_for(tmp_path, app_yaml(command))
    process = start_app(config, dsn="dbname=x", key=None, provider_urls={})
    with pytest.raises(AppStartError) as raised:
        process.wait_ready()
    process.remove_logs()
    message = str(raised.value)
    assert "exited with status 4" in message
    assert "no database" in message
    assert raised.value.exit_status == 2
    assert isinstance(raised.value, UsageError)


def test_never_ready_times_out(tmp_path):
    config = config_for(
        tmp_path, app_yaml(extra="  ready_path: /missing\n").replace("5", "1", 1)
    )
    process = start_app(config, dsn="dbname=x", key=None, provider_urls={})
    with pytest.raises(AppStartError) as raised:
        process.wait_ready()
    process.remove_logs()
    message = str(raised.value)
    assert "timed out after 1 s waiting for GET" in message
    assert "last response: 404" in message
    assert not process.alive()


def test_log_tail_redacts_key(tmp_path):
    command = (
        "{python} -c 'import os, sys; print(os.environ[\\\"APP_KEY\\\"]); sys.exit(1)'"
    )
    config = config_for(tmp_path, app_yaml(command))
    key = new_canary_key()
    process = start_app(config, dsn="dbname=x", key=key, provider_urls={})
    with pytest.raises(AppStartError) as raised:
        process.wait_ready()
    process.remove_logs()
    assert key.encoded not in str(raised.value)
    assert "<key canary encryption key (base64)>" in str(raised.value)


def test_keyboard_interrupt_stops_app(tmp_path, monkeypatch):
    config = config_for(tmp_path, app_yaml())
    process = start_app(
        config, dsn="dbname=x", key=None, provider_urls={}, extra_env={"DELAY": "30"}
    )

    def interrupt() -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(process, "poll_ready", interrupt)
    with pytest.raises(KeyboardInterrupt):
        with process:
            pass
    assert not process.alive()
    assert not process.spec.log_dir.exists()


def test_wrong_key_refusal_observed(tmp_path):
    command = "{python} -c 'import sys; sys.exit(2)'"
    config = config_for(tmp_path, app_yaml(command))
    process = start_app(config, dsn="dbname=x", key=None, provider_urls={})
    refusal = process.wait_refusal(5)
    process.stop()
    process.remove_logs()
    assert refusal.exited
    assert refusal.returncode == 2
    assert not refusal.served


def test_unknown_placeholder_names_line(tmp_path):
    config = config_for(tmp_path, app_yaml("{python} server.py {prot}"))
    with pytest.raises(ConfigError) as raised:
        start_app(config, dsn="dbname=x", key=None, provider_urls={})
    assert ":2: app.command=" in str(raised.value)
    assert "{port}" in str(raised.value)


def test_command_and_url_both_rejected(tmp_path):
    config = config_for(tmp_path, app_yaml(extra="  url: http://127.0.0.1:1\n"))
    with pytest.raises(ConfigError, match="exactly one of command and url"):
        start_app(config, dsn="dbname=x", key=None, provider_urls={})


def test_missing_program_is_start_error(tmp_path):
    config = config_for(tmp_path, app_yaml("no-such-program-assay {port}"))
    with pytest.raises(AppStartError, match="could not run"):
        start_app(config, dsn="dbname=x", key=None, provider_urls={})


def test_conninfo_becomes_socket_url():
    url = conninfo_to_url("host=/tmp/sock port=5433 user=postgres dbname=app_1")
    assert url == "postgresql://postgres@/app_1?host=/tmp/sock&port=5433"


def test_conninfo_with_tcp_host():
    url = conninfo_to_url("host=localhost port=5432 user=u password=p@ss dbname=d")
    assert url == "postgresql://u:p%40ss@localhost:5432/d"


def test_jwt_verifies_with_hs256():
    token = mint_jwt("s3cret", sub="user-1", email="a@example.test")
    header, payload, signature = token.split(".")
    expected = hmac.new(b"s3cret", f"{header}.{payload}".encode(), hashlib.sha256)
    padded = signature + "=" * (-len(signature) % 4)
    assert base64.urlsafe_b64decode(padded) == expected.digest()
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == "user-1"
    assert claims["role"] == "authenticated"
    assert claims["aud"] == "authenticated"
    assert claims["email"] == "a@example.test"
    assert claims["exp"] > time.time()


def test_acme_accepts_minted_jwt():
    sys.path.insert(
        0, str(Path(__file__).resolve().parent.parent / "examples" / "acme")
    )
    try:
        from acme.auth import AuthError, verify_jwt
    finally:
        sys.path.pop(0)
    token = mint_jwt("s3cret", sub="user-1")
    assert verify_jwt(token, "s3cret")["sub"] == "user-1"
    with pytest.raises(AuthError):
        verify_jwt(token, "other")


def test_canary_key_lengths():
    key = new_canary_key("base64", length=16)
    assert isinstance(key, CanaryKey)
    assert len(key.raw) == 16
    assert base64.b64decode(key.encoded) == key.raw
    assert len(new_canary_key("raw").encoded) == 32
    assert bytes.fromhex(new_canary_key("hex").encoded)
