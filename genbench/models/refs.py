"""Model references as strings: what they name, their short names (slugs) and whether their weights are trained.

Everything here is pure string and file-listing work (no torch, no model loaded), so the driver can check every
reference of a config before it starts Ray or writes anything. (The toy models' recipe key also fingerprints
scikit-learn's bundled digits, once per process.) The loaders (:mod:`genbench.models.generator`,
:mod:`genbench.models.clip`) resolve references with these same rules.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import re
from pathlib import Path

from genbench.errors import UsageError, shown

ALLOWED_GENERATOR = ("toy, tiny, tiny:<family> (e.g. tiny:flux1-schnell), null, random:<config> (e.g. "
                     "random:sd21-base), a hub id such as stabilityai/stable-diffusion-2-1-base, or a local diffusers "
                     "pipeline directory")
ALLOWED_CLIP = "toy, tiny, ARCH:TAG (e.g. ViT-B-32:openai), ARCH:random, hf-hub:org/repo, or a directory with open_clip_config.json"
HUB_PROBE_S = 5.0  # seconds the preflight waits for the Hugging Face hub to answer
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Short names of the generators the paper and users name most, so variant directories read well.
GENERATOR_SLUGS = {
    "stabilityai/stable-diffusion-2-1-base": "sd21-base",
    "stabilityai/stable-diffusion-2-1": "sd21",
    "stabilityai/stable-diffusion-xl-base-1.0": "sdxl-base",
    "runwayml/stable-diffusion-v1-5": "sd15",
}
# Shipped model configs that are CLIP models, not pipelines: never a `random:` generator.
_CLIP_CONFIGS = ("tiny-clip",)
# Trained toy models (genbench.models.toy): their configs carry a training recipe and are never `random:` builds.
TOY_GENERATOR, TOY_CLIP = "toy-sd", "toy-clip"


def slugify(text: str, keep: str = "._-", sep: str = "_", lower: bool = False) -> str:
    """``text`` with every run of characters outside ``[A-Za-z0-9]`` and ``keep`` replaced by ``sep``, stripped of
    ``sep`` at both ends; never empty. (These exact rules name existing directories: changing them renames them.)"""
    out = re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]+", sep, text).strip(sep)
    out = out.lower() if lower else out
    return out or "model"


# ---------------------------------------------------------------------------------------------------------- generators


def generator_slug(ref: str) -> str:
    """``sd21-base`` for SD 2.1-base (the short names above), the family's name for another family hub id
    (``flux1-schnell``), else the reference's last path part, lower case (``tiny``, ``tiny-sdxl``,
    ``random-sd21-base``)."""
    if ref in GENERATOR_SLUGS:
        return GENERATOR_SLUGS[ref]
    from genbench.models.families import family_of

    family = family_of(ref)
    if family is not None and ref in family.hub_ids:
        return family.name
    return slugify(ref.rstrip("/").split("/")[-1], keep=".-", sep="-", lower=True)


def shipped_pipeline_configs() -> tuple[str, ...]:
    """Names ``random:<name>`` accepts: the pipeline configs shipped in ``genbench/models/configs``."""
    from genbench.models.cache import CONFIG_DIR

    return tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")
                        if p.stem not in _CLIP_CONFIGS and not p.stem.startswith("toy-")))


def _configs_text(shipped: tuple[str, ...]) -> str:
    """The shipped pipeline configs, a family's two (``<family>``, ``tiny-<family>``) said once: one short line."""
    from genbench.models.families import family_names

    fams = [f for f in family_names() if f in shipped and f"tiny-{f}" in shipped]
    rest = [s for s in shipped if s not in fams and s not in {f"tiny-{f}" for f in fams}]
    return (f"<family> (e.g. random:sd21-base) or tiny-<family> for a family ({', '.join(fams)})"
            + "".join(f", {s}" for s in rest))


