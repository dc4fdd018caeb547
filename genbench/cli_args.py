"""Arguments and signals of the ``genbench`` command: the global flags, SIGTERM as an interrupt, and argument types that turn one option's text into a
checked value or say in one line what was given and what is allowed (argparse then exits with code 2)."""

from __future__ import annotations

import argparse
from typing import Any


def int_at_least(minimum: int):
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: an integer >= {minimum}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"got {v}; allowed: an integer >= {minimum}")
        return v

    return conv


def positive(_name: str):
    return int_at_least(1)


def unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"got {text[:40]!r}; allowed: a number in (0, 1]")
    return value


def nonneg(_name: str):
    return int_at_least(0)


def storage_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: KEY=VALUE (an fsspec option, e.g. endpoint_url=http://...)")
    import yaml

    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed if isinstance(parsed, (str, int, float, bool)) else value


GLOBAL_FLAGS = ("-v", "--verbose", "--no-progress")


def global_flags_first(argv: list[str]) -> list[str]:
    """``genbench generate ... --no-progress`` as ``genbench --no-progress generate ...``: users put them anywhere."""
    return [a for a in argv if a in GLOBAL_FLAGS] + [a for a in argv if a not in GLOBAL_FLAGS]


RESUME = "rerun the same command to resume"


class Terminated(KeyboardInterrupt):
    """SIGTERM as an interrupt: the stack unwinds (collection locks released, temporary files left for the rerun to
    sweep) as it does on Ctrl-C, instead of the process dying wherever it was."""


_TERMINATED = []


def on_sigterm(signum: int, frame: Any) -> None:
    # Remembered as well as raised: an interrupt that arrives inside a blocking Ray call comes back out of Ray's core
    # as a plain KeyboardInterrupt, and the command must still exit 143, not 130.
    _TERMINATED.append(signum)
    raise Terminated()


def was_terminated() -> bool:
    """Whether this process has received SIGTERM (through ``on_sigterm``)."""
    return bool(_TERMINATED)
