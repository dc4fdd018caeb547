"""Knowledge injection on the toy world: train textual inversion and LoRA on 5 original shots per class of digits_rot
and measure the CLER of toy-generated digits_rot data against plain toy generation.

Every run is in this process on the CPU, one after another (no overlap), with the settings below; each method starts
from a freshly loaded toy pipeline. Generation: 16 images per class from the dataset's templates, 20 steps,
guidance 3, seeds 0..159; CLER on the digits_rot test split with the toy CLIP.

- train_s: wall seconds of the adaptation (all classes); steps_per_s: optimiser steps per second.
- cler: accuracy (%) of the class centroids of the generated images on the test split.

    python benchmarks/adapt.py [--quick | --engine | --sd21 [--steps N] [--resolution PX]]

``--quick`` runs the settings tests/test_adapt.py uses. ``--engine`` runs configs/toy-adapt.yaml through
``genbench run`` instead (the adaptation stage on the worker pool: one training task per class, or one for the
dataset, then the shards), and reports each collection's CLER and probe, the run's wall time, and from the committed
artefact records each unit's training seconds and steps/s. ``--sd21`` times textual-inversion and LoRA training steps
of the real SD 2.1-base architecture with random weights (``random:sd21-base``: its speed is the real speed) on the
GPU when there is one (float32 weights, as the trainers use; 512 px, batch 1 and 4), else a CPU smoke run of a few steps
at a smaller resolution that says "no GPU available". Ends by printing one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = "digits_rot"


def main() -> None:
    sys.path.insert(0, REPO)
    import numpy as np

    from genbench.adapt.lora import LoRASettings
    from genbench.adapt.run import adapt_dataset, apply
    from genbench.adapt.textual_inversion import TISettings
    from genbench.catalog import get_dataset
    from genbench.catalog.loaders import load_split
    from genbench.models.clip import load_clip
    from genbench.models.generator import load_generator

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the shorter settings of tests/test_adapt.py")
    parser.add_argument("--engine", action="store_true", help="run configs/toy-adapt.yaml with genbench run")
    parser.add_argument("--sd21", action="store_true", help="training steps/s of SD 2.1-base with random weights")
    parser.add_argument("--steps", type=int, default=None, help="--sd21: timed steps per setting (default GPU 20, CPU 2)")
    parser.add_argument("--resolution", type=int, default=None, help="--sd21: pixels (default GPU 512, CPU 256)")
    parser.add_argument("--shots", type=int, default=5)
    args = parser.parse_args()
    if args.engine:
        print(json.dumps(engine_run()))
        return
    if args.sd21:
        print(json.dumps(sd21_steps(args.steps, args.resolution)))
        return
    steps = 10 if args.quick else 20
    runs = ([("ti", "class", TISettings(steps=40, lr=3e-2, batch_size=16)),
             ("lora", "dataset", LoRASettings(steps=120, lr=8e-3, batch_size=32))] if args.quick else
            [("ti", "class", TISettings(steps=60, lr=2e-2, batch_size=16)),
             ("lora", "dataset", LoRASettings(steps=200, lr=5e-3, batch_size=32)),
             ("lora", "dataset", LoRASettings(steps=300, lr=5e-3, batch_size=32)),
             ("lora", "class", LoRASettings(steps=60, lr=5e-3, batch_size=16))])

    spec = get_dataset(DATASET)
    test = load_split(spec, "test")
    clip = load_clip("toy")
    test_emb = clip.encode_images([test.image(i) for i in range(len(test))])
    templates = tuple(spec.templates) + (spec.simple_template,)

    def cler(generator, name_of) -> float:
        images, classes = [], []
        for k in range(spec.num_classes):
            name = name_of(k)
            images += generator.generate([templates[j % len(templates)].format(name) for j in range(16)], [None] * 16,
                                         list(range(16 * k, 16 * k + 16)), steps=steps, guidance_scale=3.0)
            classes += [k] * 16
        emb, classes = clip.encode_images(images), np.asarray(classes)
        cents = np.stack([emb[classes == k].mean(0) for k in range(spec.num_classes)])
        cents /= np.linalg.norm(cents, axis=1, keepdims=True)
        return round(100 * float(((test_emb @ cents.T).argmax(1) == test.labels).mean()), 2)

    result = {"benchmark": "adapt", "dataset": DATASET, "shots": args.shots, "denoising_steps": steps,
              "plain_cler": cler(load_generator("toy"), lambda k: spec.classes[k]), "runs": []}
    for method, scope, settings in runs:
        gen = load_generator("toy")
        start = time.perf_counter()
        store = adapt_dataset(gen.pipe, "toy", DATASET, method, settings, args.shots, 0, tempfile.mkdtemp(),
                              scope=scope)
        seconds = time.perf_counter() - start
        total_steps = settings.steps * (spec.num_classes if scope == "class" else 1)
        result["runs"].append({
            "method": method, "scope": scope, "steps": settings.steps, "batch_size": settings.batch_size,
            "lr": settings.lr, "train_s": round(seconds, 1), "steps_per_s": round(total_steps / seconds, 1),
            "cler": cler(gen, lambda k: apply(gen.pipe, store, "toy", DATASET, k)),
        })
    print(json.dumps(result))


def sd21_steps(steps: int | None, resolution: int | None) -> dict:
    """Steps/s of textual inversion and LoRA on random:sd21-base; the paper's anchor is 1,000 steps per class in under
    10 minutes on an A100 (at least 1.67 steps/s)."""
    import torch
    from PIL import Image

    from genbench.adapt.lora import LoRASettings, train_lora
    from genbench.adapt.textual_inversion import TISettings, train_token
    from genbench.models.generator import load_generator

    gpu = torch.cuda.is_available()
    steps = steps or (20 if gpu else 2)
    px = resolution or (512 if gpu else 256)
    gen = load_generator("random:sd21-base", device="cuda" if gpu else "cpu", dtype="fp32")
    pipe = gen.pipe
    pipe.unet.config.sample_size = px // pipe.vae_scale_factor  # the trainers train at the pipeline's resolution
    rng = torch.Generator().manual_seed(0)
    images = [Image.fromarray(torch.randint(0, 256, (px, px, 3), generator=rng, dtype=torch.uint8).numpy())
              for _ in range(5)]
    templates = ("a photo of a {}.", "a close-up photo of the {}.")
    out = {"benchmark": "adapt-sd21", "device": torch.cuda.get_device_name(0) if gpu else "cpu (no GPU available)",
           "resolution": px, "dtype": "fp32", "runs": []}
    for batch in ((1, 4) if gpu else (1,)):
        for method in ("ti", "lora"):
            made: list = []

            def run(n: int, batch: int = batch, made: list = made, method: str = method) -> None:
                if method == "ti":
                    train_token(pipe, images, f"<|bench_{batch}_{n}|>", "dog", templates,
                                TISettings(steps=n, lr=5e-3, batch_size=batch), 0)
                else:
                    made.append(train_lora(pipe, images, [[t.format("dog") for t in templates]] * len(images),
                                           LoRASettings(steps=n, batch_size=batch), 0, tempfile.mkdtemp()))

            run(1)  # warm-up: kernels, allocator, adapter creation
            if gpu:
                torch.cuda.synchronize()
            start = time.perf_counter()
            run(steps)
            if gpu:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            rate = steps / seconds
            out["runs"].append({"method": method, "batch_size": batch, "steps": steps, "seconds": round(seconds, 2),
                                "steps_per_s": round(rate, 3),
                                "minutes_per_1000_steps": round(1000 / rate / 60, 1),
                                # what one class's adapter weighs on disk (UNet and text encoder, float32)
                                **({"adapter_mb": round(os.path.getsize(made[-1]) / 2**20, 1)} if made else {})})
    if gpu:
        out["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def engine_run() -> dict:
    """configs/toy-adapt.yaml end to end in a fresh output directory."""
    import glob
    import statistics
    import subprocess

    out = tempfile.mkdtemp(prefix="toy-adapt-")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "genbench.cli", "--no-progress", "run",
                    os.path.join(REPO, "configs", "toy-adapt.yaml"), "--out", out], check=True,
                   capture_output=True)
    wall = time.perf_counter() - start
    records = json.load(open(os.path.join(out, "results.json")))
    units = {}
    for path in glob.glob(os.path.join(out, "shards", DATASET, "adapt", "*", "*.json")):
        rec = json.load(open(path))
        units.setdefault(os.path.basename(os.path.dirname(path)).split("-")[0], []).append(rec)
    rows = [{"source": r["source"], "adaptation": (r.get("adaptation") or {}).get("method", "-"), "shots": r["shots"],
             "cler": round(r["scores"]["cler"], 2), "linear_probe": round(r["scores"]["linear_probe"], 2),
             "zeroshot": round(r["scores"]["zeroshot"], 2)} for r in records]
    training = {m: {"units": len(recs), "seconds_per_unit": round(statistics.fmean(r["seconds"] for r in recs), 2),
                    "steps_per_s": round(statistics.fmean(r["steps_per_s"] for r in recs), 1)}
                for m, recs in units.items()}
    return {"benchmark": "adapt-engine", "config": "configs/toy-adapt.yaml", "wall_s": round(wall, 1),
            "records": rows, "training": training}


if __name__ == "__main__":
    main()
