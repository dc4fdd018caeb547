"""A real threaded HTTP server on 127.0.0.1 for download tests and benchmarks (no patched ``requests``).

Usage::

    routes = {"/cat.jpg": Route(body=jpeg_bytes), "/gone": Route(status=404)}
    with serve(routes) as base_url:
        fetch_image(base_url + "/cat.jpg", policy)
    assert routes["/cat.jpg"].hits == 1

Each :class:`Route` describes one response, including the hostile ones (slow headers, trickled body, missing
Content-Length, redirects). A path that is not in ``routes`` answers 404.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


@dataclass
class Route:
    """One canned response. ``delay_s`` waits before the status line (tests read timeouts); ``trickle_s`` sends the body
    one small piece at a time with that pause between pieces (tests the per-request deadline); ``send_length=False``
    omits Content-Length and closes the connection to end the body (tests the streamed byte cap); ``location``
    makes a redirect. ``fail_first`` answers 503 to that many requests before the real response (a host that is
    down for a while). ``hits`` counts requests served on this route (tests retries)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "image/jpeg"
    location: str | None = None
    delay_s: float = 0.0
    trickle_s: float = 0.0
    trickle_piece: int = 16
    send_length: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    fail_first: int = 0
    hits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self) -> int:
        with self._lock:
            self.hits += 1
            return self.hits


def _handler(routes: dict[str, Route]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real image hosts do

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                route = Route(status=404, body=b"not found", content_type="text/plain")
            elif route.count() <= route.fail_first:
                route = Route(status=503, body=b"try later", content_type="text/plain")
            if route.delay_s:
                time.sleep(route.delay_s)
            try:
                self._respond(route)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout, byte cap): that is the point of several routes

        def _respond(self, route: Route) -> None:
            self.send_response(route.status)
            if route.location is not None:
                self.send_header("Location", route.location)
            self.send_header("Content-Type", route.content_type)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.send_length:
                self.send_header("Content-Length", str(len(route.body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if route.trickle_s:
                for i in range(0, len(route.body), route.trickle_piece):
                    self.wfile.write(route.body[i : i + route.trickle_piece])
                    self.wfile.flush()
                    time.sleep(route.trickle_s)
            else:
                self.wfile.write(route.body)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # slow handlers must not keep the test process alive
    block_on_close = False
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-response (its timeout or byte cap) is expected; anything else is a test bug.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@contextmanager
def serve(routes: dict[str, Route], host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``routes`` on ``host`` (a loopback address, a free port) in a background thread; yields the base URL
    ``http://HOST:PORT``."""
    server = _Server((host, 0), _handler(routes))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
