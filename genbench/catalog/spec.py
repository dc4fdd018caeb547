"""A dataset's catalog entry, validated from its YAML file into a typed object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genbench.errors import UsageError

GROUPS = ("common", "fine-grained", "rare", "toy")
TASKS = ("multiclass", "multilabel")
METRICS = ("accuracy", "mean_per_class_recall", "map_11point", "roc_auc")
PLACEHOLDER = "{}"

_REQUIRED = ("name", "display_name", "group", "task", "metric", "test_size", "classes", "templates", "loader", "origin")
_OPTIONAL = ("notes", "splits", "simple_template", "paper_class_count")


@dataclass(frozen=True)
class DatasetSpec:
    """Facts about one target dataset: what the paper evaluates and how genbench finds the files.

    ``templates`` use ``{}`` for the class name (as openai/CLIP's prompts do). ``loader`` names how to read the
    files (``kind`` plus options); ``origin`` says where a user gets the data, for the not-found message.
    """

    name: str
    display_name: str
    group: str
    task: str
    metric: str
    test_size: int
    classes: tuple[str, ...]
    templates: tuple[str, ...]
    loader: dict[str, Any]
    origin: str
    notes: str = ""
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "test": "test"})
    simple_template: str = "a photo of a {}."
    paper_class_count: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> "DatasetSpec":
        if not isinstance(data, dict):
            raise UsageError(f"{where}", type(data).__name__, "a mapping of catalog fields")
        unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            raise UsageError(f"{where}.{unknown[0]}", data[unknown[0]], "known catalog fields: " + ", ".join(_REQUIRED + _OPTIONAL))
        for key in _REQUIRED:
            if key not in data:
                raise UsageError(f"{where}.{key}", None, "a value (required field)")
        if data["group"] not in GROUPS:
            raise UsageError(f"{where}.group", data["group"], GROUPS)
        if data["task"] not in TASKS:
            raise UsageError(f"{where}.task", data["task"], TASKS)
        if data["metric"] not in METRICS:
            raise UsageError(f"{where}.metric", data["metric"], METRICS)
        classes = tuple(str(c) for c in data["classes"])
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise UsageError(f"{where}.classes", len(classes), "at least 2 distinct class names")
        templates = tuple(str(t) for t in data["templates"])
        if not templates or any(t.count(PLACEHOLDER) != 1 for t in templates):
            bad = next((t for t in templates if t.count(PLACEHOLDER) != 1), templates)
            raise UsageError(f"{where}.templates", bad, "templates that each contain the class placeholder {} once")
        simple = str(data.get("simple_template", "a photo of a {}."))
        if simple.count(PLACEHOLDER) != 1:
            raise UsageError(f"{where}.simple_template", simple, "a template containing {} once")
        loader = data["loader"]
        if not isinstance(loader, dict) or "kind" not in loader:
            raise UsageError(f"{where}.loader", loader, "a mapping with a 'kind'")
        test_size = int(data["test_size"])
        if test_size <= 0:
            raise UsageError(f"{where}.test_size", test_size, "a positive integer")
        return cls(
            name=str(data["name"]),
            display_name=str(data["display_name"]),
            group=data["group"],
            task=data["task"],
            metric=data["metric"],
            test_size=test_size,
            classes=classes,
            templates=templates,
            loader=dict(loader),
            origin=str(data["origin"]),
            notes=str(data.get("notes", "")),
            splits=dict(data.get("splits", {"train": "train", "test": "test"})),
            simple_template=simple,
            paper_class_count=data.get("paper_class_count"),
        )
