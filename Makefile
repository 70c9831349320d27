# ScratchDet Edge. Every target creates the venv it needs (.venv) on first use.
#   make demo   the whole pipeline on the built-in synthetic data (train -> export -> quantize -> bench -> check -> bundle)
#   make test   lint + the test suite (what CI runs)
PYTHON ?= python3
VENV_FLAGS ?=  # --system-site-packages on a Jetson, whose TensorRT bindings are system packages
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
SD     := $(BIN)/scratchdet
# tensorrt-stubs go beside the venv's site-packages, not in it: pip cannot install them with their
# dependency (a placeholder `tensorrt` sdist that fails), and in site-packages their `tensorrt/` folder
# would import as an empty package. 10.13.0.35.1 names 3 parameters `in` (a keyword) and puts a parameter
# without default after defaults, which stops mypy: the sed fixes exactly those.
STUBS  := $(VENV)/typing-stubs
STUBS_STAMP := $(STUBS)/.installed-10.13.0.35.1

SYNTH  := runs/data/synth
DATA   ?= $(SYNTH)
# Only the default dataset is synthesised on demand; a DATA given on the command line must exist, so a typo
# is an error, not a new synthetic dataset at the mistyped path.
DATASET := $(if $(filter $(SYNTH),$(DATA)),$(SYNTH)/annotations.json,dataset-exists)
CONFIG ?= tiny
RUN    ?= runs/$(CONFIG)
DEMO   := runs/demo
BASELINE ?= benchmarks/baselines/demo_tiny.json

.PHONY: docs dataset-exists test-arm setup setup-deploy typecheck gpu-check gpu-train-check test test-all lint demo train val export quantize bench check engine engine-rtx bundle clean

setup: $(STAMP) $(STUBS_STAMP)

$(STAMP):
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,dev]"
	touch $(STAMP)

$(STUBS_STAMP): | $(STAMP)
	rm -rf $(STUBS)
	$(BIN)/pip install --quiet --no-deps --target $(STUBS) tensorrt-stubs==10.13.0.35.1
	sed -i -E 's/, in: /, in_: /g; s/(power: Weights = None, channel_axis: int)\)/\1 = ...)/' \
		$(STUBS)/tensorrt_bindings/tensorrt.pyi
	touch $@

# The TensorRT shell against tensorrt-stubs (files and settings in pyproject.toml [tool.mypy])
typecheck: $(STAMP) $(STUBS_STAMP)
	$(BIN)/mypy

