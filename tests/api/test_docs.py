"""/docs and /redoc work offline: every script, style and icon they load is Mailroom's own."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest

from mailroom.api.docs import ASSETS


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_a_docs_page_loads_nothing_from_elsewhere(
    anonymous: httpx.AsyncClient, page: str
) -> None:
    response = await anonymous.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    loaded = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert loaded, response.text
    assert not [url for url in loaded if "//" in url], loaded  # no CDN, no fonts service
    for url in loaded:
        if url.startswith("/docs-assets/"):
            asset = await anonymous.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["cache-control"] == "public, max-age=86400"
            assert asset.headers["x-content-type-options"] == "nosniff"
    assert "/openapi.json" in response.text


async def test_the_assets_have_the_expected_types(anonymous: httpx.AsyncClient) -> None:
    types = {
        "/docs-assets/swagger-ui/swagger-ui-bundle.js": "javascript",
        "/docs-assets/swagger-ui/swagger-ui.css": "text/css",
        "/docs-assets/redoc/redoc.standalone.js": "javascript",
    }
    for url, kind in types.items():
        response = await anonymous.get(url)
        assert response.status_code == 200, url
        assert kind in response.headers["content-type"], (url, response.headers)
    assert (await anonymous.get("/docs-assets/../settings.py")).status_code == 404


def test_the_vendored_files_are_the_ones_recorded_with_their_licences() -> None:
    recorded = {}
    for line in (ASSETS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        recorded[name.removeprefix("./")] = digest
    present = {
        str(path.relative_to(ASSETS)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in ASSETS.rglob("*")
        if path.is_file() and path.name != "SHA256SUMS"
    }
    assert present == recorded
    assert {"swagger-ui/LICENSE", "swagger-ui/NOTICE", "redoc/LICENSE"} <= set(present)
