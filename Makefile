# Tradewind — every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed on its own line so that the choice of build stays yours:
#   CPU (default here):  make install
#   CUDA:                make install TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=

.PHONY: install run portfolio-demo test test-slow test-learning chaos wheel-check ci bench lint up down clean help
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
	$(BIN)/pip install --quiet -e ".[rl,dev]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install everything (torch CPU by default)

run: install  ## start the whole stack in replay mode (embedded Redis + PostgreSQL); Ctrl-C stops it
	$(BIN)/tradewind up --mode replay

PORTFOLIO_DEMO ?= var/policies/portfolio-demo
portfolio-demo: install  ## while `make run` runs: train a portfolio policy on the replay sample (tiny budget) and promote it by hand
	$(BIN)/python -m services.trainer.portfolio_demo var/portfolio-demo-data
	$(BIN)/tradewind train --algo ppo --data var/portfolio-demo-data --out $(PORTFOLIO_DEMO) --timesteps 256 --seed 0 \
		--set training.train_batch_size_per_learner=256 --set training.minibatch_size=64 \
		--set training.num_epochs=1 --set env.episode_len=64
	$(BIN)/tradewind policy promote $(PORTFOLIO_DEMO)

test: install  ## the test suite except tests marked slow (embedded Redis + PostgreSQL unless REDIS_URL / DATABASE_URL are set)
	$(BIN)/python -m pytest -q -m "not slow and not chaos" $(PYTEST_ARGS)

test-slow: install  ## the tests marked slow: learning, RLlib, Ray, end-to-end stacks
	$(BIN)/python -m pytest -q -m "slow and not chaos and not learning" $(PYTEST_ARGS)

test-learning: install  ## the default configs on a family of synthetic markets (~15 min on 2 cores; not in CI)
	$(BIN)/python -m pytest -q -m learning $(PYTEST_ARGS)

CHAOS_SUMMARY ?= var/chaos-summary.json
chaos: install  ## live executor + risk against the fake venue, kill -9 each process and server in turn; JSON summary in $(CHAOS_SUMMARY)
	CHAOS_SUMMARY=$(CHAOS_SUMMARY) $(BIN)/python -m pytest -q -s -m chaos tests/chaos $(PYTEST_ARGS)

wheel-check:  ## build the wheel, install it in a fresh venv outside the checkout, trade and train from an empty folder
	PYTHON=$(PYTHON) TORCH_SPEC="$(TORCH_SPEC)" TORCH_INDEX="$(TORCH_INDEX)" .ci/wheel_smoke.sh

ci:  ## what CI runs: lint, test, test-slow, wheel-check
	.ci/run

bench: install  ## run the benchmarks; writes bench/results.json
	$(BIN)/python -m bench

lint: install  ## ruff + mypy
	$(BIN)/ruff check shared services tests bench
	$(BIN)/ruff format --check shared services tests bench
	$(BIN)/mypy

up:  ## docker compose up (live public data, paper trading)
	docker compose up

down:  ## docker compose down
	docker compose down

clean:  ## remove .venv and ./var (embedded server data)
	rm -rf $(VENV) var
