"""CLIP fine-tuning as a score on the toy world: the toy CLIP fine-tuned (LoRA, then full) on a k-shot original
collection of each toy dataset, the epoch chosen on a validation split of the collection, scored on the real test split.

For each dataset and mode: zero-shot and fine-tuned test accuracy (percent), the chosen epoch, the validation curve,
train_s (wall seconds of the epochs, validation included), steps and steps/s, and wall_s of the whole run (model
load, reading the shards, both test-split scorings). The collections are written by `genbench original` (one embedded
Ray cluster), the fine-tuning runs in this process (`genbench finetune --no-ray`) with ``--threads`` torch threads:
on a shared machine two OpenMP threads can be much slower than one.

    python benchmarks/finetune.py [--datasets digits digits_rot] [--shots 32] [--epochs 10] [--threads 1]
                                  [--collection-root DIR]

Ends by printing one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The toy CLIP was trained from scratch on 8x8 digits: it takes larger steps than a pretrained CLIP's defaults.
LR = {"lora": 1e-3, "full": 1e-4}


def _collection(root: str, dataset: str, shots: int) -> str:
    """The k-shot original collection of ``dataset`` under ``root``, written by `genbench original` if absent."""
    from genbench.cli import main as cli

    path = os.path.join(root, dataset, "original", "kshot_s0")
    if not os.path.exists(os.path.join(path, "manifest.json")):
        code = cli(["--no-progress", "original", "--dataset", dataset, "--shots", str(shots), "--out", root,
                    "--clip", "none", "--shard-size", "128", "--workers", "1"])
        if code != 0:
            raise SystemExit(f"genbench original failed for {dataset} (exit {code})")
    return path


def main() -> None:
    sys.path.insert(0, REPO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["digits", "digits_rot"], help="toy datasets to fine-tune on")
    p.add_argument("--shots", type=int, default=32, help="shots per class of the original collection")
    p.add_argument("--epochs", type=int, default=10, help="epochs per run")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads while training")
    p.add_argument("--collection-root", help="where the collections are (or are written; default: a temp dir)")
    args = p.parse_args()

    import torch

    from genbench.engine.finetune import finetune_collection
    from genbench.finetune import FinetuneSettings

    root = args.collection_root or tempfile.mkdtemp(prefix="genbench-ft-bench-")
    collections = {d: _collection(root, d, args.shots) for d in args.datasets}
    from genbench.engine.dispatch import shutdown_ray

    shutdown_ray()  # the collections are written: the runs below have the CPU to themselves
    torch.set_num_threads(args.threads)
    result: dict = {"benchmark": "finetune", "clip": "toy", "shots": args.shots, "epochs": args.epochs,
                    "threads": args.threads, "cpus": os.cpu_count(),
                    "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "runs": []}
    for dataset, path in collections.items():
        for mode in ("lora", "full"):
            settings = FinetuneSettings(mode=mode, lr=LR[mode], epochs=args.epochs, threads=args.threads)
            rec = finetune_collection(path, "toy", settings)
            result["runs"].append({
                "dataset": dataset, "mode": mode, "lr": LR[mode], "trainable_parameters": rec["trainable_parameters"],
                "zeroshot": round(rec["scores"]["zeroshot"], 2), "finetune": round(rec["scores"]["finetune"], 2),
                "gain": round(rec["gain"], 2), "chosen_epoch": rec["chosen_epoch"],
                "val_curve": [round(e["val_score"], 1) for e in rec["validation"]],
                "n_train": rec["n_train"], "n_val": rec["n_val"], "n_test": rec["n_test"],
                "steps": rec["steps"], "train_s": round(rec["train_seconds"], 2),
                "steps_per_s": round(rec["steps_per_second"], 1), "wall_s": round(rec["wall_seconds"], 2),
                "device": rec["device"],
            })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
