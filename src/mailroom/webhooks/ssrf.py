"""Where a webhook may be sent: the URL's form, and the addresses its host resolves to.

A URL is checked when an endpoint is created or changed (form, scheme, an address or
host name that is plainly internal) and its resolved addresses again when the sender
connects (mailroom.webhooks.sender's resolver), so a name that later resolves inside the
network is refused then too, and the address checked is the one connected to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Cloud metadata services that are not caught by the private / link-local ranges.
_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
_INTERNAL_NAMES = ("localhost", ".localhost", ".internal", ".local")


class RefusedDestination(ValueError):
    """A URL or address a webhook must not be sent to; the message says why."""


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> SplitResult:
    """The URL, split, if its form is acceptable; raises RefusedDestination otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedDestination(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise RefusedDestination("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedDestination(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc:
        raise RefusedDestination("the URL must be absolute (https://host/path)")
    if scheme not in ("https", "http"):
        raise RefusedDestination("the URL must use https")
    if scheme == "http" and not allow_http:
        raise RefusedDestination("the URL must use https (http is allowed with WEBHOOK_ALLOW_HTTP)")
    if parts.username is not None or parts.password is not None:
        raise RefusedDestination("the URL must not contain credentials")
    host = (parts.hostname or "").lower()
    if not host:
        raise RefusedDestination("the URL has no host")
    if port == 0:
        raise RefusedDestination("the URL's port must be from 1 to 65535")
    if not allow_private:
        literal = literal_address(host)
        if literal is not None:
            reason = refused_address(literal, allow_private=False)
            if reason is not None:
                raise RefusedDestination(reason)
        elif host.endswith(_INTERNAL_NAMES) or host in ("localhost",) or "." not in host:
            raise RefusedDestination(
                f"the host {host!r} is internal (allowed with WEBHOOK_ALLOW_PRIVATE)"
            )
    return parts


def refused_address(address: IpAddress, *, allow_private: bool) -> str | None:
    """Why a webhook must not go to ``address``, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast:
        return f"the address {address} is not a host"
    if allow_private:
        return None
    if address in _METADATA or address == ipaddress.ip_address("169.254.169.254"):
        return f"the address {address} is a cloud metadata service"
    if address.is_loopback:
        return f"the address {address} is loopback (allowed with WEBHOOK_ALLOW_PRIVATE)"
    if address.is_link_local:
        return f"the address {address} is link-local (allowed with WEBHOOK_ALLOW_PRIVATE)"
    if address.is_private or address.is_reserved or not address.is_global:
        return f"the address {address} is private (allowed with WEBHOOK_ALLOW_PRIVATE)"
    return None


async def resolve(host: str, port: int) -> list[IpAddress]:
    """Every address ``host`` resolves to (itself if it is one); raises OSError."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found: list[IpAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


def literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
