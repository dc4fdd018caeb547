"""Safe image fetching for the retrieval baseline.

One URL in, one :class:`FetchResult` out, never an exception: a dead or hostile URL is counted under a failure kind
(:data:`FAILURE_KINDS`) so that a download of millions of LAION URLs goes on. The safety rules (issue 5):

- only ``http`` and ``https``;
- the host is resolved with ``getaddrinfo`` and EVERY resolved address must be public (not private, loopback,
  link-local, multicast, reserved, unspecified or otherwise non-global) unless it lies in ``allow_networks``; redirects
  are followed by hand so that each hop is checked the same way before any connection is made to it;
- connect/read timeouts plus a wall-clock deadline per attempt, so a trickling server cannot hold a worker;
- a byte cap (``Content-Length`` and the streamed body), a decoded-pixel cap checked from the header before pixels are
  decoded (decompression bombs), and the content is trusted only if PIL opens, verifies and fully loads it.

Caveat: requests resolves the host again when it connects, so a DNS answer that changes between our check and the
connection (DNS rebinding) is not caught here; clusters that need that guarantee should also block private ranges at the
network layer (egress policy).

The callables here are plain functions, so they run in-process and inside a Ray Data ``map_batches`` callable
(:class:`genbench.retrieval.download.FetchBatch`) unchanged.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import urljoin, urlsplit

import requests
from PIL import Image, ImageFile

from genbench.errors import UsageError
from genbench.retrieval.policy import (
    FAILURE_KINDS,
    POLICY_KINDS,
    TRANSIENT_KINDS,
    FetchPolicy,
    parse_policy,
)

__all__ = ["FAILURE_KINDS", "POLICY_KINDS", "TRANSIENT_KINDS", "FetchPolicy", "FetchResult", "check_url", "decode_image",
           "failure_counts", "fetch_image", "fetch_many", "parse_policy"]

log = logging.getLogger(__name__)

REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# Formats whose original bytes we keep; anything else PIL can read (GIF, BMP, TIFF, ...) is re-encoded to PNG so that
# the shard writer only ever sees formats every trainer can decode.
KEPT_FORMATS = ("JPEG", "PNG", "WEBP")
_CHUNK = 64 * 1024


@dataclass
class FetchResult:
    """The outcome of one URL. ``kind`` is ``"ok"`` or one of :data:`FAILURE_KINDS`; ``data`` holds the original bytes
    (JPEG/PNG/WebP) or a PNG re-encoding, only when ``ok``. ``final_url`` is where redirects ended. The ``*_s`` fields
    say where the time went (summed over attempts)."""

    url: str
    ok: bool
    kind: str
    data: bytes | None = None
    width: int = 0
    height: int = 0
    attempts: int = 0
    error: str = ""
    format: str = ""
    final_url: str = ""
    network_s: float = 0.0
    decode_s: float = 0.0
    encode_s: float = 0.0


class _Failure(Exception):
    def __init__(self, kind: str, error: str):
        super().__init__(error)
        self.kind, self.error = kind, error


# ---------------------------------------------------------------------------------------------------------- addresses


def _address_refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback in disguise
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global  # shared address space (100.64/10) and other special ranges
    )


def check_url(url: str, policy: FetchPolicy) -> None:
    """Raise :class:`_Failure` unless ``url`` is http(s) and every address its host resolves to may be contacted.
    A literal IP needs no DNS; a name is resolved here, before anything connects."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _Failure("bad_url", str(exc)) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _Failure("bad_scheme", f"scheme {parts.scheme!r} is not http or https")
    host = parts.hostname
    if not host:
        raise _Failure("bad_url", "no host in URL")
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise _Failure("connection_error", f"cannot resolve {host!r}: {exc}") from None
    allowed = policy.networks
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])  # drop an IPv6 zone id
        if _address_refused(ip) and not any(ip in net for net in allowed if net.version == ip.version):
            raise _Failure("refused_address", f"{host} resolves to {ip}, which is not public and not allow-listed")


# ---------------------------------------------------------------------------------------------------------- download


def _download(url: str, policy: FetchPolicy, session: requests.Session) -> tuple[bytes, str]:
    """Follow redirects by hand (each hop checked) and stream the body under the byte cap and the deadline."""
    start = time.monotonic()
    deadline = start + policy.attempt_deadline_s
    seen = {url}
    current = url
    headers = {"User-Agent": policy.user_agent}
    for hop in range(policy.max_redirects + 1):
        check_url(current, policy)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Failure("timeout", f"deadline of {policy.attempt_deadline_s}s passed")
        sock_timeout = min(policy.timeout_s, remaining)
        try:
            resp = session.get(current, stream=True, allow_redirects=False, timeout=(sock_timeout, sock_timeout), headers=headers)
        except requests.Timeout as exc:
            raise _Failure("timeout", str(exc)) from None
        except requests.RequestException as exc:
            raise _Failure("connection_error", str(exc)) from None
        with resp:
            status = resp.status_code
            if status in REDIRECT_STATUSES:
                location = resp.headers.get("Location")
                if not location:
                    raise _Failure("bad_status", f"HTTP {status} without Location")
                nxt = urljoin(current, location)
                if nxt in seen:
                    raise _Failure("redirect_loop", f"{current} redirects back to {nxt}")
                seen.add(nxt)
                current = nxt
                continue
            if status in (408, 429):
                raise _Failure("http_throttled", f"HTTP {status}")
            if 400 <= status < 500:
                raise _Failure("http_4xx", f"HTTP {status}")
            if status >= 500:
                raise _Failure("http_5xx", f"HTTP {status}")
            if not 200 <= status < 300:
                raise _Failure("bad_status", f"HTTP {status}")
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > policy.max_bytes:
                raise _Failure("too_large", f"Content-Length {length} > {policy.max_bytes}")
            return _read_body(resp, policy, deadline), current
    raise _Failure("too_many_redirects", f"more than {policy.max_redirects} redirects")


