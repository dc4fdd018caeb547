"""Which URL we fetch and which address we connect to, decided once.

A URL is parsed by urllib3's own parser (the one the connection uses), never by a second one that could read it
differently: ``http://127.0.0.1:8080\\@93.184.216.34/`` is loopback to urllib3 and a public host to ``urllib.parse``.
Backslashes, whitespace, control characters and credentials (``user:pw@``) are refused outright. The host is resolved
once; every address it resolves to must be public or allow-listed, and the connection is then made to the checked
address itself (:func:`genbench.retrieval.fetch` pins it), so a DNS answer that changes in between (rebinding)
reaches nothing new.

Refused: private, loopback, link-local, multicast, reserved, unspecified and other non-global addresses, and every IPv6
form that carries or reaches one: IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), 6to4
(``2002::/16``), NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``), Teredo (``2001::/32``, its client address is hidden) and
site-local (``fec0::/10``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from urllib3.util import parse_url

from genbench.retrieval.policy import FetchFailure, FetchPolicy

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")  # control characters, whitespace, backslash
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_TEREDO = ipaddress.ip_network("2001::/32")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class Target:
    """A parsed http(s) URL: what to connect to and what to ask for."""

    url: str  # normalised, as urllib3 reads it
    scheme: str
    host: str  # without brackets for IPv6
    port: int
    request_uri: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(url: str) -> Target:
    """The URL as the HTTP client will read it; anything ambiguous is a ``bad_url`` failure."""
    if not isinstance(url, str) or not url or len(url) > 8192:
        raise FetchFailure("bad_url", "not a URL string of at most 8192 characters")
    if _BAD_CHARS.search(url):
        raise FetchFailure("bad_url", "backslash, whitespace or control character in URL")
    try:
        parts = parse_url(url)
    except Exception as exc:  # urllib3 raises LocationParseError (and ValueError for bad ports)
        raise FetchFailure("bad_url", f"{type(exc).__name__}: {exc}") from None
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise FetchFailure("bad_scheme", f"scheme {parts.scheme!r} is not http or https")
    if parts.auth is not None:
        raise FetchFailure("bad_url", "credentials (user:password@) in URL")
    host = (parts.host or "").strip("[]")
    if not host:
        raise FetchFailure("bad_url", "no host in URL")
    port = parts.port or (443 if scheme == "https" else 80)
    if not 0 < port < 65536:
        raise FetchFailure("bad_url", f"port {port}")
    return Target(parts.url, scheme, host, port, parts.request_uri or "/")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64) or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refused(ip: IP) -> bool:
    """Whether ``ip`` is not a public address (or carries or reaches one that is not)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _TEREDO or ip in _SITE_LOCAL:
            return True
        inner = _embedded_v4(ip)
        if inner is not None and refused(inner):
            return True
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def permitted(ip: IP, policy: FetchPolicy) -> bool:
    return not refused(ip) or any(ip in net for net in policy.networks if net.version == ip.version)


def resolve(target: Target, policy: FetchPolicy) -> str:
    """The address to connect to: the host resolved once, every address checked, the first one returned."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise FetchFailure("connection_error", f"cannot resolve {target.host!r}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]  # drop an IPv6 zone id
    for ip in addresses:
        if not permitted(ip, policy):
            raise FetchFailure("refused_address", f"{target.host} resolves to {ip}, which is not public and not allow-listed")
    if not addresses:
        raise FetchFailure("connection_error", f"{target.host!r} resolves to no address")
    return str(addresses[0])
