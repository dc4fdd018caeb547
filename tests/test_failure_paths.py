"""Failure paths a new user meets, as commands. Bad references exit 2 with one line on stderr, before Ray starts or
anything is written; an interrupted run exits with the signal's code and one line. The hub is "unreachable" through HF_ENDPOINT pointing at a closed loopback port, so these hold on any machine,
with or without network; a fresh HF_HOME keeps a developer's own cache out of it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

BIN = os.path.join(os.path.dirname(sys.executable), "genbench")
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d INFO genbench[.\w]*: ")  # the CLI's log format, genbench's own loggers


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connecting is refused at once


@pytest.fixture
def no_hub(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HOME=str(tmp_path / "hf-home"), RAY_ADDRESS="")
    return env


def _fails_in_one_line(argv: list[str], env: dict, *needles: str) -> str:
    proc = subprocess.run([BIN, *argv], env=env, capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-3000:])
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err[-3000:]
    for needle in needles:
        assert needle in err, err
    return err


def test_a_hub_generator_without_a_reachable_hub_fails_in_preflight(tmp_path, no_hub):
    out = tmp_path / "out"
    _fails_in_one_line(
        ["generate", "--dataset", "digits", "--generator", "stabilityai/stable-diffusion-2-1-base", "--shots", "1",
         "--clip", "tiny", "--out", str(out)],
        no_hub, "sources[0].generator", "hub cannot be reached", "HF_HUB_OFFLINE=1", "local diffusers directory")
    assert not out.exists()


def test_a_hub_generator_offline_and_not_cached_fails_in_preflight(tmp_path, no_hub):
    out = tmp_path / "out"
    _fails_in_one_line(
        ["generate", "--dataset", "digits", "--generator", "stabilityai/stable-diffusion-2-1-base", "--shots", "1",
         "--clip", "tiny", "--out", str(out)],
        {**no_hub, "HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1 forbids downloads", "local Hugging Face cache")
    assert not out.exists()


def test_clip_weights_without_a_reachable_hub_fail_in_preflight(tmp_path, no_hub):
    out = tmp_path / "out"
    _fails_in_one_line(
        ["generate", "--dataset", "digits", "--generator", "tiny", "--shots", "1", "--clip", "ViT-B-32:openai",
         "--out", str(out)],
        no_hub, "clip: got 'ViT-B-32:openai'", "hub cannot be reached")
    assert not out.exists()


@pytest.mark.parametrize("clip, needles", [
    ("ViT-B-23:openai", ("unknown architecture 'ViT-B-23'", "did you mean ViT-B-32")),
    ("ViT-B-32:opnai", ("a pretrained tag of ViT-B-32", "did you mean openai?")),
])
def test_a_clip_typo_says_did_you_mean(tmp_path, no_hub, clip, needles):
    _fails_in_one_line(
        ["generate", "--dataset", "digits", "--generator", "tiny", "--shots", "1", "--clip", clip,
         "--out", str(tmp_path / "out")],
        no_hub, f"clip: got {clip!r}", *needles)


# 50 shards of 10: a run is still at work when the test sees its first shard, however fast the machine.
GENERATE = ["--no-progress", "generate", "--dataset", "digits", "--generator", "tiny", "--shots", "50", "--steps", "2",
            "--image-size", "32", "--shard-size", "10", "--clip", "tiny", "--workers", "1", "--out"]


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_run_exits_with_the_signal_code_and_one_line(tmp_path, sig, code, word, request):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it, with the run's own embedded cluster) and
    SIGTERM to the command (joined to this session's cluster, as on a shared one): the shell's code for the signal,
    one error line and no traceback; the collection's lock is released for the rerun."""
    out = tmp_path / "out"
    coll = out / "digits" / "generated" / "tiny_st_steps2_px32_s0"
    env = {**os.environ, "RAY_ADDRESS": "", "HF_HUB_OFFLINE": "1"}
    if sig == signal.SIGTERM:
        ray = request.getfixturevalue("ray_local")
        env.update(RAY_ADDRESS=ray.get_runtime_context().gcs_address, RAY_AUTH_MODE="token")
    # pytest-xdist's workers ignore SIGINT and children inherit that (Python then installs no Ctrl-C handler): give
    # the command the terminal's default, as a user's shell does.
    proc = subprocess.Popen([BIN, *GENERATE, str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        while not list(coll.glob("*.tar")):  # at work: a shard is committed
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:] if proc.poll() else ""
            time.sleep(0.2)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == code, err[-3000:]
    assert len(list(coll.glob("*.tar"))) < 50  # stopped part-way
    assert "Traceback" not in err and "SIGTERM received" not in err, err[-3000:]
    own = [line for line in err.splitlines() if not LOG_LINE.match(line)]  # genbench's own INFO progress aside
    assert own == [f"genbench: {word}; rerun the same command to resume"], err[-3000:]
    assert not (coll / ".genbench.lock").exists()


def test_global_flags_work_after_the_subcommand(monkeypatch, capsys):
    from genbench.cli import main

    monkeypatch.setenv("TQDM_DISABLE", "0")  # restored after the test: main sets it for --no-progress
    assert main(["datasets", "--json", "--no-progress", "-v"]) == 0
    assert os.environ["TQDM_DISABLE"] == "1"
    assert capsys.readouterr().out.lstrip().startswith("[")
