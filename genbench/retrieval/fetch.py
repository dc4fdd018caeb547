"""Safe image fetching for the retrieval baseline.

One URL in, one :class:`FetchResult` out, never an exception: a dead or hostile URL is counted under a failure kind
(:data:`FAILURE_KINDS`) so that a download of millions of LAION URLs goes on. The safety rules (issue 5):

- only ``http`` and ``https``, parsed once by the parser the connection uses; backslashes, whitespace, control
  characters and credentials in a URL are refused (:mod:`genbench.retrieval.addresses`);
- the host is resolved once and EVERY resolved address must be public (not private, loopback, link-local, multicast,
  reserved, unspecified, otherwise non-global, or an IPv6 form that carries one) unless it lies in ``allow_networks``;
  the connection goes to the address that was checked (the Host header and TLS server name keep the URL's host), and
  redirects are followed by hand so that each hop is checked and pinned the same way;
- connect/read timeouts plus a wall-clock deadline per attempt, so a trickling server cannot hold a worker;
- a byte cap (``Content-Length`` and the streamed body), a decoded-pixel cap checked from the header before pixels are
  decoded (decompression bombs), and the content is trusted only if PIL opens, verifies and fully loads it.

The callables here are plain functions, so they run in-process and inside a Ray Data ``map_batches`` callable
(:class:`genbench.retrieval.download.FetchBatch`) unchanged.
"""

from __future__ import annotations

import io
import logging
import re
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import urljoin

import urllib3
from PIL import Image, ImageFile

from genbench.errors import UsageError
from genbench.retrieval.addresses import Target, parse_target, resolve
from genbench.retrieval.policy import (
    FAILURE_KINDS,
    POLICY_KINDS,
    TRANSIENT_KINDS,
    FetchFailure,
    FetchPolicy,
    parse_policy,
    robots_disallowed,
)

__all__ = ["FAILURE_KINDS", "POLICY_KINDS", "TRANSIENT_KINDS", "FetchPolicy", "FetchResult", "check_url", "decode_image",
           "failure_counts", "fetch_image", "fetch_many", "parse_policy"]

log = logging.getLogger(__name__)

REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# Formats whose original bytes we keep; anything else PIL can read (GIF, BMP, TIFF, ...) is re-encoded to PNG so that
# the shard writer only ever sees formats every trainer can decode.
KEPT_FORMATS = ("JPEG", "PNG", "WEBP")
_CHUNK = 64 * 1024
_BAD_LOCATION = re.compile(r"[\x00-\x20\x7f\\]")


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


_Failure = FetchFailure


