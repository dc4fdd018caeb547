"""img2dataset where it is good: its resize modes for retrieved images, compared pixel for pixel with img2dataset's own
Resizer, run in its own environment (``make img2dataset-tool``: its pins exclude ours, see Makefile).

The end-to-end use of an img2dataset download as a retrieval source is in tests/test_retrieval_e2e.py (it shares that
file's caption pool and loopback server).
"""

from __future__ import annotations

import io
import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from genbench.errors import UsageError
from genbench.retrieval.resize import RESIZE_MODES, Resizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
I2D_PYTHON = os.environ.get("GENBENCH_IMG2DATASET_PYTHON") or os.path.join(REPO, ".venv-img2dataset", "bin", "python")

# Run by img2dataset's Python: resize each input with img2dataset's Resizer, losslessly encoded (PNG).
_THEIRS = """
import io, json, sys
from img2dataset.resizer import Resizer
cases = json.load(sys.stdin)
out = []
for case in cases:
    r = Resizer(image_size=case["size"], resize_mode=case["mode"], resize_only_if_bigger=case["only_if_bigger"],
                encode_format="png", encode_quality=1)
    data, w, h, ow, oh, err = r(io.BytesIO(bytes.fromhex(case["data"])))
    out.append({"data": data.hex() if data else None, "err": err})
json.dump(out, sys.stdout)
"""


def _image(w: int, h: int, mode: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    img = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_resize_modes_give_img2dataset_pixels():
    assert os.access(I2D_PYTHON, os.X_OK), f"{I2D_PYTHON} missing: `make img2dataset-tool` installs img2dataset"
    inputs = [_image(40, 30, "RGB", 0), _image(300, 200, "RGB", 1), _image(64, 64, "RGB", 2), _image(17, 90, "RGB", 3),
              _image(120, 50, "RGBA", 4), _image(50, 33, "L", 5)]
    cases = [{"data": data.hex(), "size": size, "mode": mode, "only_if_bigger": only}
             for data in inputs for size in (32, 96) for mode in RESIZE_MODES for only in (False, True)]
    run = subprocess.run([I2D_PYTHON, "-c", _THEIRS], input=json.dumps(cases), capture_output=True, text=True,
                         timeout=240, env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    theirs = json.loads(run.stdout)
    assert len(theirs) == len(cases) == 6 * 2 * 5 * 2
    for case, their in zip(cases, theirs):
        assert their["err"] is None, their["err"]
        expected = np.asarray(Image.open(io.BytesIO(bytes.fromhex(their["data"]))).convert("RGB"))
        ours = Resizer(case["size"], case["mode"], case["only_if_bigger"])(bytes.fromhex(case["data"]))
        label = {k: v for k, v in case.items() if k != "data"}
        assert ours.shape == expected.shape, label
        # Same OpenCV operations: equal up to a rounding step (versions of OpenCV's kernels may differ by one level).
        assert int(np.abs(ours.astype(int) - expected.astype(int)).max()) <= 1, label


def test_resize_mode_shapes_and_white_border():
    wide = _image(300, 200, "RGB", 1)
    assert Resizer(96, "center_crop")(wide).shape == (96, 96, 3)
    assert Resizer(96, "keep_ratio")(wide).shape == (96, 144, 3)
    assert Resizer(96, "keep_ratio_largest")(wide).shape == (64, 96, 3)
    assert Resizer(96, "no")(wide).shape == (200, 300, 3)
    bordered = Resizer(96, "border")(wide)
    assert bordered.shape == (96, 96, 3) and (bordered[:16] == 255).all() and (bordered[-16:] == 255).all()
    small = _image(40, 30, "RGB", 0)
    assert Resizer(96, "center_crop", only_if_bigger=True)(small).shape == (30, 40, 3)  # left as it is
    with pytest.raises(ValueError):
        Resizer(32, "center_crop")(b"not an image")


def test_a_resize_mode_needs_an_image_size_and_names_the_field():
    from genbench.config import parse_config

    base = {"name": "r", "datasets": ["digits"], "clip": "tiny"}
    with pytest.raises(UsageError) as e:
        parse_config({**base, "sources": [{"source": "retrieved", "index": "idx", "shots": 1, "resize_mode": "border"}]})
    assert e.value.field == "sources[0].image_size"
    with pytest.raises(UsageError) as e:
        parse_config({**base, "sources": [{"source": "retrieved", "index": "idx", "shots": 1, "resize_mode": "fill"}]})
    assert e.value.field == "sources[0].resize_mode" and "keep_ratio_largest" in str(e.value)
