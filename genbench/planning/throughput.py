"""The throughput table (``throughput.yaml`` beside this module) -> typed rates, and the rate that applies to a
collection on a device kind.

Plain data read on demand: a rate names its device kind, images per second per device, whether it was measured or is
an estimate, and its basis. Generators are matched by their exact reference; a planner asks :func:`generator_rate`
or :func:`source_rate` and gets None where the table has no figure (a plan then says so instead of guessing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from genbench import validate
from genbench.errors import UsageError

STATUSES = ("measured", "estimate")
DEVICE_TYPES = ("gpu", "cpu")
VERSION = 1
TABLE_FILE = "genbench/planning/throughput.yaml"


@dataclass(frozen=True)
class Device:
    kind: str
    type: str  # gpu: priced per GPU-hour; cpu: per core-hour
    name: str


@dataclass(frozen=True)
class Rate:
    """Images per second on one device of ``device`` kind (one GPU, or one CPU core); for an adaptation rate
    (``unit == "steps"``), training steps per second."""

    device: str
    images_per_second: float
    status: str
    basis: str
    steps: int | None = None  # the denoising steps the figure was taken at (None: not scaled)
    unit: str = "images"

    def scaled(self, steps: int | None) -> tuple[float, str]:
        """The rate at ``steps`` denoising steps, and a note when it was scaled from the figure's own steps."""
        if self.steps is None or steps is None or steps == self.steps:
            return self.images_per_second, ""
        return self.images_per_second * self.steps / steps, f"scaled from {self.steps} to {steps} steps"


@dataclass(frozen=True)
class GeneratorRates:
    name: str
    refs: tuple[str, ...]
    rates: tuple[Rate, ...]
    adaptation: tuple[Rate, ...] = ()  # textual inversion / LoRA training steps per second (unit "steps")


@dataclass(frozen=True)
class ThroughputTable:
    devices: dict[str, Device]
    generators: tuple[GeneratorRates, ...]
    sources: dict[str, tuple[Rate, ...]]  # source kind -> its rates (e.g. retrieval on CPU cores)

    def device(self, kind: str) -> Device:
        return self.devices[kind]

    def generator_rate(self, ref: str, device: str | None) -> Rate | None:
        """The rate of generator ``ref`` on ``device`` (None: its first listed device), or None when not listed."""
        for gen in self.generators:
            if ref in gen.refs:
                return _pick(gen.rates, device)
        return None

    def adaptation_rate(self, ref: str, device: str | None) -> Rate | None:
        """Training steps per second of adapting generator ``ref`` on ``device``, or None when not listed."""
        for gen in self.generators:
            if ref in gen.refs:
                return _pick(gen.adaptation, device)
        return None

    def source_rate(self, kind: str, device: str | None = None) -> Rate | None:
        return _pick(self.sources.get(kind, ()), device)


def _pick(rates: tuple[Rate, ...], device: str | None) -> Rate | None:
    if device is None:
        return rates[0] if rates else None
    return next((r for r in rates if r.device == device), None)


def _rate(data: Any, where: str, devices: dict[str, Device], unit: str = "images") -> Rate:
    if not isinstance(data, dict):
        raise UsageError(where, data, "a mapping with device, a rate, status and basis")
    if unit == "steps":
        validate.keys(data, ("device", "steps_per_second", "status", "basis"), f"{where}.")
    else:
        validate.keys(data, ("device", "images_per_second", "hours_per_1000_images", "instance_devices", "steps",
                             "status", "basis"), f"{where}.")
    device = validate.choice(data.get("device"), f"{where}.device", tuple(devices))
    given = [k for k in ("images_per_second", "hours_per_1000_images") if k in data]
    if unit == "steps":
        ips = validate.number(data.get("steps_per_second"), f"{where}.steps_per_second", 1e-6, 1e6)
    elif len(given) != 1:
        raise UsageError(where, given, "exactly one of images_per_second, hours_per_1000_images")
    elif "images_per_second" in data:
        # Bounded below too: a vanishing rate would turn into infinite hours and dollars.
        ips = validate.number(data["images_per_second"], f"{where}.images_per_second", 1e-6, 1e6)
        if "instance_devices" in data:
            raise UsageError(f"{where}.instance_devices", data["instance_devices"], "only with hours_per_1000_images")
    else:
        hours = validate.number(data["hours_per_1000_images"], f"{where}.hours_per_1000_images", 1e-6, 1e6)
        n = validate.integer(data.get("instance_devices", 1), f"{where}.instance_devices", 1, 1024)
        ips = 1000.0 / (hours * 3600.0 * n)  # per device: the instance's hours are n devices' hours
    steps = data.get("steps")
    return Rate(
        device=device,
        images_per_second=ips,
        status=validate.choice(data.get("status"), f"{where}.status", STATUSES),
        basis=" ".join(validate.text(data.get("basis"), f"{where}.basis", "where the figure comes from").split()),
        steps=None if steps is None else validate.integer(steps, f"{where}.steps", 1, 10_000),
        unit=unit,
    )


