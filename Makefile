# ScratchDet Edge: every target creates the venv it needs (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNS   := runs

DATA   ?= $(RUNS)/data/synth
CONFIG ?= tiny
RUN    ?= $(RUNS)/$(CONFIG)

.PHONY: setup test test-all lint demo train val clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not tensorrt and not arm"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

$(DATA)/annotations.json: | $(STAMP)
	$(BIN)/scratchdet data synth --out $(DATA) --images 240

train: $(STAMP) $(DATA)/annotations.json
	$(BIN)/scratchdet train --config $(CONFIG) --data $(DATA) --out $(RUN)

val: $(STAMP)
	$(BIN)/scratchdet val --weights $(RUN)/best.pt --data $(DATA)

demo: $(STAMP) $(DATA)/annotations.json
	$(BIN)/scratchdet train --config tiny --data $(DATA) --out $(RUNS)/demo
	$(BIN)/scratchdet val --weights $(RUNS)/demo/best.pt --data $(DATA) --json $(RUNS)/demo/val.json
	@echo "demo finished: run folder $(RUNS)/demo (best.pt, metrics.jsonl, loss.png, grad_norm.png, grad_fluctuation.png, map.png, val.json)"

clean:
	rm -rf $(RUNS) .pytest_cache .ruff_cache
