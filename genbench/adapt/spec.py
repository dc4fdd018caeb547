"""The ``adapt:`` block of a generated source: what to learn before generating, from which images, and what to do
with a class that has none.

```yaml
sources:
  - source: generated
    generator: stabilityai/stable-diffusion-2-1-base
    strategies: [dt]
    shots: [5, 100]
    adapt:
      method: ti            # ti: one token per class (the paper's Table 3) | lora: DataDream-style adapters
      references: original  # original: the class's first `shots` training images | retrieved: the run's retrieved
                            # collection, filtered (see `filter`)
      shots: 5              # references per class (retrieved: candidates read before filtering; default 100)
      steps: 1000           # default: ti 1000 (the paper), lora 200
      on_empty: plain       # a class left with no reference: plain (generated without adaptation, named in the
                            # manifest and the log) | fail (exit 2 naming the class)
```

LoRA generation takes DataDream's published sampling defaults (50 steps, guidance 2.0) unless the entry sets
``steps`` / ``guidance_scale``. The spec is hashed into the collection's identity (``adapt-<method>-<hash>`` in its
name): another method, setting, reference set, base model or dataset makes another collection.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from genbench import validate
from genbench.errors import UsageError

METHODS = ("ti", "lora")
REFERENCES = ("original", "retrieved")
SCOPES = ("class", "dataset")
ON_EMPTY = ("plain", "fail")
# Prompt strategies whose text cannot carry a learned token: CE writes sentences with a T5 model that never saw it.
UNADAPTABLE_STRATEGIES = ("ce",)
DATADREAM_SAMPLING = {"steps": 50, "guidance_scale": 2.0}

_DEFAULTS = {"ti": {"steps": 1000, "lr": 5e-3, "batch_size": 4}, "lora": {"steps": 200, "lr": 1e-4, "batch_size": 8}}
_DEFAULT_SHOTS = {"original": 5, "retrieved": 100}


@dataclass(frozen=True)
class AdaptSpec:
    method: str
    references: str = "original"
    shots: int = 5
    scope: str = "class"
    steps: int = 1000
    lr: float = 5e-3
    batch_size: int = 4
    rank: int = 16
    alpha: float = 32.0
    text_encoder: bool = True
    on_empty: str = "plain"
    retrieved_from: int | str | None = None
    filter: Any = None  # genbench.adapt.filtering.FilterSettings for retrieved references, else None

    def settings(self) -> Any:
        """The trainer's settings (:class:`TISettings` or :class:`LoRASettings`)."""
        if self.method == "ti":
            from genbench.adapt.textual_inversion import TISettings

            return TISettings(steps=self.steps, lr=self.lr, batch_size=self.batch_size)
        from genbench.adapt.lora import LoRASettings

        return LoRASettings(rank=self.rank, alpha=self.alpha, lr=self.lr, steps=self.steps,
                            batch_size=self.batch_size, text_encoder=self.text_encoder)

    def identity(self) -> dict[str, Any]:
        """What decides the learned weights (``on_empty`` too: it decides which classes are adapted)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("retrieved_from", "filter")}
        if self.method == "ti":
            for k in ("rank", "alpha", "text_encoder"):
                out.pop(k)
        if self.filter is not None:
            out["filter"] = asdict(self.filter)
        return out


def class_token(dataset: str, class_name: str) -> str:
    """The paper's per-class token, ``<|dataset class|>``, with characters a tokenizer splits on replaced."""
    return "<|" + re.sub(r"[^A-Za-z0-9]+", "_", f"{dataset} {class_name}").strip("_").lower() + "|>"


def check_tokens(dataset: str, classes: tuple[str, ...], where: str) -> None:
    """Refuse a dataset two of whose classes would share one learned token (names differing only in case or
    punctuation): the second class would silently be generated with the first one's token."""
    seen: dict[str, str] = {}
    for name in classes:
        token = class_token(dataset, name)
        if token in seen:
            raise UsageError(where, "ti", f"a dataset whose classes have distinct tokens ({seen[token]!r} and {name!r} "
                                          f"of {dataset} both become {token}); method: lora names classes as they are")
        seen[token] = name


def parse_adapt(value: Any, where: str) -> AdaptSpec | None:
    """The ``adapt`` mapping -> :class:`AdaptSpec`; every key checked and bounded, unknown keys refused."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UsageError(where, value, "a mapping with at least 'method' (ti or lora)")
    validate.keys(value, [f.name for f in fields(AdaptSpec)], f"{where}.")
    if "method" not in value:
        raise UsageError(f"{where}.method", None, "ti (textual inversion) or lora (DataDream-style adapters)")
    method = validate.choice(value["method"], f"{where}.method", METHODS)
    refs = validate.choice(value.get("references", "original"), f"{where}.references", REFERENCES)
    defaults = _DEFAULTS[method]
    kw: dict[str, Any] = {
        "method": method,
        "references": refs,
        "shots": validate.integer(value.get("shots", _DEFAULT_SHOTS[refs]), f"{where}.shots", 1, 10_000),
        "scope": validate.choice(value.get("scope", "class"), f"{where}.scope", SCOPES),
        "steps": validate.integer(value.get("steps", defaults["steps"]), f"{where}.steps", 1, 100_000),
        "lr": validate.number(value.get("lr", defaults["lr"]), f"{where}.lr", 0.0, 1.0, lo_open=True),
        "batch_size": validate.integer(value.get("batch_size", defaults["batch_size"]), f"{where}.batch_size", 1, 1024),
        "on_empty": validate.choice(value.get("on_empty", "plain"), f"{where}.on_empty", ON_EMPTY),
    }
    if method == "lora":
        kw["rank"] = validate.integer(value.get("rank", 16), f"{where}.rank", 1, 1024)
        kw["alpha"] = validate.number(value.get("alpha", 32.0), f"{where}.alpha", 0.0, 4096.0, lo_open=True)
        kw["text_encoder"] = validate.flag(value.get("text_encoder", True), f"{where}.text_encoder")
    else:
        for key in ("rank", "alpha", "text_encoder"):
            if key in value:
                raise UsageError(f"{where}.{key}", value[key], "nothing: it is a LoRA setting (method: lora)")
    if kw["scope"] == "dataset" and method != "lora":
        raise UsageError(f"{where}.scope", "dataset", "class (textual inversion learns one token per class; one "
                                                      "adapter for the whole dataset is method: lora)")
    if refs == "retrieved":
        from genbench.adapt.filtering import parse_filter

        kw["filter"] = parse_filter(value.get("filter", {}), f"{where}.filter")
        if "retrieved_from" in value:
            from genbench.sources.augment import parse_ra_from

            kw["retrieved_from"] = parse_ra_from(value["retrieved_from"], f"{where}.retrieved_from")
    else:
        for key in ("filter", "retrieved_from"):
            if key in value:
                raise UsageError(f"{where}.{key}", value[key], "nothing: it applies to references: retrieved")
    return AdaptSpec(**kw)