test: $(STAMP) $(STUBS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -m "not tensorrt and not arm"

test-all: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

# docs/cli.md from the argparse parsers (tests/test_docs.py fails when it is stale)
docs: $(STAMP)
	$(BIN)/python -m scratchdet.docs

$(SYNTH)/annotations.json: | $(STAMP)
	$(SD) data synth --out $(SYNTH) --images 300

dataset-exists:
	@test -e "$(DATA)" || { echo "DATA=$(DATA): no such dataset (only the default, $(SYNTH), is synthesised)" >&2; exit 2; }

train: $(STAMP) $(DATASET)
	$(SD) train --config $(CONFIG) --data $(DATA) --out $(RUN)

val: $(STAMP)
	$(SD) val --model $(RUN)/best.pt --data $(DATA)

export: $(STAMP)
	$(SD) export --model $(RUN)/best.pt --data $(DATA)

quantize: $(STAMP)
	$(SD) quantize --model $(RUN)/export/model.onnx --data $(DATA) --target ort
	$(SD) quantize --model $(RUN)/export/model.onnx --data $(DATA) --target tensorrt
	$(SD) quantize --model $(RUN)/export/model.onnx --precision fp16

bench: $(STAMP)
	$(SD) bench --model $(RUN)/best.pt $(RUN)/export/model.onnx $(RUN)/export/model-int8-ort.onnx \
		--data $(DATA) --out $(RUN)/bench

check: $(STAMP)
	$(SD) check --report $(RUN)/bench/report.json --baseline $(BASELINE)

# Where TensorRT and a GPU exist: FP16 and INT8 engines; elsewhere it says what is missing and the trtexec lines.
engine: $(STAMP)
	$(SD) engine --model $(RUN)/export/model-fp16.onnx --precision fp16
	$(SD) engine --model $(RUN)/export/model-int8-tensorrt.onnx --precision int8

# TensorRT for RTX engines, compiled ahead of time on any machine (no GPU needed; the dev install has it):
# RUN/engines/model-PRECISION.rtx.engine + .json sidecar. RTX_SM=SM86,SM89 picks targets (default: TensorRT-RTX's).
RTX_SM ?=
engine-rtx: $(STAMP)
	$(SD) engine --runtime tensorrt-rtx --model $(RUN)/export/model.onnx --precision fp32 $(if $(RTX_SM),--sm $(RTX_SM))
	$(SD) engine --runtime tensorrt-rtx --model $(RUN)/export/model-fp16.onnx --precision fp16 $(if $(RTX_SM),--sm $(RTX_SM))
	$(SD) engine --runtime tensorrt-rtx --model $(RUN)/export/model-int8-tensorrt.onnx --precision int8 $(if $(RTX_SM),--sm $(RTX_SM))

# On a host with a GPU and TensorRT: FP32/FP16/INT8 engines of a briefly trained tiny model, `pytest -m tensorrt`,
# mAP and detections vs ONNX Runtime FP32, latency, one report (runs/gpu-check/report.md). Elsewhere it exits 1
# with one line naming what is missing; GPU_CHECK_ARGS=--dry-run shows the report format on ONNX Runtime.
gpu-check: $(STAMP) $(DATASET)
	@$(BIN)/python -m scratchdet.benchmarks.gpu_check --data $(DATA) --out runs/gpu-check $(GPU_CHECK_ARGS)

# The device side without torch (JetPack 6: CUDA 12, Python 3.10; JetPack 7: CUDA 13, Python 3.12): the deploy
# requirement set for the driver's CUDA major, TensorRT from the system site-packages, this package without its
# dependencies. The stamp it leaves lets `make engine` and `make gpu-check` run there without `make setup`.
CUDA_MAJOR ?= 12
setup-deploy:
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/deploy-cu$(CUDA_MAJOR).txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# On a host with a CUDA GPU and PyTorch >= 2.4: the host's own Python and torch (no venv, torch==2.13.0 is not
# forced), scratchdet imported from this checkout (scratchdet/ links the stage folders, so PYTHONPATH is enough).
# Training under fp16/bf16, CPU checkpoint resumed on the GPU, kill + resume, torchrun/NCCL, throughput, inference
# FP32/FP16/BF16, ONNX Runtime CUDA: runs/gpu-train-check/report.md. Without a GPU it exits 1 naming what is
# missing; GPU_TRAIN_CHECK_ARGS=--dry-run runs the stages on the CPU (GPU_PYTHON=.venv/bin/python here).
GPU_PYTHON ?= python3
GPU_PYTHON_CMD = $(if $(findstring /,$(GPU_PYTHON)),$(abspath $(GPU_PYTHON)),$(GPU_PYTHON))
gpu-train-check:
	@PYTHONPATH="$(CURDIR)" $(GPU_PYTHON_CMD) -m scratchdet.benchmarks.gpu_train_check \
		--out "$(CURDIR)/runs/gpu-train-check" $(GPU_TRAIN_CHECK_ARGS)

bundle: $(STAMP)
	$(SD) bundle --model $(RUN)/export/model.onnx --data $(DATA)

demo: $(STAMP) $(DATASET)
	$(SD) train --config tiny --data $(DATA) --out $(DEMO)
	$(SD) val --model $(DEMO)/best.pt --data $(DATA) --json $(DEMO)/val.json
	$(SD) export --model $(DEMO)/best.pt --data $(DATA)
	$(SD) quantize --model $(DEMO)/export/model.onnx --data $(DATA) --target ort
	$(SD) bench --model $(DEMO)/best.pt $(DEMO)/export/model.onnx $(DEMO)/export/model-int8-ort.onnx \
		--data $(DATA) --out $(DEMO)/bench
	$(SD) check --report $(DEMO)/bench/report.json --baseline $(BASELINE) --json $(DEMO)/bench/check.json
	$(SD) bundle --model $(DEMO)/export/model.onnx --data $(DATA) --out $(DEMO)/bundle
	@echo
	@echo "demo finished. Artefacts:"
	@echo "  training   $(DEMO)/best.pt, last.pt, metrics.jsonl, loss.png, grad_norm.png, grad_fluctuation.png, map.png"
	@echo "  accuracy   $(DEMO)/val.json"
	@echo "  export     $(DEMO)/export/model.onnx, model-int8-ort.onnx"
	@echo "  benchmark  $(DEMO)/bench/report.md, report.json, fps_vs_map.png, check.json"
	@echo "  bundle     $(DEMO)/bundle/ and $(DEMO)/bundle.tar.gz"
	@echo
	@cat $(DEMO)/bench/report.md

clean:
	rm -rf runs .pytest_cache .ruff_cache

# aarch64 ONNX Runtime under qemu-user: host vs emulated cores (set-up cached in .cache/arm-sysroot)
test-arm: $(STAMP)
	$(BIN)/pytest -q -m arm -s tests/benchmarks/test_arm_parity.py
