"""Address checks that cannot be talked around: one URL parser for the check and the connection, the connection pinned
to the address that was checked, no credentials in URLs, and every IPv6 form of a refused address refused.

Two loopback servers stand in for the world: 127.0.0.1 is the allow-listed image host, 127.0.0.2 an internal service
nobody allowed (Linux routes all of 127/8 to loopback)."""

from __future__ import annotations

import ipaddress
import io
import socket

import numpy as np
import pytest
from PIL import Image

from genbench.retrieval.addresses import refused
from genbench.retrieval.fetch import FetchPolicy, fetch_image
from tests.http_server import Route, serve

ALLOWED = ("127.0.0.1/32",)


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _policy(**kw) -> FetchPolicy:
    return FetchPolicy(**{"timeout_s": 2.0, "deadline_s": 4.0, "retries": 0, "allow_networks": ALLOWED, **kw})


@pytest.fixture(scope="module")
def servers():
    internal = {"/secret.jpg": Route(body=_jpeg())}
    with serve(internal, host="127.0.0.2") as internal_base:
        port = internal_base.rsplit(":", 1)[1]
        sneaky = f"http://127.0.0.2:{port}\\@93.184.216.34/secret.jpg"
        public = {"/ok.jpg": Route(body=_jpeg()),
                  "/hop": Route(status=302, location=sneaky),
                  "/hop-plain": Route(status=302, location=f"{internal_base}/secret.jpg")}
        with serve(public) as public_base:
            yield public_base, internal_base, sneaky, internal


def test_the_allow_listed_host_works(servers):
    public, _, _, _ = servers
    assert fetch_image(f"{public}/ok.jpg", _policy()).kind == "ok"


def test_a_backslash_url_that_parsers_read_differently_is_refused(servers):
    """urllib.parse sees host 93.184.216.34 (public), urllib3 connects to 127.0.0.2: refused before any connection."""
    _, _, sneaky, internal = servers
    hits = internal["/secret.jpg"].hits
    r = fetch_image(sneaky, _policy())
    assert r.kind == "bad_url" and internal["/secret.jpg"].hits == hits


def test_a_redirect_to_the_backslash_form_or_to_a_refused_host_is_refused(servers):
    public, _, _, internal = servers
    hits = internal["/secret.jpg"].hits
    assert fetch_image(f"{public}/hop", _policy()).kind == "bad_url"
    assert fetch_image(f"{public}/hop-plain", _policy()).kind == "refused_address"
    assert internal["/secret.jpg"].hits == hits


def test_credentials_in_a_url_are_refused(servers):
    public, _, _, _ = servers
    r = fetch_image(public.replace("http://", "http://user:pw@") + "/ok.jpg", _policy())
    assert r.kind == "bad_url" and "credentials" in r.error


def test_the_connection_goes_to_the_checked_address(servers, monkeypatch):
    """DNS rebinding: the name first resolves to a public address (checked, allowed), then to the internal one. The
    connection must go to the address that was checked, so the internal service is never reached."""
    _, internal_base, _, internal = servers
    port = int(internal_base.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"] + ["127.0.0.2"] * 10)

    def rebinding(host, *args, **kwargs):
        if host == "images.rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    hits = internal["/secret.jpg"].hits
    r = fetch_image(f"http://images.rebind.test:{port}/secret.jpg", _policy(timeout_s=0.5, deadline_s=1.0))
    assert r.kind != "ok" and internal["/secret.jpg"].hits == hits


@pytest.mark.parametrize("address", [
    "::ffff:127.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped loopback, cloud metadata
    "::127.0.0.1",  # IPv4-compatible
    "2002:7f00:1::1", "2002:a9fe:a9fe::1",  # 6to4 of loopback and of the metadata address
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",  # NAT64
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "fec0::1",  # site-local
    "fd00::1", "fe80::1", "::1", "::", "169.254.169.254", "10.0.0.1", "100.64.0.1",
])
def test_every_form_of_a_private_address_is_refused(address):
    assert refused(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111", "2002:5db8:d822::1"])
def test_public_addresses_pass(address):
    assert not refused(ipaddress.ip_address(address))
