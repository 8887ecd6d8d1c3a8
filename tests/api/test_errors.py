"""Every error the framework or the code raises leaves the API in the one JSON shape."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, HTTPException

from mailroom.api.errors import install_error_handlers
from tests.api.shapes import assert_error


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "I'm a teapot", headers={"X-Why": "tea"})

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    return app


async def _get(path: str) -> httpx.Response:
    # The server error middleware answers, then re-raises for the server to log: not here.
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


async def test_another_http_error_keeps_its_status_and_headers() -> None:
    response = await _get("/teapot")
    error = assert_error(response, 418, "http_error")
    assert error["message"] == "I'm a teapot"
    assert response.headers["X-Why"] == "tea"


async def test_an_unexpected_exception_is_an_internal_error() -> None:
    response = await _get("/bug")
    error = assert_error(response, 500, "internal_error")
    assert error["message"] == "Internal server error."
    assert "a bug" not in response.text


async def test_an_unknown_path_is_not_found_and_a_wrong_method_is_405() -> None:
    assert_error(await _get("/nowhere"), 404, "not_found")
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/teapot")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"
