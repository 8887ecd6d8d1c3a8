"""Production commands never start embedded servers (only `mailroom dev` does).

`mailroom worker` keeps waiting for an unreachable database rather than exit, so
`mailroom migrate`, run before the others in a deployment, stands for them here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_an_unreachable_database_is_an_error_not_an_embedded_server(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/mailroom",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_SECURITY": "none",
        "WORKER_METRICS_PORT": "0",
        "WORKER_HEARTBEAT_FILE": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "mailroom", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Cannot reach PostgreSQL at 127.0.0.1:1" in done.stderr
    assert "embedded" not in done.stdout + done.stderr
    assert not (tmp_path / ".mailroom").exists()
