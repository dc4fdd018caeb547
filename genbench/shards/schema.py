"""The sample schema inside a shard: keys, files and the json metadata downstream trainers read."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from genbench.errors import UsageError

IMAGE_FORMATS = ("jpg", "png", "webp")
_KEY = re.compile(r"^c(\d{4,})-k(\d{6,})$")


def sample_key(cls: int, shot: int) -> str:
    """``c0042-k000017`` for class 42, shot 17: no dots (webdataset splits keys at the first dot)."""
    return f"c{int(cls):04d}-k{int(shot):06d}"


def parse_key(key: str) -> tuple[int, int]:
    m = _KEY.match(key)
    if not m:
        raise ValueError(f"not a genbench sample key: {key!r}")
    return int(m.group(1)), int(m.group(2))


def encode_image(image: Image.Image, fmt: str = "jpg", quality: int = 95) -> bytes:
    """Encode an RGB image; JPEG quality 95 by default (PNG is lossless but ~30x slower to encode)."""
    if fmt not in IMAGE_FORMATS:
        raise UsageError("image_format", fmt, IMAGE_FORMATS)
    buf = io.BytesIO()
    image = image.convert("RGB")
    if fmt == "jpg":
        image.save(buf, format="JPEG", quality=int(quality))
    elif fmt == "png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format="WEBP", quality=int(quality))
    return buf.getvalue()


def decode_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


@dataclass
class Sample:
    """One sample as written: ``meta`` becomes the ``json`` file (class name, prompt, seed, source reference, ...);
    ``txt``, the sample's caption (the prompt of a generated image, the alt text of a retrieved one, a class template
    for an original), becomes the ``txt`` file that caption-based trainers (open_clip's WebDataset input) require."""

    cls: int
    shot: int
    image: bytes
    ext: str
    meta: dict[str, Any] = field(default_factory=dict)
    txt: str | None = None

    @property
    def key(self) -> str:
        return sample_key(self.cls, self.shot)

    def to_wds(self) -> dict[str, Any]:
        meta = {"key": self.key, "cls": int(self.cls), "shot": int(self.shot), **self.meta}
        out = {
            "__key__": self.key,
            self.ext: self.image,
            "cls": str(int(self.cls)).encode(),
            "json": json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        }
        if self.txt is not None:
            out["txt"] = self.txt.encode("utf-8")
        return out


def class_caption(template: str, class_name: str) -> str:
    """A class's caption from one of its dataset's CLIP templates (``{}`` stands for the class name)."""
    return template.replace("{}", class_name, 1)
