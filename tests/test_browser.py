"""The paper-style report as a reader sees it at a normal 1280 px window: rendered in headless Chromium, every image
loads and is shown at its own size (a shrunken figure shrinks its text), no table is wider than its container, nothing
reaches past the window's edge and no text is set under 12 px. Marked ``browser`` (deselected by default; ``make browser-check`` runs it): it needs Debian's
``chromium``, which a fresh clone may not have."""

from __future__ import annotations

import pytest

from genbench.report.build import build_report
from tests.browser_check import MIN_FONT_PX, find_browser, probe, problems, screenshot
from tests.synthetic_results import write_synthetic

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    path = find_browser()
    if path is None:
        pytest.fail("no Chromium on this machine: apt-get install -y chromium (then make browser-check)")
    return path


def test_paper_report_has_no_broken_image_or_overflowing_table(tmp_path, browser):
    res = build_report([write_synthetic(str(tmp_path))], str(tmp_path / "out"), paper=True)
    found = probe(res["report_html"], width=1280, browser=browser)
    assert len(found["images"]) == len(res["plots"]) == 10
    assert any("20-shot generated data" in t["label"] for t in found["tables"])  # Table 2 was measured
    assert problems(found) == []
    # what problems() judged, stated outright: figures at their own size, no small text, no sideways scrolling
    assert all(img["shown_width"] >= 0.97 * img["width"] > 0 for img in found["images"])
    assert min(f["px"] for f in found["fonts"]) >= MIN_FONT_PX
    assert any(f["element"] == "td" and f["px"] >= MIN_FONT_PX for f in found["fonts"])  # Table 2's cells counted
    assert found["overflow"] == [] and found["page"]["scroll_width"] <= 1280


def test_a_report_of_untrained_models_reads_as_well_and_can_be_shot(tmp_path, browser):
    import json

    run = write_synthetic(str(tmp_path))
    recs = json.load(open(f"{run}/results.json"))
    for r in recs:
        r["untrained_models"], r["untrained"] = True, ["generator tiny"]
    json.dump(recs, open(f"{run}/results.json", "w"))
    res = build_report([run], str(tmp_path / "out"))
    found = probe(res["report_html"], width=1280, browser=browser)
    assert problems(found) == []
    shot = screenshot(res["report_html"], str(tmp_path / "page.png"), width=1280, height=1600, browser=browser)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 1600)
        assert len(set(im.convert("L").getdata())) > 50  # rendered content, not a blank page


def test_the_check_sees_broken_shrunken_and_small_things(tmp_path, browser):
    from PIL import Image

    Image.new("RGB", (40, 30), "red").save(tmp_path / "ok.png")
    Image.new("RGB", (1800, 300), "blue").save(tmp_path / "wide.png")
    cells = "".join(f"<td>{'x' * 40}</td>" for _ in range(12))
    (tmp_path / "bad.html").write_text(
        '<!DOCTYPE html><html><body style="max-width: 600px">'
        '<img src="ok.png" alt="fine"><img src="missing.png" alt="gone">'
        '<img src="wide.png" alt="shrunk" style="max-width: 100%">'
        '<p style="font-size: 9px">a row shrunk to fit</p>'
        '<pre style="width: 1500px">a line wider than the window</pre>'
        f"<div><table><caption>too wide</caption><tr>{cells}</tr></table></div></body></html>")
    found = probe(str(tmp_path / "bad.html"), width=1024, browser=browser)
    bad = problems(found)
    assert [img["width"] for img in found["images"]] == [40, 0, 1800]
    assert any(line.startswith("broken image: missing.png") for line in bad)
    assert any(line.startswith("image shrunk: wide.png drawn 1800px wide, shown at 600px") for line in bad)
    assert any(line.startswith("text at 9.0px (< 12px) in 1 p element(s)") for line in bad)
    assert any(line.startswith("element past the window's edge: pre") for line in bad)
    assert any("overflows its container: 'too wide'" in line for line in bad)
    assert not any("ok.png" in line for line in bad)  # drawn small and shown at its size: fine
