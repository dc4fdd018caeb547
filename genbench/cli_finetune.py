"""`genbench finetune`: its parser and handler (``genbench.cli`` wires them in). Like the rest of the command line it
parses arguments and calls the library; nothing heavy is imported until the command runs."""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

log = logging.getLogger("genbench")


def add_parser(sub: Any) -> None:
    """Add the ``finetune`` subcommand to the ``sub`` subparsers of ``genbench``."""
    from genbench.cli import _add_storage, _positive

    # Numbers are parsed as plain int/float: FinetuneSettings checks their ranges and names finetune.<field> (exit 2).
    ft = sub.add_parser("finetune", help="fine-tune CLIP on a collection (LoRA or full), choose the epoch on a "
                                         "validation split of its images, score on the real test split beside "
                                         "zero-shot")
    ft.add_argument("--collection", required=True, help="collection directory (or URL) to train on")
    ft.add_argument("--out", required=True, help="JSON file for the record (scores, chosen epoch, validation curve, "
                                                 "settings)")
    ft.add_argument("--clip", help="CLIP model to fine-tune (default: the one the collection's manifest names)")
    ft.add_argument("--shots", type=_positive("--shots"), help="train on the first K shots only (a prefix)")
    ft.add_argument("--mode", choices=("lora", "full"), help="LoRA adapters on both towers (default) or every weight")
    ft.add_argument("--epochs", type=int, help="epochs, each ending with a validation score (1-1000; default 10)")
    ft.add_argument("--steps-per-epoch", type=int,
                    help="optimizer steps per epoch (1-1000000; default: one pass over the training images)")
    ft.add_argument("--lr", type=float, help="peak learning rate, in (0, 1] (default 1e-4 for lora, 1e-5 for full)")
    ft.add_argument("--rank", type=int, help="LoRA rank (1-256; default 16)")
    ft.add_argument("--alpha", type=float, help="LoRA alpha: adapters are scaled by alpha/rank (default 32)")
    ft.add_argument("--batch-size", type=int, help="images per step (1-4096; default 32)")
    ft.add_argument("--val-fraction", type=float,
                    help="share of each class's training images held out to choose the epoch, in (0, 0.5] "
                         "(default 0.2)")
    ft.add_argument("--mix-original", type=int, metavar="K",
                    help="add the first K real training images per class (the K-shot original data of the "
                         "collection's run seed; default 0: none)")
    ft.add_argument("--weight-decay", type=float, help="AdamW weight decay, in [0, 1] (default 0.1)")
    ft.add_argument("--templates-per-step", type=int,
                    help="templates drawn per class in each training step (default 4; validation and test use all)")
    ft.add_argument("--seed", type=int, help="seed of the validation carve, batches and adapter init (default 0)")
    ft.add_argument("--threads", type=int, help="torch CPU threads while training and scoring (default: the Ray "
                                                "task's CPUs; with --no-ray, as torch sets them)")
    ft.add_argument("--accept-test-subset", action="store_true",
                    help="score on a test split whose size differs from the catalog's (a known subset)")
    ft.add_argument("--data-root", help="where the datasets are looked for (default: $GENBENCH_DATA, else ~/data)")
    ft.add_argument("--cache-dir", help="model cache (default: $GENBENCH_CACHE or ~/.cache/genbench)")
    ft.add_argument("--no-ray", action="store_true", help="run in this process (its GPU if it has one) instead of "
                                                          "as a Ray task")
    ft.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else an embedded local cluster)")
    ft.add_argument("--num-cpus", type=float, default=1.0, help="CPUs of the Ray task (default 1)")
    ft.add_argument("--num-gpus", type=float, help="GPUs of the Ray task (default: 1 if the cluster has a GPU, else 0)")
    _add_storage(ft)


def run(args: argparse.Namespace) -> int:
    """Check the settings, fine-tune (a Ray task, or in this process with ``--no-ray``), write the record to
    ``--out`` and print the test scores and the chosen epoch as one JSON line."""
    from genbench.cli import _storage
    from genbench.engine.finetune import finetune_collection, finetune_on_ray
    from genbench.errors import UsageError
    from genbench.finetune.settings import FinetuneSettings
    from genbench.shards.manifest import json_bytes

    settings = FinetuneSettings.from_options(
        mode=args.mode, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, lr=args.lr, rank=args.rank,
        alpha=args.alpha, batch_size=args.batch_size, val_fraction=args.val_fraction, mix_original=args.mix_original,
        weight_decay=args.weight_decay, templates_per_step=args.templates_per_step, seed=args.seed,
        threads=args.threads)
    if os.path.isdir(args.out):
        raise UsageError("--out", args.out, "a file path for the JSON record (this is a directory)")
    common: dict[str, Any] = {"shots": args.shots, "data_root": args.data_root, "cache_dir": args.cache_dir,
                              "storage_options": _storage(args), "accept_test_subset": args.accept_test_subset}
    if args.no_ray:
        record = finetune_collection(args.collection, args.clip, settings, progress=not args.no_progress, **common)
    else:
        record = finetune_on_ray(args.collection, args.clip, settings, address=args.address, num_cpus=args.num_cpus,
                                 num_gpus=args.num_gpus, **common)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(json_bytes(record))
    if record.get("notice"):
        log.warning("%s", record["notice"])
    print(json.dumps({**record["scores"], "chosen_epoch": record["chosen_epoch"], "metric": record["metric"]}))
    return 0