def _read_body(resp: requests.Response, policy: FetchPolicy, deadline: float) -> bytes:
    buf = bytearray()
    raw = resp.raw
    try:
        while True:
            # read1 returns whatever one socket read gives, so the deadline is checked between small reads even when the
            # server trickles bytes; read(n) would block until n bytes arrived.
            chunk = raw.read1(_CHUNK, decode_content=True)  # gzip bodies are capped on their decoded size
            if not chunk:
                return bytes(buf)
            buf += chunk
            if len(buf) > policy.max_bytes:
                raise _Failure("too_large", f"body exceeds {policy.max_bytes} bytes")
            if time.monotonic() > deadline:
                raise _Failure("timeout", f"body not complete within {policy.attempt_deadline_s}s")
    except _Failure:
        raise
    except (requests.Timeout, socket.timeout, TimeoutError) as exc:
        raise _Failure("timeout", f"read timed out: {exc}") from None
    except Exception as exc:  # urllib3 wraps socket errors in several types; all mean the connection broke mid-body
        if "timed out" in str(exc).lower():
            raise _Failure("timeout", f"read timed out: {exc}") from None
        raise _Failure("connection_error", f"body read failed: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------------------- decoding


def decode_image(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """Open, check the pixel count from the header, verify, then fully load. Raises :class:`_Failure`."""
    # Never accept a truncated file as an image (PIL would pad it with grey when this flag is on).
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise _Failure("too_many_pixels", f"{width}x{height} > {max_pixels} pixels")
            probe.verify()
        img = Image.open(io.BytesIO(data))
        fmt = img.format or ""
        img.load()
    except _Failure:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _Failure("too_many_pixels", str(exc)) from None
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, struct.error) for bad data
        raise _Failure("decode_error", f"{type(exc).__name__}: {exc}") from None
    return img, fmt


def _encoded(img: Image.Image, fmt: str, data: bytes) -> bytes:
    if fmt in KEPT_FORMATS:
        return data
    out = io.BytesIO()
    img.convert("RGBA" if "A" in img.getbands() else "RGB").save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------------------------------------------------- public API


def _new_session() -> requests.Session:
    s = requests.Session()
    # Ignore proxy environment variables: the address we checked must be the one we connect to.
    s.trust_env = False
    return s


def _finish(result: FetchResult, data: bytes, final: str, policy: FetchPolicy) -> FetchResult:
    """Decode-check downloaded bytes and fill ``result``; a decode failure is final (the same bytes would come again)."""
    t1 = time.perf_counter()
    try:
        img, fmt = decode_image(data, policy.max_pixels)
    except _Failure as failure:
        result.decode_s += time.perf_counter() - t1
        result.kind, result.error = failure.kind, failure.error
        return result
    t2 = time.perf_counter()
    result.decode_s += t2 - t1
    result.data = _encoded(img, fmt, data)
    result.encode_s += time.perf_counter() - t2
    result.ok, result.kind, result.error = True, "ok", ""
    result.width, result.height = img.size
    result.format = fmt if fmt in KEPT_FORMATS else "PNG"
    result.final_url = final
    return result


def fetch_image(url: str, policy: FetchPolicy, session: requests.Session | None = None) -> FetchResult:
    """Fetch and validate one image; transient failures (timeout, 5xx, connection error) are retried with exponential
    backoff, at most ``policy.retries`` times. Never raises for a bad URL."""
    own = session is None
    session = session or _new_session()
    result = FetchResult(url=str(url), ok=False, kind="connection_error")
    try:
        for attempt in range(policy.retries + 1):
            result.attempts = attempt + 1
            t0 = time.perf_counter()
            try:
                data, final = _download(str(url), policy, session)
            except _Failure as failure:
                result.network_s += time.perf_counter() - t0
                result.kind, result.error = failure.kind, failure.error
            else:
                result.network_s += time.perf_counter() - t0
                return _finish(result, data, final, policy)
            if result.kind not in TRANSIENT_KINDS or attempt == policy.retries:
                break
            time.sleep(policy.backoff_s * (2**attempt))
    except Exception as exc:  # a bug must not kill a worker holding thousands of URLs; count it and log it loudly
        log.exception("unexpected error fetching %s", url)
        result.kind, result.error = "connection_error", f"unexpected {type(exc).__name__}: {exc}"
    finally:
        if own:
            session.close()
    log.debug("fetch %s failed: %s (%s) after %d attempt(s)", url, result.kind, result.error, result.attempts)
    return result


def fetch_many(urls: Iterable[str], policy: FetchPolicy, max_workers: int = 16) -> list[FetchResult]:
    """Fetch ``urls`` on a thread pool (one requests session per thread); results come back in input order."""
    urls = list(urls)
    if max_workers < 1:
        raise UsageError("max_workers", max_workers, "an integer >= 1")
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()

    def one(u: str) -> FetchResult:
        s = getattr(local, "session", None)
        if s is None:
            s = local.session = _new_session()
            with lock:
                sessions.append(s)
        return fetch_image(u, policy, s)

    try:
        with ThreadPoolExecutor(max_workers=min(max_workers, max(1, len(urls)))) as pool:
            return list(pool.map(one, urls))
    finally:
        for s in sessions:
            s.close()


def failure_counts(results: Sequence[FetchResult]) -> dict[str, int]:
    """Counts per kind ("ok" and each failure kind that occurred) -- what a shard's stats record."""
    return dict(Counter(r.kind for r in results))