class Connector:
    """urllib3 pools pinned to checked addresses, reused while one thread fetches (one per (scheme, address, port,
    host)). Proxies from the environment are never used: the address checked must be the address connected to."""

    def __init__(self) -> None:
        self._pools: dict[tuple, urllib3.HTTPConnectionPool] = {}

    def pool(self, target: Target, address: str) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, address, target.port, target.host)
        if key not in self._pools:
            if target.scheme == "https":
                import certifi

                self._pools[key] = urllib3.HTTPSConnectionPool(
                    address, target.port, maxsize=1, retries=False, server_hostname=target.host,
                    assert_hostname=target.host, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
            else:
                self._pools[key] = urllib3.HTTPConnectionPool(address, target.port, maxsize=1, retries=False)
        return self._pools[key]

    def close(self) -> None:
        for p in self._pools.values():
            p.close()
        self._pools.clear()


def check_url(url: str, policy: FetchPolicy) -> tuple[Target, str]:
    """(the parsed URL, the checked address to connect to); raises :class:`FetchFailure`."""
    target = parse_target(url)
    return target, resolve(target, policy)


# ---------------------------------------------------------------------------------------------------------- download


def _download(url: str, policy: FetchPolicy, connector: Connector) -> tuple[bytes, str]:
    """Follow redirects by hand (each hop checked and pinned) and stream the body under the byte cap and deadline."""
    start = time.monotonic()
    deadline = start + policy.attempt_deadline_s
    current = url
    seen: set[str] = set()
    for _hop in range(policy.max_redirects + 1):
        target, address = check_url(current, policy)
        if target.url in seen:
            raise _Failure("redirect_loop", f"{url} redirects back to {target.url}")
        seen.add(target.url)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Failure("timeout", f"deadline of {policy.attempt_deadline_s}s passed")
        sock_timeout = min(policy.timeout_s, remaining)
        try:
            resp = connector.pool(target, address).urlopen(
                "GET", target.request_uri, headers={"Host": target.host_header, "User-Agent": policy.user_agent},
                redirect=False, retries=False, preload_content=False, decode_content=True, assert_same_host=False,
                timeout=urllib3.Timeout(connect=sock_timeout, read=sock_timeout))
        except urllib3.exceptions.NewConnectionError as exc:  # urllib3 files a refused connection under timeouts
            raise _Failure("connection_error", f"{type(exc).__name__}: {exc}") from None
        except urllib3.exceptions.TimeoutError as exc:
            raise _Failure("timeout", str(exc)) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _Failure("connection_error", f"{type(exc).__name__}: {exc}") from None
        try:
            status = resp.status
            if status in REDIRECT_STATUSES:
                location = resp.headers.get("Location")
                if not location:
                    raise _Failure("bad_status", f"HTTP {status} without Location")
                if _BAD_LOCATION.search(location):
                    raise _Failure("bad_url", "backslash, whitespace or control character in a redirect's Location")
                current = urljoin(target.url, location)
                continue
            if status in (408, 429):
                raise _Failure("http_throttled", f"HTTP {status}")
            if 400 <= status < 500:
                raise _Failure("http_4xx", f"HTTP {status}")
            if status >= 500:
                raise _Failure("http_5xx", f"HTTP {status}")
            if not 200 <= status < 300:
                raise _Failure("bad_status", f"HTTP {status}")
            if policy.robots_disallow and robots_disallowed(resp.headers.getlist("X-Robots-Tag"), policy.robots_token,
                                                            policy.robots_disallow):
                raise _Failure("robots_disallowed", "X-Robots-Tag opts this image out")
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > policy.max_bytes:
                raise _Failure("too_large", f"Content-Length {length} > {policy.max_bytes}")
            return _read_body(resp, policy, deadline), target.url
        finally:
            _done_with(resp)
    raise _Failure("too_many_redirects", f"more than {policy.max_redirects} redirects")


def _done_with(resp: urllib3.BaseHTTPResponse) -> None:
    """Give a fully read connection back for reuse; close one whose body was left unread (a redirect, an error)."""
    if resp.isclosed():
        resp.release_conn()
    else:
        resp.close()


def _read_body(resp: urllib3.BaseHTTPResponse, policy: FetchPolicy, deadline: float) -> bytes:
    buf = bytearray()
    raw = resp
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
    except (urllib3.exceptions.TimeoutError, socket.timeout, TimeoutError) as exc:
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


def accept_bytes(url: str, data: bytes, policy: FetchPolicy, attempts: int = 0) -> FetchResult:
    """Bytes that arrived some other way (an img2dataset download) checked as a fetched body is: the byte cap, the
    pixel cap and a full decode."""
    result = FetchResult(url=url, ok=False, kind="decode_error", attempts=attempts)
    if len(data) > policy.max_bytes:
        result.kind, result.error = "too_large", f"{len(data)} bytes > {policy.max_bytes}"
        return result
    return _finish(result, data, url, policy)


def fetch_image(url: str, policy: FetchPolicy, session: Connector | None = None) -> FetchResult:
    """Fetch and validate one image; transient failures (timeout, 5xx, connection error) are retried with exponential
    backoff, at most ``policy.retries`` times. Never raises for a bad URL."""
    own = session is None
    session = session or Connector()
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
    """Fetch ``urls`` on a thread pool (one :class:`Connector` per thread); results come back in input order."""
    urls = list(urls)
    if max_workers < 1:
        raise UsageError("max_workers", max_workers, "an integer >= 1")
    local = threading.local()
    sessions: list[Connector] = []
    lock = threading.Lock()

    def one(u: str) -> FetchResult:
        s = getattr(local, "session", None)
        if s is None:
            s = local.session = Connector()
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
