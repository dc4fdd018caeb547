"""Images/s of one generation worker per generator family, and the fraction of the GPU's dense bf16 peak it reaches.

GPU, default: the SD 2.1-base rows: the published SD 2.1-base architecture (UNet, VAE, OpenCLIP ViT-H text tower) with
random weights (``random:sd21-base``; speed does not depend on the weights), bf16, DPM-Solver++ with 25 steps,
guidance on, 512x512, over batch sizes with and without ``torch.compile`` of the UNet.

GPU, ``--families all`` (or a comma list): every generator family (genbench/models/families.yaml) as its real-size
architecture with random weights (``random:<family>``) at its published defaults (steps, guidance, resolution,
max_sequence_length, scheduler), bf16, the same batch sizes, eager and compiled (the UNet or transformer).

No GPU (or ``--smoke``): says "no GPU available" and takes CPU smoke figures of every family at its defaults, one image
per call, bf16: families in ``--real`` (default: those whose real-size build fits in 24 GB) as their real-size build at
``--smoke-size`` px with at most ``--smoke-steps`` steps, the others as their tiny build (``tiny:<family>``) at its
own size and the family's full default steps. These check the code paths; they are not throughput figures.
``--ref`` measures one reference instead (the earlier single-model mode). Ends with exactly one JSON line.

    python benchmarks/generation.py                          # GPU: SD 2.1-base, batches 1..32, eager and compiled
    python benchmarks/generation.py --families all           # GPU: every family at its defaults
    python benchmarks/generation.py --families flux1-schnell,sana --batch-sizes 1,8 --compile-modes off
    python benchmarks/generation.py --smoke                  # CPU smoke of every family
    python benchmarks/generation.py --smoke --ref tiny       # CPU, the tiny SD model only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time

import torch

# One 512x512 image, 25 steps, classifier-free guidance (UNet on a doubled batch) with the SD 2.1-base architecture.
SD21_TFLOP_PER_IMAGE = 42.7
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0}
# Families whose real-size build fits the development machine (24 GB) in bf16: up to SD 3.5 Medium's 7.9B parameters
# (15.8 GB) with its T5-XXL encoder. SD 3.5 Large Turbo (13.7B, 27 GB) and FLUX.1 (16.8B, 34 GB) do not.
CPU_REAL = "sd15,sd21-base,sd21,sdxl,sdxl-turbo,sd35-medium,pixart-sigma,sana"

log = logging.getLogger("benchmarks.generation")


def _peak_tflops(device: str, override: float | None) -> float | None:
    if override:
        return override
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        for key, value in PEAK_BF16_TFLOPS.items():
            if key in name:
                return value
    return None


def _count_tflop(gen, size: int | None, steps: int, guidance: float, extra: dict) -> float:
    """TFLOP of one image end to end (text encoders, denoiser steps, VAE decode), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        gen.generate(["a photo of a dog"], [None], [0], steps=steps, guidance_scale=guidance, height=size, width=size,
                     **extra)
    return counter.get_total_flops() / 1e12


def _time_batch(gen, batch: int, size: int | None, steps: int, guidance: float, repeats: int, sync,
                extra: dict) -> dict:
    prompts = [f"a photo of a dog, number {i}" for i in range(batch)]
    negatives = [None] * batch
    kw = dict(steps=steps, guidance_scale=guidance, height=size, width=size, **extra)
    gen.generate(prompts, negatives, list(range(batch)), **kw)
    sync()  # warm-up above: kernel selection, allocator growth, compilation for this shape
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        gen.generate(prompts, negatives, [1000 * r + i for i in range(batch)], **kw)
        sync()
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"batch": batch, "seconds_per_batch": round(best, 4), "images_per_s": round(batch / best, 4)}


def measure(ref: str, *, steps: int, size: int | None, guidance: float, max_sequence_length: int | None,
            batches: list[int], modes: list[str], repeats: int, device: str, dtype: str, cache_dir: str | None,
            count_flops: bool) -> dict:
    """Load ``ref`` once per compile mode and time each batch size; the FLOPs of one image are counted in eager mode."""
    from genbench.models.generator import load_generator

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    extra = {"max_sequence_length": max_sequence_length} if max_sequence_length else {}
    results, tflop, load_s = [], None, None
    for mode in modes:
        t0 = time.perf_counter()
        gen = load_generator(ref, device=device, dtype=dtype, cache_dir=cache_dir, compile=(mode == "on"))
        load_s = load_s if load_s is not None else round(time.perf_counter() - t0, 1)
        log.info("loaded %s (compile=%s) in %.1fs", ref, mode, time.perf_counter() - t0)
        size = size or gen.default_size
        if count_flops and tflop is None and mode == "off":
            tflop = _count_tflop(gen, size, steps, guidance, extra)
            log.info("counted %.3f TFLOP per image", tflop)
        for batch in batches:
            try:
                point = _time_batch(gen, batch, size, steps, guidance, repeats, sync, extra)
            except torch.OutOfMemoryError:
                log.warning("batch %d does not fit in memory; stopping this mode", batch)
                torch.cuda.empty_cache()
                break
            point["compile"] = mode == "on"
            results.append(point)
            log.info("%s %s", ref, point)
        del gen
        if cuda:
            torch.cuda.empty_cache()
    return {"ref": ref, "steps": steps, "size": size, "guidance": guidance, "max_sequence_length": max_sequence_length,
            "load_and_build_s": load_s, "tflop_per_image_counted": round(tflop, 4) if tflop is not None else None,
            "results": results}


