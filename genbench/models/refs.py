"""Model references as strings: what they name, their short names (slugs) and whether their weights are trained.

Everything here is pure string and file-listing work (no torch, no model loaded), so the driver can check every
reference of a config before it starts Ray or writes anything. (The toy models' recipe key also fingerprints
scikit-learn's bundled digits, once per process.) The loaders (:mod:`genbench.models.generator`,
:mod:`genbench.models.clip`) resolve references with these same rules.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from genbench.errors import UsageError

ALLOWED_GENERATOR = ("toy, tiny, tiny:<family> (e.g. tiny:flux1-schnell), null, random:<config> (e.g. "
                     "random:sd21-base), a hub id such as stabilityai/stable-diffusion-2-1-base, or a local diffusers "
                     "pipeline directory")
ALLOWED_CLIP = "toy, tiny, ARCH:TAG (e.g. ViT-B-32:openai), ARCH:random, hf-hub:org/repo, or a directory with open_clip_config.json"
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


def check_generator(ref: str, field: str = "generator") -> None:
    """Everything that can be known about a generator reference without loading it: the form, a shipped config for
    ``random:``, and under ``HF_HUB_OFFLINE=1`` that a hub id is already in the local Hugging Face cache."""
    kind, value = resolve_generator(ref, field)
    if kind == "hub" and os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(value, "model_index.json"), str):
            raise UsageError(field, ref, "a local diffusers directory, 'tiny', tiny:<family>, 'null', or a hub id "
                                         "already in the local Hugging Face cache (HF_HUB_OFFLINE=1 forbids downloads)")


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
        hint = f" (unknown architecture {arch!r})" if sep and known and arch not in known else ""
        raise UsageError(field, ref, ALLOWED_CLIP + hint)


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
