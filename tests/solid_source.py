"""A source of a new kind, defined outside the library: each class gets one solid colour. `tests/test_source_plugin.py`
names it in a config (``source: tests.solid_source:SolidSource``) and runs it through `genbench run`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from genbench import validate
from genbench.shards.schema import Sample, encode_image
from genbench.sources.base import ShardSamples, Source, SourceSpec, option


def colour(cls: int) -> tuple[int, int, int]:
    """A distinct colour per class."""
    return ((37 * cls + 20) % 256, (91 * cls + 60) % 256, (151 * cls + 100) % 256)


@dataclass(frozen=True, kw_only=True)
class SolidSpec(SourceSpec):
    size: int = option(16, validate.ints(1, 512), token="px{}")

    def base_name(self) -> str:
        return "solid"


class SolidSource(Source):
    kind = "solid"
    spec_type = SolidSpec

    def produce(self, task: Any, resources: Any) -> ShardSamples:
        size = task.job.spec.size
        samples = [Sample(c, k, encode_image(Image.new("RGB", (size, size), colour(c)), "png"), "png",
                          {"source": "solid", "colour": list(colour(c))})
                   for c, k in task.members()]
        return ShardSamples(samples)
