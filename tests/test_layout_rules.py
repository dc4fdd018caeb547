"""The house rules of DESIGN.md, read from the code's own imports: Ray only in engine/, the engine imports no model or
prompt code, no module grows past ~400 lines, the library never imports the tests, every shipped config loads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIB = REPO / "genbench"
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(LIB.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (function-level imports included), as absolute dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_no_module_is_over_400_lines():
    long = {_rel(p): n for p in _modules() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_ray_only_in_the_engine():
    outside = {_rel(p) for p in _modules() if "engine" not in p.relative_to(LIB).parts
               and any(m == "ray" or m.startswith("ray.") for m in _imports(p))}
    assert not outside, outside


def test_the_engine_imports_no_model_or_prompt_code():
    forbidden = ("genbench.models", "genbench.prompts", "diffusers", "open_clip", "transformers", "torch")
    found = {}
    for p in (LIB / "engine").glob("*.py"):
        bad = sorted(m for m in _imports(p) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            found[_rel(p)] = bad
    assert not found, found


def test_the_library_never_imports_tests():
    assert not {_rel(p) for p in _modules() if any(m == "tests" or m.startswith("tests.") for m in _imports(p))}


def test_the_cli_imports_nothing_heavy_until_a_command_runs():
    import subprocess
    import sys

    code = ("import sys; import genbench.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'diffusers', 'open_clip', 'ray', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_a_run_imports_no_model_library_before_ray(tmp_path):
    """Everything a run does before it starts Ray (config, preflight, planning) leaves torch unimported: the driver's
    memory then is a fraction of what loading models takes (see BENCHMARKS.md, start-up)."""
    import subprocess
    import sys

    code = ("import sys; from genbench.config import load_config; from genbench.engine import experiment, dispatch; "
            "from genbench.engine.preflight import preflight; "
            f"preflight(load_config('configs/quickstart.yaml'), {str(tmp_path)!r}, {str(tmp_path / 'shards')!r}); "
            "print(sorted(m for m in ('torch', 'diffusers', 'open_clip', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert not list(tmp_path.iterdir())  # preflight writes nothing


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    from genbench.config import load_config

    cfg = load_config(str(path))
    assert cfg.sources and cfg.datasets
