"""What a source of external data is: a typed spec (its config), a plan of slots, and ``produce(task, resources)``.

A **spec** is a frozen dataclass whose fields are the source's config keys. Each field is declared with
:func:`option`: its default (the one place it lives), its check, whether it decides the images' bytes (then it is
part of the collection's identity) and the token it adds to the collection's name when it differs from the default.
So a collection directory is named by every image-changing option that is not at its default
(``tiny_st_steps2_cfg3_s0``), and a collection made with defaults keeps the short name it always had.

A **Source** plans and produces. The driver asks it to expand a spec into collections (one per prompt strategy, say),
to check its references before anything is written, and to assign work to slots (retrieval downloads and picks
URLs here); a worker asks it to ``produce`` one shard's samples from the models its :class:`~genbench.sources.resources.
Resources` hold. Sources never import Ray: the driver hands in what they need (a CLIP encoder, a download function).
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from genbench import validate
from genbench.errors import UsageError

if TYPE_CHECKING:
    from genbench.shards.schema import Sample


def option(default: Any = MISSING, check: validate.Check | None = None, *, token: str | None = None,
           identity: bool = True, always: bool = False, when: Callable[[Any], bool] | None = None,
           internal: bool = False, help: str = "") -> Any:
    """A spec field. ``check(value, where)`` validates a configured value. ``identity``: the option changes the images,
    so it is part of the collection's identity and, through ``token`` (a format string such as ``"steps{}"``; by
    default ``"<name>{}"``; ``""`` when :meth:`SourceSpec.base_name` already names it), of its name when not at its
    default. ``always``: in the identity even at its default (the keys collections had before
    options were declared this way; a new option must not set it, or every existing collection would look different).
    ``when(spec)``: the option only matters then (``ce_model`` only under strategy ``ce``). ``internal``: set by the
    planner, never by a config."""
    meta = {"check": check, "token": token, "identity": identity, "always": always, "when": when,
            "internal": internal, "help": help}
    return field(default=default, metadata=meta)


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _fmt(value: Any) -> str:
    """An option value as it appears in a directory name (``cfg7.5``, ``ce-my-t5``): short, and never the same for two
    different numbers."""
    from genbench.models.refs import slugify

    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return slugify(str(value), keep=".-", sep="-")


def _token(f: dataclasses.Field, value: Any) -> str:
    token = f.metadata.get("token")
    token = f"{f.name.replace('_', '-')}{{}}" if token is None else token
    if not token:
        return ""
    if isinstance(value, bool):  # a flag's token says it is on; "no-" says it is off against a default of on
        return token.format("") if value else "no-" + token.format("")
    return token.format(_fmt(value))


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    """Base of every source's config type. ``shots``: the shot counts to score (prefixes of one collection)."""

    shots: tuple[int, ...] = option(check=validate.shots, identity=False)

    # ---- the collections a spec names ----------------------------------------------------------------------------
    def expand(self, dataset: str) -> list["SourceSpec"]:
        """One spec per collection this entry makes for ``dataset`` (generated: one per prompt strategy)."""
        return [self]

    def base_name(self) -> str:
        """The start of the collection's directory name (``tiny_st``, ``kshot``)."""
        raise NotImplementedError

    def _relevant(self, f: dataclasses.Field) -> bool:
        when = f.metadata.get("when")
        return f.metadata.get("identity", False) and (when is None or when(self))

    def identity_options(self) -> dict[str, Any]:
        """The options that decide the images' bytes: recorded with the collection and checked on every rerun."""
        out = {}
        for f in fields(self):
            if not self._relevant(f):
                continue
            value = getattr(self, f.name)
            if f.metadata.get("always") or value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def variant(self, run_seed: int) -> str:
        """The collection's directory name: base name, a token per image-changing option off its default, the seed."""
        parts = [self.base_name()]
        for f in fields(self):
            if self._relevant(f) and getattr(self, f.name) != f.default:
                parts.append(_token(f, getattr(self, f.name)))
        parts.append(f"s{int(run_seed)}")
        return "_".join(p for p in parts if p)

    # ---- parsing -------------------------------------------------------------------------------------------------
    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if not f.metadata.get("internal"))

    @classmethod
    def parse(cls, data: dict[str, Any], where: str, kind: str, datasets: tuple[str, ...]) -> "SourceSpec":
        """A spec from a config mapping (``source`` already read). Unknown keys are refused, naming the kind that has
        them when it is another built-in source's key."""
        known = set(cls.config_keys())
        for key in data:
            if key != "source" and key not in known:
                from genbench.sources.registry import kinds_with_key

                owners = [k for k in kinds_with_key(key) if k != kind]
                also = f" ({key!r} belongs to {_a(' or '.join(owners))} source)" if owners else ""
                raise UsageError(f"{where}.{key}", data[key],
                                 f"keys of {_a(kind)} source: source, {', '.join(sorted(known))}{also}")
        kw = {}
        for f in fields(cls):
            if f.metadata.get("internal"):
                continue
            if f.name in data:
                check = f.metadata.get("check")
                kw[f.name] = check(data[f.name], f"{where}.{f.name}") if check else data[f.name]
            elif f.default is MISSING and f.default_factory is MISSING:
                raise UsageError(f"{where}.{f.name}", None, f"a value (required for {_a(kind)} source)"
                                 + (f": {f.metadata['help']}" if f.metadata.get("help") else ""))
        spec = cls(**kw)
        spec.validate(where, datasets)
        return spec

    def validate(self, where: str, datasets: tuple[str, ...]) -> None:
        """Checks across fields, after each field passed its own."""


