"""The ``genbench`` command. It only parses arguments, configures logging and calls the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from genbench import cli_finetune
from genbench.cli_args import RESUME, Terminated, on_sigterm, was_terminated
from genbench.cli_args import global_flags_first as _global_flags_first
from genbench.cli_args import nonneg as _nonneg
from genbench.cli_args import positive as _positive
from genbench.cli_args import storage_option as _storage_option
from genbench.cli_args import unit_interval as _unit_interval
from genbench.errors import GenbenchError, ShardFailures, UsageError

log = logging.getLogger("genbench")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit code 2, like every other usage error
        sys.stderr.write(f"genbench: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def _add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-option", action="append", default=[], type=_storage_option, metavar="KEY=VALUE",
                   help="fsspec option for s3:// and other remote paths (repeatable; credentials come from the environment)")


def _storage(args: argparse.Namespace) -> dict:
    from genbench.config import parse_storage_options

    return parse_storage_options(dict(args.storage_option), "--storage-option")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="genbench", description="Benchmark generated, retrieved and original data for visual recognition.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run an experiment config end to end")
    r.add_argument("config")
    r.add_argument("--out", help="output directory or URL (default: the config's 'out', else out/<name>)")
    r.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else an embedded local cluster)")
    r.add_argument("--workers", type=_positive("--workers"), help="number of worker actors")

    pl = sub.add_parser("plan", help="dry run: collections, images, shards, missing data and estimated cost; "
                        "loads no model and starts no Ray")
    pl.add_argument("config")
    pl.add_argument("--out", help="output whose existing shards count as done (default: as `genbench run`)")
    pl.add_argument("--data-root", help="where the datasets are looked for (default: the config's data_root, else "
                    "$GENBENCH_DATA, else ~/data)")
    pl.add_argument("--device", help="device kind the generators' rates are for (a100, h100, h200, cpu; default: "
                    "each generator's first in genbench/planning/throughput.yaml)")
    pl.add_argument("--collections", action="store_true", help="one row per collection instead of per source variant")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON")

    common_build = argparse.ArgumentParser(add_help=False)
    common_build.add_argument("--dataset", required=True)
    common_build.add_argument("--shots", required=True, type=_positive("--shots"))
    common_build.add_argument("--out", required=True, help="root of the collections: OUT/<dataset>/<source>/<variant>/")
    common_build.add_argument("--clip", default="ViT-B-32:openai", help="CLIP model for the embedding sidecars ('none' to skip)")
    common_build.add_argument("--seed", type=_nonneg("--seed"), default=0, help="run seed")
    common_build.add_argument("--workers", type=_positive("--workers"))
    common_build.add_argument("--shard-size", type=_positive("--shard-size"), default=1000)
    common_build.add_argument("--data-root")
    common_build.add_argument("--address")
    _add_storage(common_build)

    # Source options default to None here: a value the user did not give is left to the source's own default.
    g = sub.add_parser("generate", parents=[common_build], help="generate a collection with a text-to-image model")
    g.add_argument("--generator", required=True, action="append", help="'tiny', tiny:<family>, 'null', a hub id or a "
                   "local diffusers directory; repeated: one collection per generator, in one run")
    g.add_argument("--strategy", default="st", help="prompt strategy (st, dt, ce, rd, np, np+rd, tig)")
    g.add_argument("--steps", type=_positive("--steps"), help="denoising steps (default: the generator family's, else 25)")
    g.add_argument("--guidance-scale", type=float, help="guidance scale (default: the generator family's, else 7.5)")
    g.add_argument("--batch-size", type=_positive("--batch-size"), help="images per generator call (default 8)")
    g.add_argument("--resolution", type=_positive("--resolution"), help="generation size in pixels (default: the model's)")
    g.add_argument("--image-size", type=_positive("--image-size"), help="stored size in pixels (default: as generated)")
    g.add_argument("--image-format", help="jpg (default), png or webp")
    g.add_argument("--dtype", help="bf16, fp16 or fp32 (default: bf16 on GPU, fp32 on CPU)")

    o = sub.add_parser("original", parents=[common_build], help="write a k-shot collection of the dataset's own train split")
    o.add_argument("--image-format", help="png (default), jpg or webp")

    e = sub.add_parser("embed", help="embed a real split (or a collection's shards) with a CLIP model")
    e.add_argument("--dataset")
    e.add_argument("--split", default="test")
    e.add_argument("--clip", required=True)
    e.add_argument("--out", help="FILE.parquet for a split's embeddings (columns index, cls, embedding)")
    e.add_argument("--collection", help="a collection directory: write its missing sidecars emb/<clip-slug>/")
    e.add_argument("--data-root")
    e.add_argument("--cache-dir")
    _add_storage(e)

    s = sub.add_parser("score", help="score one collection against the real test split")
    s.add_argument("--train", required=True, help="collection directory")
    s.add_argument("--dataset", required=True)
    s.add_argument("--clip", required=True)
    s.add_argument("--json", required=True, help="file to write the record to")
    s.add_argument("--shots", type=_positive("--shots"), help="score the first K shots only (a prefix)")
    s.add_argument("--metrics", nargs="+", default=None, help="zeroshot, cler, cler_text, linear_probe, clip_score, "
                   "fd_clip, fid (default: zeroshot cler cler_text)")
    s.add_argument("--inception-weights", help="local .safetensors file of Inception-v3 weights (needed by fid)")
    s.add_argument("--accept-test-subset", action="store_true",
                   help="score on a test split whose size differs from the catalog's (a known subset)")
    s.add_argument("--data-root")
    s.add_argument("--cache-dir")
    _add_storage(s)

    ix = sub.add_parser("index", help="caption index for retrieval")
    ixsub = ix.add_subparsers(dest="index_command", required=True, parser_class=_Parser)
    ib = ixsub.add_parser("build", help="build a faiss index over (url, caption) parquet files")
    ib.add_argument("--captions", required=True, help="parquet path(s) or glob, local or fsspec URL")
    ib.add_argument("--clip", required=True)
    ib.add_argument("--out", required=True, help="index directory (local or fsspec URL)")
    ib.add_argument("--factory", help="faiss index_factory string (default: exact; e.g. IVF4096,PQ64 or HNSW32)")
    ib.add_argument("--memory-budget", type=_positive("--memory-budget"),
                    help="bytes the index may take (default: none, exact search); an approximate index is chosen to fit")
    ib.add_argument("--recall-target", type=_unit_interval, default=0.95,
                    help="recall@10 against exact search that an approximate index's search parameters are tuned to "
                         "reach, on a sample of the indexed captions (default: 0.95; a number in (0, 1])")
    ib.add_argument("--embedding-column", help="use LAION-style precomputed text embeddings from this column")
    ib.add_argument("--workers", type=_positive("--workers"), default=2, help="Ray actors embedding captions")
    ib.add_argument("--address")
    _add_storage(ib)

    rt = sub.add_parser("retrieve", help="fill a retrieved collection from a caption index")
    rt.add_argument("--dataset", required=True)
    rt.add_argument("--index", required=True)
    rt.add_argument("--shots", required=True, type=_positive("--shots"))
    rt.add_argument("--clip", required=True)
    rt.add_argument("--out", required=True, help="root of the collections: OUT/<dataset>/retrieved/<variant>/")
    rt.add_argument("--allow-address", action="append", default=[], metavar="CIDR",
                    help="the only way to reach private or loopback addresses (repeatable)")
    rt.add_argument("--oversample", type=float, help="candidates per shot (dead links are replaced; default 3)")
    rt.add_argument("--image-size", type=_positive("--image-size"))
    rt.add_argument("--seed", type=_nonneg("--seed"), default=0)
    rt.add_argument("--shard-size", type=_positive("--shard-size"), default=1000)
    rt.add_argument("--workers", type=_positive("--workers"))
    rt.add_argument("--data-root")
    rt.add_argument("--address")
    _add_storage(rt)

    rp = sub.add_parser("report", help="results.json of one or more runs -> report.md, report.html and PNG figures")
    rp.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR",
                    help="directories holding results.json (or the files); a later one wins on the same collection and shots")
    rp.add_argument("--out", required=True, help="local directory for report.md, report.html and the PNGs")
    rp.add_argument("--paper", action="store_true",
                    help="show the paper's Table 2 value and our difference from it in each Table 2 cell")

    d = sub.add_parser("datasets", help="list the dataset catalog")
    d.add_argument("--json", action="store_true")
    d.add_argument("--data-root")

    ty = sub.add_parser("toy", help="the toy models (clip: toy, generator: toy), trained here on the digits train split")
    tysub = ty.add_subparsers(dest="toy_command", required=True, parser_class=_Parser)
    tt = tysub.add_parser("train", help="train the toy models now (otherwise their first use does, or the shipped "
                                        "weights are used when they match the recipe)")
    tt.add_argument("--model", choices=("all",) + _toy_models(), default="all", help="which toy model (default: all)")
    tt.add_argument("--retrain", action="store_true",
                    help="train again even when shipped or cached weights match the recipe (default: reuse them)")
    tt.add_argument("--ship", action="store_true",
                    help="write the weights into the package (genbench/models/toy/weights/) instead of the cache")
    tt.add_argument("--cache-dir", help="model cache (default: $GENBENCH_CACHE or ~/.cache/genbench)")
    cli_finetune.add_parser(sub)  # `genbench finetune`: its parser and handler live in their own module
    return p


def _toy_models() -> tuple[str, ...]:
    from genbench.models.toy import TOY_MODELS

    return TOY_MODELS


def _configure_logging(verbose: bool) -> None:
    """genbench's own INFO lines by default; everything else (open_clip logs to the root logger) from WARNING up,
    unless ``-v`` (DEBUG, third-party INFO included)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("genbench").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("ray", "faiss", "urllib3", "filelock", "fsspec", "s3fs", "botocore", "diffusers", "transformers",
                  "httpx"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


def _out(args: argparse.Namespace, cfg: Any) -> str:
    return args.out or cfg.out or os.path.join("out", cfg.name)


def _cmd_plan(args: argparse.Namespace) -> int:
    from genbench.config import load_config
    from genbench.planning import format_plan, make_plan, plan_json

    cfg = load_config(args.config)
    plan = make_plan(cfg, _out(args, cfg), data_root=args.data_root, device=args.device)
    print(json.dumps(plan_json(plan), indent=1) if args.json else format_plan(plan, per_collection=args.collections))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from genbench.config import check_inputs, load_config
    from genbench.engine.experiment import run_experiment
    from genbench.planning import format_plan, make_plan
    from genbench.report.terminal import format_table

    cfg = load_config(args.config)
    out = _out(args, cfg)
    check_inputs(cfg)
    plan = make_plan(cfg, out)
    if plan.ready:  # otherwise the run's own checks stop it next, with one line naming the first missing input
        log.info("plan:\n%s", format_plan(plan))
    records = run_experiment(cfg, out, address=args.address, workers=args.workers, progress=not args.no_progress)
    print(format_table(records))
    print(f"\nwrote {os.path.join(out, 'results.json')} and {os.path.join(out, 'report.md')}")
    return 0


def _build_cfg(args: argparse.Namespace, sources: list[dict[str, Any]]):
    from genbench.config import parse_config

    data = {
        "name": args.command,
        "datasets": [args.dataset],
        "sources": sources,
        "clip": args.clip,
        "seed": args.seed,
        "shard_size": args.shard_size,
    }
    if args.data_root:
        data["data_root"] = args.data_root
    if args.storage_option:
        data["storage_options"] = _storage(args)
    return parse_config(data, where="arguments")


def _cmd_build(args: argparse.Namespace) -> int:
    from genbench.engine.experiment import build_collections

    given = lambda *keys: {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}  # noqa: E731
    if args.command == "generate":
        options = given("steps", "guidance_scale", "batch_size", "resolution", "image_size", "image_format", "dtype")
        srcs = [{"source": "generated", "generator": gen, "strategies": [args.strategy], "shots": args.shots, **options}
                for gen in dict.fromkeys(args.generator)]
    elif args.command == "retrieve":
        srcs = [{"source": "retrieved", "index": args.index, "shots": args.shots,
                 "allow_addresses": list(args.allow_address), **given("oversample", "image_size")}]
    else:
        srcs = [{"source": "original", "shots": args.shots, **given("image_format")}]
    cfg = _build_cfg(args, srcs)
    jobs = build_collections(cfg, args.out, address=args.address, workers=args.workers, progress=not args.no_progress)
    for job in jobs:
        print(job.uri)
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from genbench.engine import scoring

    if args.collection:
        n = scoring.embed_collection(args.collection, args.clip, cache_dir=args.cache_dir, storage_options=_storage(args))
        print(f"embedded {n} shard(s) of {args.collection}")
        return 0
    if not args.dataset or not args.out:
        raise UsageError("--dataset/--out", None, "both, to embed a real split (or --collection DIR)")
    n = scoring.embed_split_to_parquet(args.dataset, args.split, args.clip, args.out, args.data_root, args.cache_dir)
    print(f"wrote {n} embeddings to {args.out}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from genbench.engine import scoring

    record = scoring.score_collection_dir(
        args.train, args.dataset, args.clip, shots=args.shots, metrics=args.metrics, data_root=args.data_root,
        cache_dir=args.cache_dir, storage_options=_storage(args), inception_weights=args.inception_weights,
        accept_test_subset=args.accept_test_subset,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:  # a list of records, as results.json: `genbench report` reads it
        json.dump([record], f, indent=1, sort_keys=True)
    print(json.dumps(record["scores"]))
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from genbench.engine.index_build import build_caption_index

    info = build_caption_index(
        args.captions, args.clip, args.out, factory=args.factory, memory_budget=args.memory_budget,
        recall_target=args.recall_target, embedding_column=args.embedding_column, workers=args.workers, address=args.address,
        storage_options=_storage(args),
    )
    print(json.dumps(info))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from genbench.report.build import build_report

    res = build_report(args.results_dirs, args.out, paper=args.paper)
    for note in res["notes"]:
        print(note)
    for skipped in res["skipped"]:
        print(f"not drawn: {skipped['title']}: {skipped['reason']}")
    print(f"wrote {res['report_md']}, {res['report_html']} and {len(res['plots'])} figure(s)")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from genbench.catalog.listing import format_table, list_entries

    entries = list_entries(args.data_root)
    print(json.dumps(entries, indent=1) if args.json else format_table(entries))
    return 0


def _cmd_toy(args: argparse.Namespace) -> int:
    from genbench.models.toy.store import SHIPPED_DIR, TOY_MODELS, read_record, toy_model_dir

    for name in TOY_MODELS if args.model == "all" else (args.model,):
        target = SHIPPED_DIR / name if args.ship else None
        where = toy_model_dir(name, args.cache_dir, retrain=args.retrain or args.ship, progress=True, target=target)
        record = read_record(where)
        print(f"{name}: {where} (trained in {record['train_seconds']:.1f} s, {record['steps']} steps, "
              f"recipe {record['recipe_key']})")
    return 0


_COMMANDS = {
    "run": _cmd_run,
    "plan": _cmd_plan,
    "generate": _cmd_build,
    "original": _cmd_build,
    "embed": _cmd_embed,
    "index": _cmd_index,
    "retrieve": _cmd_build,
    "score": _cmd_score,
    "datasets": _cmd_datasets,
    "report": _cmd_report,
    "toy": _cmd_toy,
    "finetune": cli_finetune.run,
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if argv is None:  # the command itself, not a caller in-process: SIGTERM ends it like Ctrl-C, with its own code
        import signal

        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        try:
            args = build_parser().parse_args(_global_flags_first(sys.argv[1:] if argv is None else argv))
        except SystemExit as exc:  # argparse: --help exits 0, a usage error 2 (its line is already printed)
            return int(exc.code or 0)
        _configure_logging(args.verbose)
        if args.no_progress:
            os.environ["TQDM_DISABLE"] = "1"
        return _COMMANDS[args.command](args)
    except UsageError as exc:
        sys.stderr.write(f"genbench: error: {exc}\n")
        return 2
    except ShardFailures as exc:
        sys.stderr.write(f"genbench: {exc}\n")
        return 1
    except GenbenchError as exc:
        sys.stderr.write(f"genbench: error: {exc}\n")
        return 1
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated) or was_terminated():
            sys.stderr.write(f"genbench: terminated; {RESUME}\n")
            return 143  # 128 + SIGTERM
        sys.stderr.write(f"genbench: interrupted; {RESUME}\n")
        return 130  # 128 + SIGINT, as a shell reports it


if __name__ == "__main__":
    raise SystemExit(main())
