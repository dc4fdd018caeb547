"""Device-hours and USD for the images a plan still has to make, from the throughput table and the config's prices.

Generated data: the generator's rate on the chosen device kind (GPU-hours at the GPU instance's price per GPU, or
core-hours at the CPU price on ``cpu``). Retrieved data: its rate on CPU cores (search and download) at the CPU price.
Original data: the labelling price per image (``pricing.labelling_usd_per_image``), as the paper counts it. CLIP
embedding and scoring are not included. A collection with no figure in the table gets none, and the plan says so.
A generated collection with an ``adapt:`` block also carries the training still to do (:func:`with_adaptation`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from genbench import cost
from genbench.planning.throughput import TABLE_FILE, Rate, ThroughputTable

LABELLING = "labelling price"
NO_FIGURE = "no figure"


@dataclass(frozen=True)
class Estimate:
    images: int
    device: str | None  # device kind the rate is for (None: labelling price, or no figure)
    images_per_second: float | None
    device_hours: float | None  # hours of one device of that kind (GPU-hours, or CPU core-hours)
    usd: float | None
    status: str  # measured, estimate, labelling price, no figure
    basis: str


def _img2img_fraction(spec: Any) -> float:
    """The share of the denoising steps an img2img strategy runs (TIG, RA without an IP-Adapter: steps x strength)."""
    strategy = getattr(spec, "strategy", None)
    if strategy == "tig":
        return float(spec.tig_strength)
    if strategy == "ra" and not getattr(spec, "ra_ip_adapter", None):
        return float(spec.ra_strength)
    return 1.0


def _priced(images: int, rate: Rate, steps: int | None, device_type: str, pricing: Any,
            fraction: float = 1.0) -> Estimate:
    ips, note = rate.scaled(steps)
    if fraction < 1.0:
        ips /= fraction
        note = "; ".join(n for n in (note, f"img2img runs {fraction:g} of the steps") if n)
    seconds = images / ips
    usd = cost.usd(seconds, 0.0, pricing) if device_type == "gpu" else cost.usd(0.0, seconds, pricing)
    basis = f"{rate.basis}; {note}" if note else rate.basis
    return Estimate(images, rate.device, ips, seconds / 3600.0, usd, rate.status, basis)


def estimate(kind: str, spec: Any, images: int, table: ThroughputTable, pricing: Any,
             device: str | None = None) -> Estimate:
    """The estimate for making ``images`` images of a collection of source ``kind`` with ``spec``. ``device``
    chooses the device kind of generators (None: the first the table lists for that generator)."""
    if kind == "original":
        price = float(pricing.labelling_usd_per_image)
        return Estimate(images, None, None, None, images * price, LABELLING,
                        f"pricing.labelling_usd_per_image = {price:g} USD per image (Table 1: 1.2e-2, a labelling "
                        "price list); the copy itself takes seconds")
    generator = getattr(spec, "generator", None)
    if generator is not None:
        rate = table.generator_rate(generator, device)
        missing = f"no rate for generator {generator!r} on {device or 'any device'} in {TABLE_FILE}"
    else:
        rate = table.source_rate(kind)
        missing = f"no rate for source {kind!r} in {TABLE_FILE}"
    if rate is None:
        return Estimate(images, device if generator is not None else None, None, None, None, NO_FIGURE, missing)
    return _priced(images, rate, getattr(spec, "steps", None), table.device(rate.device).type, pricing,
                   _img2img_fraction(spec) if generator is not None else 1.0)


def with_adaptation(est: Estimate, job: Any, table: ThroughputTable, pricing: Any, device: str | None,
                    seen: set[str]) -> Estimate:
    """``est`` plus the training of the generator's adaptation (an ``adapt:`` block) that is not done yet: units to
    train x steps at the table's adaptation rate on the same device kind. Collections sharing one adaptation (one
    entry's strategies) count it once (``seen``: the artefact directories already counted)."""
    adapt = getattr(job.spec, "adapt", None)
    if adapt is None:
        return est
    from genbench.sources import adaptation

    store = adaptation.artefact_store(job)
    if str(store.dir) in seen:
        return est
    seen.add(str(store.dir))
    units = [u for u in adaptation.units(job) if not store.done(u)]
    if not units:
        return est
    steps = len(units) * int(adapt.steps)
    what = f"adaptation: {len(units)} unit(s) x {adapt.steps} {adapt.method} steps"
    rate = table.adaptation_rate(job.spec.generator, device or est.device)
    if rate is None or (est.device is not None and rate.device != est.device):
        return replace(est, basis=f"{est.basis}; {what}: no adaptation rate in {TABLE_FILE} (not included)")
    seconds = steps / rate.images_per_second
    gpu = table.device(rate.device).type == "gpu"
    usd = cost.usd(seconds, 0.0, pricing) if gpu else cost.usd(0.0, seconds, pricing)
    hours = (est.device_hours or 0.0) + seconds / 3600.0
    return replace(est, device_hours=hours, usd=(est.usd or 0.0) + usd,
                   basis=f"{est.basis}; {what} at {rate.images_per_second:g} steps/s ({rate.status}: {rate.basis})")
