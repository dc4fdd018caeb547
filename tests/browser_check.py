"""Render a report's HTML in headless Chromium and find what a reader would see broken or unreadable: images that did
not load (naturalWidth 0) or that the page shrinks (a figure shown narrower than it was drawn shrinks its text with
it), tables wider than their container, any element reaching past the window's right edge (or the page scrolling
sideways), and text set smaller than 12 px.

Used by tests/test_browser.py (marker ``browser``, ``make browser-check``) and runnable on any report:

    python -m tests.browser_check out/report/report.html [--width 1280] [--screenshot shot.png]

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
MIN_FONT_PX = 12.0  # the smallest text a reader at a normal window should be asked to read
MIN_IMAGE_SCALE = 0.97  # a figure shown at less than this fraction of its drawn width has shrunk its text
MIN_IMAGE_PX = 300  # and none is shown narrower than this (or than itself, if it was drawn narrower)
# Collects, once every image has loaded or failed, each image's natural and rendered size, each table's width against
# its container and the body, every element whose box reaches past the window's right edge, the computed font size of
# every element that holds text itself; the page's own width against the window's.
PROBE = """
<script>
window.addEventListener("load", () => {
  const out = {images: [], tables: [], page: {}, overflow: [], fonts: []};
  for (const img of document.images) {
    const box = img.getBoundingClientRect();
    out.images.push({src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth,
                     height: img.naturalHeight, shown_width: box.width, shown_height: box.height});
  }
  const view = document.documentElement.clientWidth;
  const name = (el) => el.tagName.toLowerCase() + (el.className ? "." + el.className : "");
  const scroller = (el) => {  // inside a box that scrolls sideways on its own, reaching past the edge is not overflow
    for (let p = el.parentElement; p; p = p.parentElement) {
      if (["auto", "scroll"].includes(getComputedStyle(p).overflowX)) return p;
    }
    return null;
  };
  const fonts = new Map();
  for (const el of document.body.querySelectorAll("*")) {
    if (el.id === "MARK" || ["SCRIPT", "STYLE"].includes(el.tagName)) continue;
    const box = el.getBoundingClientRect();
    if (box.width && (box.right > view + 0.5 || box.left < -0.5) && !scroller(el)) {
      out.overflow.push({element: name(el), left: box.left, right: box.right,
                         text: el.textContent.trim().slice(0, 60)});
    }
    const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    if (own && box.width) {
      const px = parseFloat(getComputedStyle(el).fontSize);
      const key = name(el) + "@" + px;
      if (!fonts.has(key)) {
        fonts.set(key, {element: name(el), px: px, count: 0, text: el.textContent.trim().slice(0, 60)});
      }
      fonts.get(key).count += 1;
    }
  }
  out.fonts = Array.from(fonts.values());
  const body = document.body.getBoundingClientRect();
  for (const t of document.querySelectorAll("table")) {
    const box = t.getBoundingClientRect();
    const label = (t.caption ? t.caption.textContent : t.rows[0].textContent).trim().slice(0, 80);
    out.tables.push({label: label, width: box.width, right: box.right, container: t.parentElement.clientWidth,
                     body_right: body.right});
  }
  out.page = {scroll_width: document.documentElement.scrollWidth, client_width: document.documentElement.clientWidth,
              scroll_height: document.documentElement.scrollHeight};
  const pre = document.createElement("pre");
  pre.id = "MARK";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
""".replace("MARK", MARK)


def find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def screenshot(html_path: str, png_path: str, width: int = 1280, height: int | None = None,
               browser: str | None = None, timeout: float = 120.0) -> str:
    """A PNG of ``html_path`` as Chromium shows it in a ``width`` px window, ``height`` px tall (default: the whole
    page, measured by :func:`probe`)."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found (tried {', '.join(BROWSERS)}): apt-get install chromium")
    if height is None:
        height = int(probe(html_path, width, browser=browser, timeout=timeout)["page"]["scroll_height"]) + 20
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [*_flags(browser, profile, width, height), f"--screenshot={os.path.abspath(png_path)}",
               f"file://{os.path.abspath(html_path)}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not os.path.exists(png_path):
        raise RuntimeError(f"{browser} wrote no screenshot (exit {done.returncode}): {done.stderr[-1500:]}")
    return png_path


def _flags(browser: str, profile: str, width: int, height: int) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", "--virtual-time-budget=20000"]


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
            cmd = [*_flags(browser, profile, width, height), "--dump-dom", f"file://{copy}"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        os.unlink(copy)
    m = re.search(rf'<pre id="{MARK}">(.*?)</pre>', done.stdout, re.S)
    if m is None:
        raise RuntimeError(f"{browser} rendered no result (exit {done.returncode}): {done.stderr[-1500:]}")
    return json.loads(html.unescape(m.group(1)))


def problems(found: dict[str, Any], slack: float = 1.0, min_font_px: float = MIN_FONT_PX,
             min_scale: float = MIN_IMAGE_SCALE, min_image_px: float = MIN_IMAGE_PX) -> list[str]:
    """Every broken or shrunken image, overflowing table or element and too-small text in a probe's findings, as
    readable lines (empty: all good)."""
    out = []
    for img in found["images"]:
        if not img["complete"] or not img["width"]:
            out.append(f"broken image: {img['src']} (naturalWidth {img['width']})")
            continue
        if img["shown_width"] < min_scale * img["width"]:
            out.append(f"image shrunk: {img['src']} drawn {img['width']}px wide, shown at {img['shown_width']:.0f}px "
                       f"({img['shown_width'] / img['width']:.0%}), its text shrinks with it")
        if img["shown_width"] < min(min_image_px, img["width"]) - slack:
            out.append(f"image too small: {img['src']} shown {img['shown_width']:.0f}px wide")
    for f in found.get("fonts", []):
        if f["px"] < min_font_px:
            out.append(f"text at {f['px']:.1f}px (< {min_font_px:.0f}px) in {f['count']} {f['element']} "
                       f"element(s), e.g. {f['text']!r}")
    for o in found.get("overflow", []):
        out.append(f"element past the window's edge: {o['element']} spans {o['left']:.0f}-{o['right']:.0f}px "
                   f"({o['text']!r})")
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
    ap.add_argument("--screenshot", help="also write a PNG of the whole page at --width")
    args = ap.parse_args(argv)
    found = probe(args.html, args.width, args.height)
    if args.screenshot:
        print(f"screenshot: {screenshot(args.html, args.screenshot, args.width)}")
    bad = problems(found)
    print(f"{len(found['images'])} image(s), {len(found['tables'])} table(s) at {args.width}px")
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
