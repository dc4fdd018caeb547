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

I2D    := .venv-img2dataset
I2D_STAMP := $(I2D)/.installed

.PHONY: setup run test bench browser-check clean img2dataset-tool

setup: $(STAMP)

# img2dataset in its own environment, as users run it: its releases pin webdataset<0.3 and pandas<3, genbench pins
# webdataset 1.0.2 and pandas 3.1.1. The tests download with it from a loopback server and read what it wrote.
img2dataset-tool: $(I2D_STAMP)

$(I2D_STAMP):
	test -x $(I2D)/bin/python || python3 -m venv $(I2D)
	$(I2D)/bin/python -m pip install -q img2dataset==1.47.0
	touch $(I2D_STAMP)

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

# Two processes, whole files each (module fixtures stay in one process): most tests wait on Ray start-up,
# subprocesses and loopback servers, so two of them share the 2-core machine well.
test: setup img2dataset-tool
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

bench: setup
	$(PY) -m pytest -q -m benchmark

# The report as a reader sees it, in headless Chromium (Debian: apt-get install -y chromium); not part of `make test`.
browser-check: setup
	$(PY) -m pytest -q -m browser tests/test_browser.py

clean:
	rm -rf $(OUT) .pytest_cache
