"""Retrain the toy models from their shipped recipes and compare with the weights genbench ships.

Each model trains in a fresh process (as `genbench toy train --retrain` would) into a temporary cache, one after the
other so neither shares the CPU; then the weights' sha256 are compared with the shipped records, and the retrained
CLIP's zero-shot accuracy on the digits and digits_rot test splits is measured next to the shipped one's.

- train_s: wall seconds of each training (the trainer's own figure, in its record).
- identical: whether every retrained weights file has the shipped sha256 (expected on the machine that trained the
  shipped copy; another CPU may differ in the last bits, and the zero-shot figures show whether that matters).

    python benchmarks/toy_train.py

Ends by printing one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TRAIN = ("import sys; from genbench.models.toy.store import toy_model_dir; "
          "print(toy_model_dir(sys.argv[1], sys.argv[2], retrain=True))")


def _zero_shot(ref: str) -> dict[str, float]:
    from genbench.catalog import get_dataset
    from genbench.catalog.loaders import load_split
    from genbench.metrics.zeroshot import class_text_embeddings
    from genbench.models.clip import load_clip

    clip = load_clip(ref)
    out = {}
    for name in ("digits", "digits_rot"):
        spec = get_dataset(name)
        test = load_split(spec, "test")
        emb = clip.encode_images([test.image(i) for i in range(len(test))])
        text = class_text_embeddings(clip, spec.classes, spec.templates)
        out[name] = round(float(((emb @ text.T).argmax(1) == test.labels).mean()), 4)
    return out


def main() -> None:
    sys.path.insert(0, REPO)
    from genbench.models.toy.store import TOY_MODELS, read_record, shipped_dir

    cache = tempfile.mkdtemp(prefix="genbench-toy-bench-")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": REPO, "TQDM_DISABLE": "1"}
    result: dict = {"benchmark": "toy_train", "cpus": os.cpu_count(), "models": {}}
    for name in TOY_MODELS:
        proc = subprocess.run([sys.executable, "-c", _TRAIN, name, cache], capture_output=True, text=True, env=env,
                              check=True)
        retrained = read_record(proc.stdout.strip().splitlines()[-1])
        shipped = shipped_dir(name)
        shipped_record = read_record(shipped) if shipped else {}
        result["models"][name] = {
            "train_s": retrained["train_seconds"], "steps": retrained["steps"],
            "shipped_train_s": shipped_record.get("train_seconds"),
            "identical": retrained["weights_sha256"] == shipped_record.get("weights_sha256"),
        }
        if name == "toy-clip":
            result["models"][name]["zero_shot_retrained"] = _zero_shot(f"local-dir:{proc.stdout.strip().splitlines()[-1]}")
            result["models"][name]["zero_shot_shipped"] = _zero_shot("toy")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
