"""What a fetch may do and how it can fail: the failure kinds (and which of them are worth trying again), and the
bounded, validated limits of one fetch (``sources[i].fetch`` in a config)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from genbench import validate
from genbench.errors import UsageError

FAILURE_KINDS: tuple[str, ...] = (
    "bad_url",  # not parseable, no host, bad port
    "bad_scheme",
    "refused_address",
    "redirect_loop",
    "too_many_redirects",
    "http_4xx",
    "http_throttled",  # 408 or 429: the server asks us to come back later
    "http_5xx",
    "bad_status",  # a status that is neither 2xx, a followable redirect, 4xx nor 5xx (e.g. 304, 3xx without Location)
    "timeout",
    "too_large",
    "decode_error",
    "too_many_pixels",
    "connection_error",
    "robots_disallowed",  # the response's X-Robots-Tag opts the image out of AI use or indexing
    "not_downloaded",  # reading an img2dataset download: the URL is not in it, or img2dataset failed to fetch it
)
TRANSIENT_KINDS: frozenset[str] = frozenset({"timeout", "http_throttled", "http_5xx", "connection_error"})
# Failures that a different policy could turn into an image (another allow-list, larger caps): final only under the
# policy that met them.
POLICY_KINDS: frozenset[str] = frozenset({"refused_address", "too_large", "too_many_pixels", "too_many_redirects",
                                          "robots_disallowed", "not_downloaded"})
# The X-Robots-Tag directives that opt an image out, as img2dataset honours them by default.
ROBOTS_DISALLOW = ("noai", "noimageai", "noindex", "noimageindex")


def robots_disallowed(values: list[str], token: str, disallowed: tuple[str, ...]) -> bool:
    """Whether X-Robots-Tag header ``values`` forbid the use: img2dataset's reading of the header. A value is either
    ``directive, directive`` (for every crawler) or ``agent: directive, ...`` (only for the crawler whose user-agent
    token is ``agent``, compared without case)."""
    banned = {d.strip().lower() for d in disallowed}
    for value in values:
        agent, sep, rest = value.partition(":")
        directives = rest if sep else agent
        if sep and agent.strip().lower() != token.strip().lower():
            continue
        if any(d.strip().lower() in banned for d in directives.split(",")):
            return True
    return False


def _directives(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > 100:
        raise UsageError(where, value, "a list of X-Robots-Tag directives such as noai, noindex ([] honours none)")
    return tuple(validate.text(v, f"{where}[{j}]", "an X-Robots-Tag directive such as noai", 64).lower()
                 for j, v in enumerate(value))
class FetchFailure(Exception):
    """One fetch failed, under ``kind`` (one of :data:`FAILURE_KINDS`)."""

    def __init__(self, kind: str, error: str):
        super().__init__(error)
        self.kind, self.error = kind, error


def _deadline(value: Any, where: str) -> float | None:
    return None if value is None else validate.number(value, where, 0.0, 3600.0, lo_open=True)


# Bounds of each configurable limit (``sources[i].fetch.<name>`` in a config).
_POLICY_CHECKS: dict[str, validate.Check] = {
    "timeout_s": validate.nums(0.0, 600.0, lo_open=True),
    "max_bytes": validate.ints(1, 2**31),
    "max_pixels": validate.ints(1, 2**31),
    "retries": validate.ints(0, 10),
    "backoff_s": validate.nums(0.0, 60.0),
    "allow_networks": validate.cidrs,
    "max_redirects": validate.ints(0, 20),
    "user_agent": validate.texts("a non-empty User-Agent string"),
    "deadline_s": _deadline,
    "robots_token": validate.texts("a user-agent token that X-Robots-Tag values may address (e.g. genbench)"),
    "robots_disallow": _directives,
}


def parse_policy(data: Any, where: str, allow_networks: tuple[str, ...] = ()) -> "FetchPolicy":
    """A :class:`FetchPolicy` from a config mapping at ``where`` (unknown keys refused, each value bounded)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(where, data, "a mapping of fetch limits: " + ", ".join(k for k in _POLICY_CHECKS if k != "allow_networks"))
    validate.keys(data, [k for k in _POLICY_CHECKS if k != "allow_networks"], f"{where}.")
    kw = {k: _POLICY_CHECKS[k](v, f"{where}.{k}") for k, v in data.items()}
    return FetchPolicy(**kw, allow_networks=tuple(allow_networks))


@dataclass(frozen=True)
class FetchPolicy:
    """Limits of one fetch. ``timeout_s`` bounds connecting and each socket read; ``deadline_s`` (default
    3 x ``timeout_s``) bounds one whole attempt, headers and body. ``allow_networks`` (CIDR strings) is the only way to
    reach non-public addresses."""

    timeout_s: float = 10.0
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 64_000_000
    retries: int = 2
    backoff_s: float = 0.5
    allow_networks: tuple[str, ...] = ()
    max_redirects: int = 5
    user_agent: str = "genbench/0.1 (+research)"
    deadline_s: float | None = None
    robots_token: str = "genbench"
    robots_disallow: tuple[str, ...] = ROBOTS_DISALLOW

    def __post_init__(self) -> None:
        if isinstance(self.allow_networks, str):  # a lone CIDR string would otherwise be iterated per character
            object.__setattr__(self, "allow_networks", (self.allow_networks,))
        object.__setattr__(self, "robots_disallow", tuple(self.robots_disallow))  # asdict() round trips give lists
        for name, check in _POLICY_CHECKS.items():
            check(getattr(self, name), name)  # a bad value raises UsageError naming the field

    def digest(self) -> str:
        """What the outcome of a fetch may depend on, as a short digest (recorded with every staging part)."""
        import hashlib
        import json
        from dataclasses import asdict

        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=list).encode()).hexdigest()[:16]

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.allow_networks)

    @property
    def attempt_deadline_s(self) -> float:
        return self.deadline_s if self.deadline_s is not None else 3 * self.timeout_s
