"""Generator families (SD 1.5 ... Sana): the shipped table ``families.yaml`` read into frozen records.

A family names a diffusers pipeline class, the hub ids of its published checkpoints and their sampling defaults (with
where each comes from), and what the family supports: classifier-free guidance and negative prompts, img2img, prompt
weighting. :func:`family_of` maps a generator reference to its family: one of the hub ids, ``tiny:<family>`` (a tiny
random build, ``configs/tiny-<family>.json``) or ``random:<family>`` (the real-size architecture with random weights,
``configs/<family>.json``). Any other reference (``tiny``, ``toy``, ``null``, a local directory, another hub id) has
no family and keeps genbench's plain defaults. Pure data: no torch here, so configs are checked before Ray starts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("families.yaml")
GUIDANCE_KINDS = ("cfg", "distilled", "embedded")
TINY_PREFIX, RANDOM_PREFIX = "tiny:", "random:"
GUIDANCE_TEXT = {
    "cfg": "run with classifier-free guidance",
    "distilled": "guidance-distilled (no classifier-free guidance)",
    "embedded": "guidance-distilled (its guidance scale is a conditioning input, not classifier-free guidance)",
}


@dataclass(frozen=True)
class Family:
    """One row of ``families.yaml`` (see its header for the meaning of each field)."""

    name: str
    label: str
    pipeline: str
    hub_ids: tuple[str, ...]
    guidance: str
    steps: int
    guidance_scale: float
    resolution: int
    max_sequence_length: int | None
    scheduler: str
    flow_matching: bool
    img2img: bool
    single_clip: bool
    source: str

    @property
    def negatives(self) -> bool:
        """Whether the family takes negative prompts (only with classifier-free guidance)."""
        return self.guidance == "cfg"

    def spec_defaults(self) -> dict[str, Any]:
        """The generated-source options this family sets when a config leaves them unset."""
        out: dict[str, Any] = {"steps": self.steps, "guidance_scale": self.guidance_scale, "scheduler": self.scheduler}
        if self.max_sequence_length is not None:
            out["max_sequence_length"] = self.max_sequence_length
        return out

    def describe(self) -> str:
        """``flux1-schnell is guidance-distilled (no classifier-free guidance)``: for error messages."""
        return f"{self.name} is {GUIDANCE_TEXT[self.guidance]}"


def _row(name: str, data: Any) -> Family:
    names = [f.name for f in fields(Family) if f.name != "name"]
    if not isinstance(data, dict) or set(data) != set(names):
        got = sorted(data) if isinstance(data, dict) else data
        raise ValueError(f"{TABLE.name}: family {name!r} must have exactly the keys {names}, got {got}")
    row = Family(name=name, **{**data, "hub_ids": tuple(data["hub_ids"]),
                               "guidance_scale": float(data["guidance_scale"])})
    if row.guidance not in GUIDANCE_KINDS:
        raise ValueError(f"{TABLE.name}: family {name!r}: guidance {row.guidance!r} is not one of {GUIDANCE_KINDS}")
    if row.scheduler not in ("default", "dpmsolver++") or (row.flow_matching and row.scheduler != "default"):
        raise ValueError(f"{TABLE.name}: family {name!r}: scheduler {row.scheduler!r} (flow matching: 'default' only)")
    if row.guidance == "distilled" and row.guidance_scale > 1:
        raise ValueError(f"{TABLE.name}: family {name!r} is distilled but its guidance_scale is {row.guidance_scale}")
    return row


@lru_cache(maxsize=1)
def families() -> dict[str, Family]:
    """Every family of the shipped table, by name, in the table's order."""
    import yaml

    data = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
    rows = {name: _row(name, row) for name, row in data["families"].items()}
    hubs = [h for row in rows.values() for h in row.hub_ids]
    if len(hubs) != len(set(hubs)):
        raise ValueError(f"{TABLE.name}: a hub id is listed under two families")
    return rows


def family_names() -> tuple[str, ...]:
    return tuple(families())


def family_of(ref: Any) -> Family | None:
    """The family of generator reference ``ref`` (a listed hub id, ``tiny:<family>``, ``random:<family>`` or
    ``random:tiny-<family>``), else None."""
    if not isinstance(ref, str):
        return None
    table = families()
    for prefix in (TINY_PREFIX, RANDOM_PREFIX):
        if ref.startswith(prefix):
            name = ref[len(prefix):]
            if prefix == RANDOM_PREFIX and name.startswith("tiny-"):
                name = name[len("tiny-"):]
            return table.get(name)
    return next((row for row in table.values() if ref in row.hub_ids), None)


def tiny_config(name: str) -> str:
    """The shipped config a ``tiny:<name>`` reference builds."""
    return f"tiny-{name}"
