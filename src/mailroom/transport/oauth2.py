"""OAuth2 access tokens for SMTP XOAUTH2: from a token endpoint, or from a command.

``ClientCredentials`` asks an OAuth2 token endpoint (RFC 6749 §4.4, the client
credentials grant; Microsoft Entra ID for Office 365, any other) and keeps the token
until shortly before it expires. ``TokenCommand`` runs a command that prints one
(``gcloud auth print-access-token``, ``oauth2l fetch``, a script of your own) and keeps
it for a while. Either drops a token the SMTP server refused, so the next connection
gets a fresh one. Concurrent connections share one request. Neither ever puts a token
or a secret in an error message.
"""

from __future__ import annotations

import asyncio
import shlex
import time

import httpx

# A token is renewed this long before the endpoint says it expires, so that one handed
# to a connection still holds for the AUTH exchange.
_EXPIRY_MARGIN = 60.0
# A command says nothing of its token's lifetime: it is asked again after this long.
COMMAND_TOKEN_SECONDS = 300.0


def _now() -> float:
    return time.monotonic()


class TokenError(Exception):
    """No token could be had; the message says why (and holds no secret)."""

    def __init__(self, message: str, *, config_error: bool) -> None:
        super().__init__(message)
        # True when the endpoint or the command refused: the settings are wrong. False
        # when it could not be reached: that may clear up by itself.
        self.config_error = config_error


class _CachedTokens:
    """One token at a time, fetched once however many connections ask at the same time."""

    def __init__(self) -> None:
        self._token: str | None = None
        self._expires = 0.0  # _now()
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or _now() >= self._expires:
                token, lifetime = await self._fetch()
                self._token, self._expires = token, _now() + lifetime
            return self._token

    def invalidate(self, token: str) -> None:
        # Only the token that was refused: another connection may have replaced it already.
        if self._token == token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        """A new token and how many seconds to keep it."""
        raise NotImplementedError


class ClientCredentials(_CachedTokens):
    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self._url = url
        self._form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }
        if scope:
            self._form["scope"] = scope
        self._timeout = timeout
        super().__init__()

    async def _fetch(self) -> tuple[str, float]:
        where = f"the OAuth2 token endpoint {self._url}"
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(
                    self._url, data=self._form, headers={"Accept": "application/json"}
                )
        except httpx.HTTPError as exc:
            raise TokenError(
                f"{where} could not be reached: {type(exc).__name__}", config_error=False
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        if response.status_code != 200:
            # RFC 6749 §5.2: "error" and "error_description" say what is wrong.
            detail = " ".join(
                str(body[k])[:300] for k in ("error", "error_description") if k in body
            )
            raise TokenError(
                f"{where} answered {response.status_code}" + (f": {detail}" if detail else ""),
                config_error=400 <= response.status_code < 500,
            )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError(f"{where} answered without an access_token", config_error=True)
        lifetime = _seconds(body.get("expires_in"))
        # Renew a minute before expiry, or halfway through a lifetime shorter than two.
        return token, max(lifetime - _EXPIRY_MARGIN, lifetime / 2)


class TokenCommand(_CachedTokens):
    def __init__(
        self, command: str, *, timeout: float = 30.0, lifetime: float = COMMAND_TOKEN_SECONDS
    ) -> None:
        self._argv = shlex.split(command)
        if not self._argv:
            raise ValueError("the token command is empty")
        self._timeout = timeout
        self._lifetime = lifetime
        super().__init__()

    async def _fetch(self) -> tuple[str, float]:
        name = self._argv[0]
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise TokenError(
                f"the token command {name!r} could not be started: {exc.strerror}",
                config_error=True,
            ) from None
        try:
            async with asyncio.timeout(self._timeout):
                out, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise TokenError(
                f"the token command {name!r} printed no token within {self._timeout:g} s",
                config_error=False,
            ) from None
        # Its output is the token: never quoted, whatever went wrong.
        token = out.decode("utf-8", "replace").strip()
        if process.returncode != 0 or not token or len(token.split()) != 1:
            problem = (
                f"exited with status {process.returncode}"
                if process.returncode
                else "printed no single token"
            )
            raise TokenError(f"the token command {name!r} {problem}", config_error=True)
        return token, self._lifetime


def _seconds(expires_in: object) -> float:
    """``expires_in`` as seconds: a number, or a string of one (some endpoints send that)."""
    try:
        return float(expires_in) if isinstance(expires_in, (int, float, str)) else 3600.0
    except ValueError:
        return 3600.0  # the usual lifetime; a 535 renews it sooner if it was wrong