def _finish(row: dict, peak: float | None, nominal: float | None = None) -> dict:
    """Fraction of peak for each point and the best point, from counted FLOPs (else the nominal figure)."""
    flop = row["tflop_per_image_counted"] or nominal
    for p in row["results"]:
        p["fraction_of_peak"] = round(p["images_per_s"] * flop / peak, 4) if (peak and flop) else None
    best = max(row["results"], key=lambda p: p["images_per_s"]) if row["results"] else None
    return {**row, "images_per_s": best["images_per_s"] if best else None, "best": best,
            "fraction_of_peak": best["fraction_of_peak"] if best else None}


def _prune(ref: str, cache_dir: str | None) -> None:
    """Delete a built model once measured (real-size builds take gigabytes); a later use builds it again."""
    from genbench.models import refs
    from genbench.models.build import built_pipeline_dir

    kind, value = refs.resolve_generator(ref)
    if kind in ("tiny", "random"):
        shutil.rmtree(built_pipeline_dir(value, cache_dir), ignore_errors=True)


def _families(args, cuda: bool, common: dict, peak: float | None) -> list[dict]:
    from genbench.models.families import families

    table = families()
    names = list(table) if args.families in (None, "all") else args.families.split(",")
    real = set((args.real if args.real is not None else ("all" if cuda else CPU_REAL)).split(","))
    rows = []
    for name in names:
        fam = table[name]
        full = cuda or "all" in real or name in real
        steps = args.steps or (fam.steps if cuda or not full else min(fam.steps, args.smoke_steps))
        size = args.size or (fam.resolution if cuda else (args.smoke_size if full else None))
        ref = f"random:{name}" if full else f"tiny:{name}"
        row = measure(ref, steps=steps, size=size, guidance=fam.guidance_scale,
                      max_sequence_length=fam.max_sequence_length, **common)
        rows.append({"family": name, "build": "real-size" if full else "tiny", "guidance_kind": fam.guidance,
                     "scheduler": fam.scheduler, **_finish(row, peak)})
        log.info("%s", {k: v for k, v in rows[-1].items() if k != "results"})
        if args.prune_builds:
            _prune(ref, args.cache_dir)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU even where a GPU is visible: checks the code paths")
    parser.add_argument("--families", default=None, help="all or a comma list of families (GPU default: the SD 2.1 "
                        "rows only; CPU default: all)")
    parser.add_argument("--real", default=None, help=f"families measured at real size (GPU: all; CPU: {CPU_REAL})")
    parser.add_argument("--ref", default=None, help="one generator reference instead of families (e.g. tiny)")
    parser.add_argument("--batch-sizes", default=None, help="comma list (default 1,2,4,8,16,32; CPU: 1)")
    parser.add_argument("--compile-modes", default=None, help="off,on (default both on GPU, off on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="override every row's steps")
    parser.add_argument("--size", type=int, default=None, help="override every row's size")
    parser.add_argument("--smoke-steps", type=int, default=2, help="CPU real-size builds: at most this many steps")
    parser.add_argument("--smoke-size", type=int, default=256, help="CPU real-size builds: this size")
    parser.add_argument("--guidance", type=float, default=None, help="--ref mode (default 7.5)")
    parser.add_argument("--dtype", default=None, help="bf16 (default), fp32 (default of --ref on CPU) or fp16")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per point, best kept (default 3; CPU 1)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the device's dense bf16 peak")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--prune-builds", action="store_true", help="delete each built model once measured")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    cuda = torch.cuda.is_available() and not args.smoke
    gpu = torch.cuda.get_device_name() if cuda else ("not used (--smoke)" if torch.cuda.is_available()
                                                     else "no GPU available")
    if not cuda:
        log.info("%s: CPU smoke figures only", gpu)
    device = "cuda" if cuda else "cpu"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = args.dtype or ("fp32" if args.ref is not None and not cuda else "bf16")
    common = dict(batches=[int(b) for b in (args.batch_sizes or ("1,2,4,8,16,32" if cuda else "1")).split(",")],
                  modes=(args.compile_modes or ("off,on" if cuda else "off")).split(","),
                  repeats=args.repeats or (3 if cuda else 1), device=device, dtype=dtype, cache_dir=args.cache_dir,
                  count_flops=cuda or args.ref is not None)
    peak = _peak_tflops(device, args.peak_tflops)
    summary = {"benchmark": "generation", "device": torch.cuda.get_device_name() if cuda else "cpu",
               "gpu": gpu, "smoke": not cuda,
               "dtype": dtype, "torch_threads": torch.get_num_threads(), "peak_tflops": peak}
    if args.ref is not None or (cuda and args.families is None):
        # One reference: the SD 2.1-base rows on a GPU (or --ref), as this script has always measured them.
        ref = args.ref or "random:sd21-base"
        steps, size = args.steps or (25 if cuda else 2), args.size or (512 if cuda else 64)
        row = measure(ref, steps=steps, size=size, guidance=7.5 if args.guidance is None else args.guidance,
                      max_sequence_length=None, **common)
        # Counted FLOPs of this very setting; the nominal SD 2.1-base figure (512 px, 25 steps, guidance) is kept
        # beside it as a cross-check (the count gives 40.2 UNet + 2.5 VAE decode + 0.1 text = 42.8 TFLOP there).
        nominal = SD21_TFLOP_PER_IMAGE if (ref == "random:sd21-base" and steps == 25 and size == 512) else None
        summary.update(_finish(row, peak, nominal), scheduler="dpmsolver++", tflop_per_image_nominal=nominal)
    else:
        summary["families"] = _families(args, cuda, common, peak)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
