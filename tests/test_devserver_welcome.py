"""What `mailroom dev` prints at start."""

from __future__ import annotations

from mailroom.devserver import _welcome


def test_it_prints_the_dashboards_sign_in_link() -> None:
    text = _welcome("mr_key", created=False, port=8123, inbox=True)
    assert "http://127.0.0.1:8123/dashboard/login" in text
