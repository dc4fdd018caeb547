"""Safe fetching against a real loopback HTTP server: good images arrive intact, every bad case is counted under its kind."""

from __future__ import annotations

import gzip
import io
import socket

import numpy as np
import pytest
from PIL import Image

from genbench.errors import UsageError
from genbench.retrieval.fetch import FAILURE_KINDS, FetchPolicy, failure_counts, fetch_image, fetch_many, parse_policy
from tests.http_server import Route, serve

LOOPBACK = ("127.0.0.0/8",)


def _image_bytes(fmt: str, size=(32, 24), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def _policy(**kw) -> FetchPolicy:
    # generous limits for the good paths (a loaded CI machine must not turn them into timeouts); the timeout cases
    # pass tight ones explicitly
    base = dict(timeout_s=3.0, deadline_s=6.0, retries=2, backoff_s=0.01, max_bytes=200_000, allow_networks=LOOPBACK)
    base.update(kw)
    return FetchPolicy(**base)


@pytest.fixture(scope="module")
def site():
    jpeg, png, gif = _image_bytes("JPEG"), _image_bytes("PNG", seed=1), _image_bytes("GIF", seed=2)
    bomb = io.BytesIO()
    Image.new("1", (4000, 4000)).save(bomb, format="PNG")  # 16 Mpx, a few KB on the wire
    routes = {
        "/cat.jpg": Route(body=jpeg),
        "/dog.png": Route(body=png, content_type="image/png"),
        "/anim.gif": Route(body=gif, content_type="image/gif"),
        "/missing": Route(status=404, body=b"no"),
        "/broken": Route(status=500, body=b"oops"),
        "/slow": Route(body=jpeg, delay_s=1.0),
        "/trickle": Route(body=jpeg, trickle_s=0.1, trickle_piece=64),  # each piece fast, the whole body too slow
        "/truncated.jpg": Route(body=jpeg[: len(jpeg) // 2]),
        "/page.jpg": Route(body=b"<html><body>not an image</body></html>"),
        "/huge.jpg": Route(body=b"\xff" * 300_000),
        "/huge-nolength.jpg": Route(body=b"\xff" * 300_000, send_length=False),
        "/bomb.png": Route(body=bomb.getvalue(), content_type="image/png"),
        "/to-private": Route(status=302, location="http://10.0.0.1/secret.jpg"),
        "/to-metadata": Route(status=301, location="http://169.254.169.254/latest/meta-data/"),
        "/loop-a": Route(status=302, location="/loop-b"),
        "/loop-b": Route(status=302, location="/loop-a"),
        "/to-cat": Route(status=307, location="/cat.jpg"),
        "/png-as-html": Route(body=png, content_type="text/html"),
        # 2 KB on the wire, 10 MB once decoded: the byte cap must apply to the decoded body
        "/gzip-bomb.jpg": Route(body=gzip.compress(b"\0" * 10_000_000), headers={"Content-Encoding": "gzip"}),
        **{f"/chain{i}": Route(status=302, location=f"/chain{i + 1}") for i in range(8)},
        "/noai.jpg": Route(body=jpeg, headers={"X-Robots-Tag": "noai"}),
        "/ours-noindex.jpg": Route(body=jpeg, headers={"X-Robots-Tag": "GenBench: noindex, nofollow"}),
        "/other-bot-noai.jpg": Route(body=jpeg, headers={"X-Robots-Tag": "otherbot: noai"}),
        "/nofollow.jpg": Route(body=jpeg, headers={"X-Robots-Tag": "nofollow, noarchive"}),
    }
    with serve(routes) as base:
        yield base, routes, {"jpeg": jpeg, "png": png, "gif": gif}


def test_good_images_arrive_intact(site):
    base, routes, raw = site
    jpg = fetch_image(base + "/cat.jpg", _policy())
    assert (jpg.ok, jpg.kind, jpg.format, jpg.attempts) == (True, "ok", "JPEG", 1)
    assert jpg.data == raw["jpeg"] and (jpg.width, jpg.height) == (32, 24)
    png = fetch_image(base + "/dog.png", _policy())
    assert png.ok and png.data == raw["png"]
    # GIF is re-encoded to PNG with the same pixels
    gif = fetch_image(base + "/anim.gif", _policy())
    assert gif.ok and gif.format == "PNG" and gif.data != raw["gif"]
    want = np.asarray(Image.open(io.BytesIO(raw["gif"])).convert("RGB"))
    got = np.asarray(Image.open(io.BytesIO(gif.data)).convert("RGB"))
    assert np.array_equal(want, got)


def test_content_is_judged_by_decoding_not_by_header(site):
    base, _, raw = site
    r = fetch_image(base + "/png-as-html", _policy())
    assert r.ok and r.format == "PNG" and r.data == raw["png"]


def test_trickling_body_is_cut_by_the_deadline_not_the_socket_timeout(site):
    base, _, _ = site
    r = fetch_image(base + "/trickle", _policy(retries=0, timeout_s=0.4, deadline_s=1.2))
    assert r.kind == "timeout" and "within" in r.error, r.error


def test_redirect_is_followed_and_recorded(site):
    base, _, raw = site
    r = fetch_image(base + "/to-cat", _policy())
    assert r.ok and r.data == raw["jpeg"] and r.final_url == base + "/cat.jpg"


@pytest.mark.parametrize(
    "path, kind, policy_kw",
    [
        ("/missing", "http_4xx", {}),
        ("/nowhere", "http_4xx", {}),
        ("/broken", "http_5xx", {}),
        ("/slow", "timeout", {"retries": 0, "timeout_s": 0.4, "deadline_s": 1.2}),
        ("/trickle", "timeout", {"retries": 0, "timeout_s": 0.4, "deadline_s": 1.2}),
        ("/truncated.jpg", "decode_error", {}),
        ("/page.jpg", "decode_error", {}),
        ("/huge.jpg", "too_large", {}),
        ("/huge-nolength.jpg", "too_large", {}),
        ("/gzip-bomb.jpg", "too_large", {}),
        ("/bomb.png", "too_many_pixels", {"max_pixels": 1_000_000}),
        ("/to-private", "refused_address", {}),
        ("/to-metadata", "refused_address", {}),
        ("/loop-a", "redirect_loop", {}),
        ("/chain0", "too_many_redirects", {"max_redirects": 5}),
    ],
)
def test_bad_case_is_counted_under_its_kind(site, path, kind, policy_kw):
    base, _, _ = site
    r = fetch_image(base + path, _policy(**policy_kw))
    assert kind in FAILURE_KINDS
    assert (r.ok, r.kind, r.data) == (False, kind, None), r.error
    assert r.error


def test_only_transient_failures_are_retried(site):
    base, routes, _ = site
    before5, before4 = routes["/broken"].hits, routes["/missing"].hits
    r5 = fetch_image(base + "/broken", _policy(retries=3))
    r4 = fetch_image(base + "/missing", _policy(retries=3))
    assert r5.attempts == 4 and routes["/broken"].hits - before5 == 4
    assert r4.attempts == 1 and routes["/missing"].hits - before4 == 1


def test_loopback_refused_without_allow_list_and_never_contacted(site):
    base, routes, _ = site
    before = routes["/cat.jpg"].hits
    port = base.rsplit(":", 1)[1]
    for url in (base + "/cat.jpg", f"http://localhost:{port}/cat.jpg", f"http://[::ffff:127.0.0.1]:{port}/cat.jpg"):
        r = fetch_image(url, _policy(allow_networks=()))
        assert r.kind == "refused_address", (url, r.kind, r.error)
        assert r.attempts == 1
    assert routes["/cat.jpg"].hits == before


@pytest.mark.parametrize(
    "url, kind",
    [
        ("ftp://127.0.0.1/cat.jpg", "bad_scheme"),
        ("file:///etc/passwd", "bad_scheme"),
        ("javascript:alert(1)", "bad_scheme"),
        ("http://", "bad_url"),
        ("http://127.0.0.1:99999/x.jpg", "bad_url"),
        ("http://0.0.0.0/x.jpg", "refused_address"),
    ],
)
def test_malformed_and_foreign_urls(url, kind):
    r = fetch_image(url, _policy(allow_networks=()))
    assert (r.ok, r.kind) == (False, kind)


def test_closed_port_is_a_retried_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = fetch_image(f"http://127.0.0.1:{port}/x.jpg", _policy(retries=1))
    assert (r.kind, r.attempts) == ("connection_error", 2)


def test_fetch_many_keeps_order_and_counts_kinds(site):
    base, _, raw = site
    urls = [base + "/cat.jpg", "ftp://x/y", base + "/missing", base + "/page.jpg", base + "/dog.png", base + "/cat.jpg"]
    results = fetch_many(urls, _policy(), max_workers=4)
    assert [r.url for r in results] == urls
    assert failure_counts(results) == {"ok": 3, "bad_scheme": 1, "http_4xx": 1, "decode_error": 1}
    assert results[0].data == raw["jpeg"] and results[4].data == raw["png"]


def test_fetch_batch_writes_one_staging_part_that_reads_back(site, tmp_path):
    """The Ray Data callable, in-process: a batch's outcomes and bytes land in one staging part; a URL's outcome and
    image read back from the cache."""
    from dataclasses import asdict

    import pyarrow as pa

    from genbench.retrieval import staging
    from genbench.retrieval.download import FetchBatch

    base, _, raw = site
    urls = [base + "/cat.jpg", base + "/missing"]
    out = FetchBatch(str(tmp_path), asdict(_policy()), {}, threads=2)(pa.table({"url": urls}))
    assert out.column("ok").to_pylist() == [True, False] and "data" not in out.column_names
    assert [n for n in (tmp_path).iterdir() if n.name.startswith("part-")]
    outcomes = staging.read_outcomes(str(tmp_path))
    assert outcomes[urls[0]].ok and outcomes[urls[1]].kind == "http_4xx" and outcomes[urls[1]].final
    assert staging.read_images(str(tmp_path), {urls[0]: outcomes[urls[0]].part}) == {urls[0]: raw["jpeg"]}


def test_policy_validates_fields():
    with pytest.raises(UsageError, match="allow_networks"):
        FetchPolicy(allow_networks=("not-a-cidr",))
    with pytest.raises(UsageError, match="timeout_s"):
        FetchPolicy(timeout_s=0)
    assert FetchPolicy(allow_networks="127.0.0.0/8").allow_networks == ("127.0.0.0/8",)


def test_policy_from_a_config_names_the_config_field():
    with pytest.raises(UsageError) as err:
        parse_policy({"timeout_s": -1}, "sources[0].fetch")
    assert err.value.field == "sources[0].fetch.timeout_s"
    with pytest.raises(UsageError) as err:
        parse_policy({"retrys": 3}, "sources[0].fetch")
    assert err.value.field == "sources[0].fetch.retrys"
    assert parse_policy({"retries": 0}, "x", ("127.0.0.1/32",)).allow_networks == ("127.0.0.1/32",)


def test_throttling_is_transient(site):
    """408 and 429 ask the client to come back later: retried within a fetch, and not final for the next run."""
    from genbench.retrieval.fetch import TRANSIENT_KINDS

    routes = {"/busy": Route(status=429, body=b"slow down", content_type="text/plain"),
              "/late": Route(status=408, body=b"", content_type="text/plain")}
    with serve(routes) as base:
        for path in routes:
            r = fetch_image(base + path, _policy(retries=1))
            assert (r.kind, r.attempts) == ("http_throttled", 2) and r.kind in TRANSIENT_KINDS


@pytest.mark.parametrize("path, opted_out", [("/noai.jpg", True), ("/ours-noindex.jpg", True),
                                             ("/other-bot-noai.jpg", False), ("/nofollow.jpg", False)])
def test_x_robots_tag_opt_outs_are_honoured_as_img2dataset_reads_them(site, path, opted_out):
    """A directive for every crawler or for our token opts out; one addressed to another crawler, or a directive
    that says nothing of AI use or indexing, does not. The opt-out is a final failure, not retried."""
    base, routes, _ = site
    before = routes[path].hits
    r = fetch_image(base + path, _policy())
    assert (r.ok, r.kind) == ((False, "robots_disallowed") if opted_out else (True, "ok")), r.error
    assert routes[path].hits - before == 1
    # With no directives honoured (robots_disallow: []), the same image arrives.
    assert fetch_image(base + path, _policy(robots_disallow=())).ok


def test_robots_directives_from_a_config_are_checked():
    assert parse_policy({"robots_disallow": ["NoAI"]}, "sources[0].fetch").robots_disallow == ("noai",)
    with pytest.raises(UsageError) as e:
        parse_policy({"robots_disallow": "noai"}, "sources[0].fetch")
    assert e.value.field == "sources[0].fetch.robots_disallow"