def _rates(data: Any, where: str, devices: dict[str, Device], unit: str = "images") -> tuple[Rate, ...]:
    if not isinstance(data, list) or not 0 < len(data) <= 100:
        raise UsageError(where, type(data).__name__, "a list of 1 to 100 rates")
    rates = tuple(_rate(r, f"{where}[{i}]", devices, unit) for i, r in enumerate(data))
    kinds = [r.device for r in rates]
    if len(set(kinds)) != len(kinds):
        raise UsageError(where, kinds, "one rate per device kind")
    return rates


def parse_table(data: Any, where: str = "throughput") -> ThroughputTable:
    """Validate the table's YAML data into typed objects; every error names its place in the file."""
    if not isinstance(data, dict):
        raise UsageError(where, type(data).__name__, "a mapping with version, devices, generators and sources")
    validate.keys(data, ("version", "devices", "generators", "sources"), f"{where}.")
    validate.choice(data.get("version"), f"{where}.version", (VERSION,))
    raw_devices = data.get("devices")
    if not isinstance(raw_devices, dict) or not raw_devices:
        raise UsageError(f"{where}.devices", raw_devices, "a mapping of device kind -> {type, name}")
    devices = {}
    if len(raw_devices) > 100:
        raise UsageError(f"{where}.devices", f"<{len(raw_devices)} kinds>", "at most 100 device kinds")
    for kind, d in raw_devices.items():
        w = f"{where}.devices.{kind}"
        if not isinstance(kind, str) or not 0 < len(kind) <= 40:
            raise UsageError(f"{where}.devices", kind, "device kinds named by strings of 1 to 40 characters")
        if not isinstance(d, dict):
            raise UsageError(w, d, "a mapping with type (gpu or cpu) and name")
        validate.keys(d, ("type", "name"), f"{w}.")
        devices[str(kind)] = Device(str(kind), validate.choice(d.get("type"), f"{w}.type", DEVICE_TYPES),
                                    validate.text(d.get("name"), f"{w}.name", "a short description"))
    generators = []
    seen: set[str] = set()
    raw_generators = data.get("generators") or []
    if not isinstance(raw_generators, list) or len(raw_generators) > 1000:
        raise UsageError(f"{where}.generators", type(raw_generators).__name__, "a list of at most 1000 generators")
    for i, g in enumerate(raw_generators):
        w = f"{where}.generators[{i}]"
        if not isinstance(g, dict):
            raise UsageError(w, g, "a mapping with name, refs and rates")
        validate.keys(g, ("name", "refs", "rates", "adaptation"), f"{w}.")
        refs = g.get("refs")
        if (not isinstance(refs, list) or not 0 < len(refs) <= 100
                or not all(isinstance(r, str) and 0 < len(r) <= 300 for r in refs)):
            raise UsageError(f"{w}.refs", refs, "a list of 1 to 100 generator references (strings of 1 to 300 "
                                                "characters)")
        if seen & set(refs):
            raise UsageError(f"{w}.refs", sorted(seen & set(refs)), "references listed under one generator only")
        seen |= set(refs)
        adaptation = _rates(g["adaptation"], f"{w}.adaptation", devices, "steps") if "adaptation" in g else ()
        generators.append(GeneratorRates(validate.text(g.get("name"), f"{w}.name"), tuple(refs),
                                         _rates(g.get("rates"), f"{w}.rates", devices), adaptation))
    sources = data.get("sources") or {}
    if not isinstance(sources, dict):
        raise UsageError(f"{where}.sources", sources, "a mapping of source kind -> list of rates")
    return ThroughputTable(devices, tuple(generators),
                           {str(k): _rates(v, f"{where}.sources.{k}", devices) for k, v in sources.items()})


@lru_cache(maxsize=None)
def load_table() -> ThroughputTable:
    """The shipped table (read once per process)."""
    text = (resources.files("genbench.planning") / "throughput.yaml").read_text(encoding="utf-8")
    return parse_table(yaml.safe_load(text), TABLE_FILE)
