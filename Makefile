# visionrepro: two commands do all set-up on a fresh clone:
#   make reproduce PAPER=cdtrans     (embedded default; DATA=<root> for the real benchmark)
#   make test
# Each creates .venv when it is missing or older than pyproject.toml / constraints.txt; the venv gets
# the exact tested versions in constraints.txt (pyproject.toml declares the supported ranges).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PAPER ?=
DATA ?=
SEEDS ?=
GPUS ?=
ARGS ?=
RUNS ?=

.PHONY: help venv reproduce pretrain test results bench gpu-check lint clean-venv

help:
	@echo "make reproduce PAPER=<folder> [DATA=<root>] [SEEDS=0,1,2] [GPUS=n] [ARGS='...']"
	@echo "make pretrain PAPER=<transreid_ssl|transfgu|cdtrans> [SEEDS=0,1,2] [ARGS='...']  (regenerates the shipped encoders)"
	@echo "make test | make results [RUNS=<dir with run folders>] | make bench | make gpu-check [ARGS='...'] | make lint"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -c constraints.txt
	@touch $(STAMP)

venv: $(STAMP)

reproduce: $(STAMP)
	@$(PY) -m shared.reproduce "$(PAPER)" $(if $(DATA),--data "$(DATA)") $(if $(SEEDS),--seeds "$(SEEDS)") $(if $(GPUS),--gpus "$(GPUS)") $(ARGS)

pretrain: $(STAMP)
	@$(PY) -m shared.pretrain "$(PAPER)" $(if $(SEEDS),--seeds "$(SEEDS)") $(ARGS)

test: $(STAMP)
	$(PY) -m pytest tests

results: $(STAMP)
	$(PY) -m shared.results $(if $(RUNS),--runs $(RUNS))

bench: $(STAMP)
	@set -e; for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b; done

gpu-check: $(STAMP)
	@$(PY) benchmarks/gpu_check.py $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

clean-venv:
	rm -rf $(VENV)