def resolve_generator(ref: str, field: str = "generator") -> tuple[str, str]:
    """(kind, value): ``("toy", "toy-sd")``, ``("tiny", "tiny-sd")`` (``tiny:<family>``: ``("tiny", "tiny-<family>")``),
    ``("null", "")``, ``("random", <config>)``, ``("dir", path)`` or ``("hub", id)``. An unknown reference is a
    :class:`UsageError` naming ``field``."""
    if not isinstance(ref, str) or not ref.strip():
        raise UsageError(field, ref, ALLOWED_GENERATOR)
    if ref == "tiny":
        return "tiny", "tiny-sd"
    if ref.startswith("tiny:"):
        from genbench.models.families import family_names, tiny_config

        name = ref[len("tiny:"):]
        if name not in family_names():
            raise UsageError(field, ref, "tiny:<family> with family one of " + ", ".join(family_names()))
        return "tiny", tiny_config(name)
    if ref == "toy":
        return "toy", TOY_GENERATOR
    if ref == "null":
        return "null", ""
    if ref.startswith("random:"):
        name = ref[len("random:"):]
        shipped = shipped_pipeline_configs()
        if name not in shipped:
            raise UsageError(field, ref, "random:<config>, config one of " + _configs_text(shipped))
        return "random", name
    if os.path.isdir(ref):
        if not os.path.isfile(os.path.join(ref, "model_index.json")):
            raise UsageError(field, ref, "a diffusers pipeline directory (with model_index.json); " + ALLOWED_GENERATOR)
        return "dir", os.path.abspath(ref)
    if HUB_ID.match(ref):
        return "hub", ref
    raise UsageError(field, ref, ALLOWED_GENERATOR)


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_unreachable(timeout: float = HUB_PROBE_S) -> str | None:
    """Why the Hugging Face hub (``HF_ENDPOINT``) cannot be reached, or None if it answers: one TCP connection within
    ``timeout`` seconds, name lookup included, no retries (the hub client retries with backoff for minutes)."""
    import socket
    import threading
    from urllib.parse import urlsplit

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host = None
    if not host:
        return f"HF_ENDPOINT {shown(endpoint)} names no host"
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as exc:
            result.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=probe, daemon=True)  # a stuck name lookup ignores the socket timeout
    thread.start()
    thread.join(timeout + 1.0)
    if not result:
        return f"no answer from {host}:{port} in {timeout:g} s"
    return None if result[0] is None else f"{host}:{port}: {result[0][:100]}"


def hub_download_problem(repo: str, filenames: tuple[str, ...], cache_dir: str | None = None) -> str | None:
    """Why ``repo`` cannot be had from the local Hugging Face cache or the hub (one of ``filenames`` cached is enough),
    or None: offline and not cached, or not cached and the hub cannot be reached."""
    from huggingface_hub import try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(repo, f, cache_dir=cache_dir), str) for f in filenames):
        return None
    if hub_offline():
        return "HF_HUB_OFFLINE=1 forbids downloads and it is not in the local Hugging Face cache"
    reason = hub_unreachable()
    if reason is not None:
        return (f"it is not in the local Hugging Face cache and the hub cannot be reached ({reason}); to work offline, "
                f"put it in the cache and set HF_HUB_OFFLINE=1")
    return None


def check_generator(ref: str, field: str = "generator", cache_dir: str | None = None) -> None:
    """Everything that can be known about a generator reference without loading it: the form, a shipped config for
    ``random:``, and for a hub id that it is in the local Hugging Face cache or the hub can be reached (so a run
    without network stops here, in seconds, instead of retrying downloads in every worker)."""
    kind, value = resolve_generator(ref, field)
    if kind == "hub":
        problem = hub_download_problem(value, ("model_index.json",), cache_dir)
        if problem is not None:
            raise UsageError(field, ref, f"a hub id that can be loaded ({problem}), a local diffusers directory, "
                                         "'tiny', tiny:<family> or 'null'")


def toy_recipe(name: str) -> str:
    """The recipe key of toy model ``name`` (reads its shipped config; no torch)."""
    from genbench.models.toy.store import recipe_key

    return recipe_key(name)


def generator_recipe(ref: str) -> str:
    """What fixes a generator reference's weights beyond its name: the toy generator's recipe key (retraining with
    another recipe keeps the name ``toy``); "" for every other reference, whose name (or directory) is the identity."""
    return toy_recipe(TOY_GENERATOR) if ref == "toy" else ""


def toy_models(refs_used: list[str | None], clip: str | None) -> list[str]:
    """The toy models (``toy-sd``, ``toy-clip``) that generator references ``refs_used`` and ``clip`` name."""
    return ([TOY_GENERATOR] if "toy" in refs_used else []) + ([TOY_CLIP] if clip == "toy" else [])


def generator_untrained(ref: str | None) -> bool:
    """tiny, tiny:<family>, null and random:<config> generators have no trained weights."""
    return ref is not None and (ref in ("tiny", "null") or ref.startswith(("random:", "tiny:")))


# ---------------------------------------------------------------------------------------------------------- CLIP


