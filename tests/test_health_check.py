"""`mailroom health`: the container health check, for the API and for the worker."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailroom.cli import app
from mailroom.health_check import check_api, check_heartbeat
from mailroom.settings import Settings, get_settings, load_settings

runner = CliRunner()


class _Handler(BaseHTTPRequestHandler):
    status = 200
    delay = 0.0
    paths: list[str] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        time.sleep(self.delay)
        body = b'{"status":"ok"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class FakeApi:
    def __init__(self) -> None:
        class Handler(_Handler):
            paths: list[str] = []  # this server's requests only

        self.handler: type[_Handler] = Handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    yield server
    server.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def heartbeat(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No Mailroom variable from outside; the worker's heartbeat file is in tmp_path."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("PORT", raising=False)
    path = tmp_path / "worker.heartbeat"
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


# -- the API -------------------------------------------------------------------------------


def test_a_healthy_api(api: FakeApi) -> None:
    result = runner.invoke(app, ["health", "--api", "--port", str(api.port)])
    assert result.exit_code == 0, result.output
    assert "healthy" in result.output
    assert api.handler.paths == ["/health"]


def test_the_port_comes_from_port(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", str(api.port))
    assert runner.invoke(app, ["health", "--api"]).exit_code == 0


def test_an_error_status_is_unhealthy(api: FakeApi) -> None:
    api.handler.status = 503
    result = runner.invoke(app, ["health", "--api", "--port", str(api.port)])
    assert result.exit_code == 1
    assert "503" in result.output


def test_no_api_is_unhealthy(closed_port: int) -> None:
    result = runner.invoke(app, ["health", "--api", "--port", str(closed_port)])
    assert result.exit_code == 1
    assert "unhealthy" in result.output


def test_a_slow_api_is_unhealthy(api: FakeApi) -> None:
    api.handler.delay = 1.0
    problem = check_api("127.0.0.1", api.port, timeout=0.2)
    assert problem is not None and "timed out" in problem


def test_a_proxy_in_the_environment_is_not_used(
    api: FakeApi, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert check_api("127.0.0.1", api.port) is None


# -- the worker ----------------------------------------------------------------------------


def test_a_fresh_heartbeat_is_healthy(heartbeat: Path) -> None:
    heartbeat.touch()
    result = runner.invoke(app, ["health", "--worker"])
    assert result.exit_code == 0, result.output


def test_a_stale_heartbeat_is_unhealthy(heartbeat: Path) -> None:
    heartbeat.touch()
    _age(heartbeat, 60)
    result = runner.invoke(app, ["health", "--worker"])
    assert result.exit_code == 1
    assert "old" in result.output
    assert runner.invoke(app, ["health", "--worker", "--max-age", "120"]).exit_code == 0


def test_a_missing_heartbeat_is_unhealthy(heartbeat: Path) -> None:
    result = runner.invoke(app, ["health", "--worker"])
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_without_a_heartbeat_file_the_worker_cannot_be_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", "")
    assert load_settings(_env_file=None).worker_heartbeat_file is None
    result = runner.invoke(app, ["health", "--worker"])
    assert result.exit_code == 1
    assert "WORKER_HEARTBEAT_FILE" in result.output


def test_check_heartbeat_measures_the_age(heartbeat: Path) -> None:
    heartbeat.touch()
    modified = heartbeat.stat().st_mtime
    assert check_heartbeat(heartbeat, max_age=30, now=modified + 29) is None
    problem = check_heartbeat(heartbeat, max_age=30, now=modified + 31)
    assert problem is not None and "31 s old" in problem


# -- one health check for both roles (the image's HEALTHCHECK) -----------------------------


def test_with_a_heartbeat_file_the_worker_is_checked(heartbeat: Path, closed_port: int) -> None:
    heartbeat.touch()
    assert runner.invoke(app, ["health", "--port", str(closed_port)]).exit_code == 0
    _age(heartbeat, 60)
    assert runner.invoke(app, ["health", "--port", str(closed_port)]).exit_code == 1


def test_without_one_the_api_is_checked(api: FakeApi, closed_port: int) -> None:
    assert runner.invoke(app, ["health", "--port", str(api.port)]).exit_code == 0
    result = runner.invoke(app, ["health", "--port", str(closed_port)])
    assert result.exit_code == 1
    assert "GET http://127.0.0.1" in result.output


def test_a_bad_configuration_is_unhealthy_not_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Docker reserves exit code 2; a health check answers 0 or 1.
    monkeypatch.setenv("MAX_ATTEMPTS", "zero")
    result = runner.invoke(app, ["health", "--worker"])
    assert result.exit_code == 1
    assert "MAX_ATTEMPTS" in result.output
