"""The paper-style report as a reader sees it: rendered in headless Chromium, every image loads and no table is wider
than its container. Marked ``browser`` (deselected by default; ``make browser-check`` runs it): it needs Debian's
``chromium``, which a fresh clone may not have."""

from __future__ import annotations

import pytest

from genbench.report.build import build_report
from tests.browser_check import find_browser, probe, problems
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
    assert len(found["images"]) == len(res["plots"]) == 9
    assert any("20-shot generated data" in t["label"] for t in found["tables"])  # Table 2 was measured
    assert problems(found) == []


def test_the_check_sees_a_broken_image_and_a_wide_table(tmp_path, browser):
    from PIL import Image

    Image.new("RGB", (40, 30), "red").save(tmp_path / "ok.png")
    cells = "".join(f"<td>{'x' * 40}</td>" for _ in range(12))
    (tmp_path / "bad.html").write_text(
        '<!DOCTYPE html><html><body style="max-width: 600px">'
        '<img src="ok.png" alt="fine"><img src="missing.png" alt="gone">'
        f"<div><table><caption>too wide</caption><tr>{cells}</tr></table></div></body></html>")
    found = probe(str(tmp_path / "bad.html"), width=1024, browser=browser)
    bad = problems(found)
    assert [img["width"] for img in found["images"]] == [40, 0]
    assert any(line.startswith("broken image: missing.png") for line in bad)
    assert any("overflows its container: 'too wide'" in line for line in bad)