def _open_clip_architectures() -> tuple[str, ...]:
    """The architectures open_clip ships configs for, listed from its package files (importing open_clip loads torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return ()
    configs = Path(next(iter(spec.submodule_search_locations))) / "model_configs"
    return tuple(sorted(p.stem for p in configs.glob("*.json")))


def clip_local_dir(ref: str) -> str | None:
    """The directory a ``local-dir:`` or plain-path CLIP reference names, if it is one."""
    local = ref[len("local-dir:"):] if ref.startswith("local-dir:") else ref
    return local if os.path.isdir(local) else None


def check_clip(ref: str, field: str = "clip") -> None:
    """The form of a CLIP reference and, for ``ARCH:TAG``, that open_clip knows ARCH. The pretrained TAG is checked
    when the model is loaded (that needs open_clip, hence torch)."""
    if not isinstance(ref, str) or not ref.strip() or "\x00" in ref:
        raise UsageError(field, ref, ALLOWED_CLIP)
    if ref in ("tiny", "toy") or ref.startswith("hf-hub:"):
        return
    local = clip_local_dir(ref)
    if local is not None:
        if not os.path.isfile(os.path.join(local, "open_clip_config.json")):
            raise UsageError(field, ref, "a directory must contain open_clip_config.json and weights (" + ALLOWED_CLIP + ")")
        return
    arch, sep, tag = ref.partition(":")
    known = _open_clip_architectures()
    if not sep or not tag or (known and arch not in known):
        hint = ""
        if sep and known and arch not in known:
            close = difflib.get_close_matches(arch, known, n=3, cutoff=0.6)
            hint = f" (unknown architecture {arch!r}" + (f"; did you mean {' or '.join(close)}?)" if close else ")")
        raise UsageError(field, ref, ALLOWED_CLIP + hint)


def open_clip_pretrained() -> dict[str, dict[str, str]]:
    """{architecture: {pretrained tag: Hugging Face repo, or "" for a plain URL}}, read from open_clip's
    ``pretrained.py`` without importing it (importing open_clip loads torch); empty where its layout is not the
    expected one (module-level ``NAME = dict(tag=_pcfg(hf_hub=...))`` tables and a ``_PRETRAINED`` dict of them)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return {}
    try:
        tree = ast.parse((Path(next(iter(spec.submodule_search_locations))) / "pretrained.py").read_text("utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}

    def hub(call: ast.expr) -> str | None:
        if not isinstance(call, ast.Call):
            return None
        return next((str(k.value.value) for k in call.keywords
                     if k.arg == "hf_hub" and isinstance(k.value, ast.Constant)), "")

    tables: dict[str, dict[str, str]] = {}
    arch_table: dict[str, str] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name, value = node.targets[0].id, node.value
        pairs: list[tuple[object, ast.expr]] = []
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict":
            pairs = [(k.arg, k.value) for k in value.keywords if k.arg]
        elif isinstance(value, ast.Dict):
            pairs = [(k.value, v) for k, v in zip(value.keys, value.values) if isinstance(k, ast.Constant)]
        if name == "_PRETRAINED":
            arch_table = {str(k): v.id for k, v in pairs if isinstance(v, ast.Name)}
        else:
            found = {str(k): h for k, v in pairs if (h := hub(v)) is not None}
            if found:
                tables[name] = found
    return {arch: tables[var] for arch, var in arch_table.items() if var in tables}


def check_clip_weights(ref: str | None, cache_dir: str | None = None) -> None:
    """Before Ray starts: a pretrained tag open_clip knows, and weights to download that are in the local Hugging Face
    cache or can be fetched now (the hub answers). Built, local and ``ARCH:random`` models need nothing."""
    if ref is None:
        return
    check_clip(ref)
    if ref in ("tiny", "toy") or clip_local_dir(ref) is not None or ref.endswith(":random"):
        return
    if ref.startswith("hf-hub:"):
        repo = ref[len("hf-hub:"):]
    else:
        arch, _, tag = ref.partition(":")
        tags = open_clip_pretrained().get(arch)
        if tags is None:
            return  # open_clip's table could not be read: loading checks the tag
        if tag not in tags:
            close = difflib.get_close_matches(tag, list(tags), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            listed = ", ".join(sorted(tags)) if len(tags) <= 8 else f"{len(tags)} tags (open_clip.list_pretrained())"
            raise UsageError("clip", ref, f"{hint}a pretrained tag of {arch}: {listed}, or random")
        repo = tags[tag].strip("/")
        if not repo:
            return  # weights from a plain URL, into open_clip's own cache: checked when loaded
    problem = hub_download_problem(repo, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"), cache_dir)
    if problem is not None:
        raise UsageError("clip", ref, f"a CLIP model that can be loaded ({problem}), 'tiny', or a local directory")


def clip_slug(ref: str) -> str:
    """The name of a CLIP model's sidecar directory ``emb/<slug>/``: ``tiny``, ``toy-<recipe>``, ``ViT-B-32_openai``, a local
    directory's name, or the hub repo."""
    if ref == "tiny":
        return ref
    if ref == "toy":
        # The toy CLIP's recipe in its name: sidecars of an earlier toy CLIP are never read as this one's.
        return f"toy-{toy_recipe(TOY_CLIP)[:8]}"
    if ref.startswith("hf-hub:"):
        return slugify(ref[len("hf-hub:"):])
    local = clip_local_dir(ref)
    if local is not None:
        return slugify(Path(local).resolve().name)
    arch, _, tag = ref.partition(":")
    return slugify(f"{arch}_{tag}")


def clip_untrained(ref: str | None) -> bool:
    """The tiny CLIP and ``ARCH:random`` have random weights."""
    return ref is not None and (ref == "tiny" or ref.endswith(":random"))


# ---------------------------------------------------------------------------------------------------------- indexes


def index_slug(path: str) -> str:
    """A caption index's short name: its directory's name (``laion400m-ivf``)."""
    return slugify(path.rstrip("/").split("/")[-1], keep=".-", sep="-", lower=True)
