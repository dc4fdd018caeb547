# Two commands: `make run` (set-up + quickstart) and `make test` (set-up + the whole suite).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.genbench-installed
CONFIG ?= configs/quickstart.yaml
OUT    ?= out/quickstart
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: setup run test bench clean

setup: $(STAMP)

# torch/torchvision go first with an exact pin: on x86_64 pip takes them from this machine's local
# files; letting another package pull in "torch" unpinned would download a different multi-GB build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/genbench run $(CONFIG) --out $(OUT)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pytest -q -m benchmark

clean:
	rm -rf $(OUT) .pytest_cache