@dataclass
class ShardSamples:
    """What a source made for one shard: the samples in write order, and the (class, shot) slots it could not fill."""

    samples: list["Sample"]
    shortfall: list[tuple[int, int]] = field(default_factory=list)
    # Inputs that could not be read or decoded ({"slot": [cls, shot], "input": ..., "error": ...}): counted and
    # logged, their slots in the shortfall; the shard goes on without them.
    bad: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, slot: tuple[int, int], what: Any, exc: BaseException) -> None:
        import logging

        error = f"{type(exc).__name__}: {str(exc)[:200]}"
        logging.getLogger(__name__).warning("slot %s: skipped %s: %s", slot, what, error)
        self.shortfall.append(tuple(slot))
        self.bad.append({"slot": list(slot), "input": what, "error": error})

    def check(self, members: list[tuple[int, int]], who: str) -> None:
        """Every slot of the shard exactly once, samples in the shard's order: a sample in another shard's slot would
        be counted twice and break prefix reads, so a source that breaks this fails its shard."""
        got = [(s.cls, s.shot) for s in self.samples]
        short = [tuple(x) for x in self.shortfall]
        if sorted(got + short) != sorted(map(tuple, members)) or got != [m for m in members if m in set(got)]:
            raise ValueError(f"{who}: produce() must return the shard's slots in order, each once as a sample or in "
                             f"shortfall; the shard has {len(members)} slot(s) from {members[:1]}, got samples "
                             f"{got[:3]}{'...' if len(got) > 3 else ''} and shortfall {short[:3]}")


@dataclass(frozen=True)
class CheckContext:
    """What a source may consult before anything is written (all of it cheap: no model is loaded)."""

    clip: str | None
    clip_slug: str | None
    data_root: str | None
    cache_dir: str | None
    storage_options: dict[str, Any]


@dataclass
class PlanContext:
    """What the driver hands a source that plans its slots: the loaded CLIP encoder (None without one), a function
    ``download(urls, staging_dir, policy, storage_options, progress)`` that runs downloads on the cluster, and
    whether to show progress."""

    clip: Any
    download: Callable[..., int]
    progress: bool = True


@dataclass
class SlotPlan:
    """A source's plan for the shards still to make: each task with its per-slot payload; ``redo`` holds tasks of
    finished shards it can now make better (slots it could not fill before); ``extras`` go into the manifest."""

    pending: list[Any]
    redo: list[Any] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


class Source:
    """A kind of external data. Subclasses set ``kind`` (the collection directory's source part and the results'
    ``source``) and ``spec_type``, and implement :meth:`produce`; the other hooks have defaults that suit sources
    whose samples depend only on (class, shot)."""

    kind: ClassVar[str]
    spec_type: ClassVar[type[SourceSpec]]

    def check(self, spec: SourceSpec, where: str, ctx: CheckContext) -> None:
        """Everything that can fail before anything is written (references resolve, files exist)."""

    def resolve(self, spec: SourceSpec, ctx: CheckContext) -> SourceSpec:
        """The spec as the collection records it (paths made absolute, an index's identity read in)."""
        return spec

    def needs_train_split(self, spec: SourceSpec) -> bool:
        """Whether producing reads the target dataset's training split (checked to exist before the run)."""
        return False

    def untrained(self, spec: SourceSpec) -> list[str]:
        """The models with untrained (random) weights that make this collection's images, as "generator tiny"."""
        return []

    def plan_slots(self, job: Any, pending: list[Any], done: list[tuple[Any, dict[str, Any]]],
                   ctx: PlanContext) -> SlotPlan:
        """Attach per-slot inputs to the shard tasks still to make; ``done`` holds (task, record) of finished shards,
        which the plan may name in ``redo``."""
        return SlotPlan(pending)

    def warm(self, job: Any, resources: Any) -> None:
        """Load what ``job`` needs before the clock starts, so no shard pays for a model load."""

    def produce(self, task: Any, resources: Any) -> ShardSamples:
        """The samples of one shard task's (class, shot) slots, ``task.members()``, in that order."""
        raise NotImplementedError
