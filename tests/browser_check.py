"""Render a report's HTML in headless Chromium and find what a reader would see broken: images that did not load
(naturalWidth 0) and tables wider than their container (or the page scrolling sideways).

Used by tests/test_browser.py (marker ``browser``, ``make browser-check``) and runnable on any report:

    python -m tests.browser_check out/report/report.html [--width 1280]

The report itself has no script; a copy of it with one added (run on the page's load event, writing its findings
into the DOM) sits beside it for the run, so relative image paths resolve as they do for the real page.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MARK = "genbench-browser-check"
# Collects, once every image has loaded or failed, each image's natural size and each table's width against its
# container and the body; the page's own width against the window's.
PROBE = """
<script>
window.addEventListener("load", () => {
  const out = {images: [], tables: [], page: {}};
  for (const img of document.images) {
    out.images.push({src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth,
                     height: img.naturalHeight});
  }
  const body = document.body.getBoundingClientRect();
  for (const t of document.querySelectorAll("table")) {
    const box = t.getBoundingClientRect();
    const label = (t.caption ? t.caption.textContent : t.rows[0].textContent).trim().slice(0, 80);
    out.tables.push({label: label, width: box.width, right: box.right, container: t.parentElement.clientWidth,
                     body_right: body.right});
  }
  out.page = {scroll_width: document.documentElement.scrollWidth, client_width: document.documentElement.clientWidth};
  const pre = document.createElement("pre");
  pre.id = "MARK";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
""".replace("MARK", MARK)


def find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def probe(html_path: str, width: int = 1280, height: int = 900, browser: str | None = None,
          timeout: float = 120.0) -> dict[str, Any]:
    """What the probe script measured on ``html_path`` rendered at ``width`` x ``height``."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found (tried {', '.join(BROWSERS)}): apt-get install chromium")
    page = open(html_path, encoding="utf-8").read()
    if "</body>" not in page:
        raise ValueError(f"{html_path}: no </body>")
    directory = os.path.dirname(os.path.abspath(html_path))
    fd, copy = tempfile.mkstemp(prefix=".browser-check-", suffix=".html", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page.replace("</body>", PROBE + "</body>", 1))
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                   "--virtual-time-budget=20000", "--dump-dom", f"file://{copy}"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        os.unlink(copy)
    m = re.search(rf'<pre id="{MARK}">(.*?)</pre>', done.stdout, re.S)
    if m is None:
        raise RuntimeError(f"{browser} rendered no result (exit {done.returncode}): {done.stderr[-1500:]}")
    return json.loads(html.unescape(m.group(1)))


def problems(found: dict[str, Any], slack: float = 1.0) -> list[str]:
    """Every broken image and overflowing table in a probe's findings, as readable lines (empty: all good)."""
    out = []
    for img in found["images"]:
        if not img["complete"] or not img["width"]:
            out.append(f"broken image: {img['src']} (naturalWidth {img['width']})")
    for t in found["tables"]:
        if t["width"] > t["container"] + slack or t["right"] > t["body_right"] + slack:
            out.append(f"table overflows its container: {t['label']!r} is {t['width']:.0f}px in "
                       f"{t['container']:.0f}px")
    page = found["page"]
    if page["scroll_width"] > page["client_width"] + slack:
        out.append(f"the page scrolls sideways: {page['scroll_width']}px in a {page['client_width']}px window")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args(argv)
    found = probe(args.html, args.width, args.height)
    bad = problems(found)
    print(f"{len(found['images'])} image(s), {len(found['tables'])} table(s) at {args.width}px")
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
