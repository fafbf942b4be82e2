# rfai: every target creates .venv if it is missing, installs, then runs.
#   make train   CONFIG=config.yaml ARGS="--set training.steps=100"
#   make demo    offline run on a tiny model built on the spot (configs/tiny_learn.yaml)
#   make test    the whole test suite on CPU
# On Linux the MLX backend is an extra: BACKEND=cpu (default) or BACKEND=cuda13.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= config.yaml
ARGS   ?=
BACKEND ?= cpu

ifeq ($(shell uname -s),Darwin)
EXTRAS := dev
else
EXTRAS := $(BACKEND),dev
endif
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: install train demo test lint bench-rollout bench-step clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# mlx-cpu and mlx-cuda-13 install the same library file: keep only the chosen one.
OTHER_BACKEND := $(if $(filter cuda13,$(BACKEND)),mlx-cpu,mlx-cuda-13)

$(STAMP): pyproject.toml | $(PY)
ifneq ($(shell uname -s),Darwin)
	@if $(PY) -m pip show -q $(OTHER_BACKEND) >/dev/null 2>&1; then \
	  echo "error: .venv has $(OTHER_BACKEND) installed but BACKEND=$(BACKEND) was asked for; the two" >&2; \
	  echo "backends install the same files, so switch with a fresh environment: rm -rf .venv" >&2; \
	  exit 1; fi
endif
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

train: $(STAMP)
	$(PY) train_rfai.py --config $(CONFIG) $(ARGS)

models/tiny/config.json: | $(STAMP)
	$(PY) -m rfai.tiny_model models/tiny

# The demo's run folder is scratch: each `make demo` starts it afresh, its rows included
# (runs/tiny/datasets).
demo: $(STAMP) models/tiny/config.json
	rm -rf runs/tiny
	$(PY) train_rfai.py --config configs/tiny_learn.yaml $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadscope tests

lint: $(STAMP)
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

bench-rollout: $(STAMP)
	$(PY) bench/rollout.py $(ARGS)

bench-step: $(STAMP)
	$(PY) bench/step.py $(ARGS)

clean-demo:
	rm -rf models/tiny runs/tiny
