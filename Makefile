# rfai: every target creates .venv if it is missing, installs, then runs.
#   make train   CONFIG=config.yaml ARGS="--set training.steps=100"
#   make demo    offline run on a tiny model built on the spot (configs/tiny.yaml)
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

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

train: $(STAMP)
	$(PY) train_rfai.py --config $(CONFIG) $(ARGS)

models/tiny/config.json: $(STAMP)
	$(PY) -m rfai.tiny_model models/tiny

# The demo's run folder is scratch: each `make demo` starts it afresh (rows still append
# to ./datasets/train.jsonl, each tagged with its run_id).
demo: $(STAMP) models/tiny/config.json
	rm -rf runs/tiny
	$(PY) train_rfai.py --config configs/tiny.yaml $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

bench-rollout: $(STAMP)
	$(PY) bench/rollout.py $(ARGS)

bench-step: $(STAMP)
	$(PY) bench/step.py $(ARGS)

clean-demo:
	rm -rf models/tiny runs/tiny datasets
