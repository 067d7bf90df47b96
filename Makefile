# covidet — the two commands: `make demo` and `make test` (both set everything up on a fresh machine).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT_HTTP ?= 8000
PORT_GRPC ?= 8001
PORT_METRICS ?= 8002
PROFILE ?= cpu
DEMO_DIR ?= demo_out

.PHONY: help install demo serve test lint typecheck train-demo evaluate bench clean

help:
	@echo "make demo   - set up, start Triton, diagnose phantom DICOM series of each class, stop"
	@echo "make test   - set up, run the whole test suite"
	@echo "make serve  - set up, start the server in the foreground (Ctrl-C stops it)"

# The package is installed editable in setuptools' strict mode: a tree of links to each source
# file under build/__editable__.*, so a module added or removed needs a reinstall. The install
# stamp is therefore named after the list of package files: a new or deleted file (or a changed
# pyproject.toml) reinstalls, an edited one does not. torch is pinned to the CPU build on disk;
# numpy<2 is required by Triton's Python backend; nvidia-pytriton is installed without its
# dependencies because only its tritonserver binary and Python backend are needed.
LINT_DIRS := src client ensemble export model_repository tests benchmarks
PKG_DIRS := src client ensemble export model_repository
PKG_HASH := $(shell find $(PKG_DIRS) -type f -not -path '*/__pycache__/*' 2>/dev/null | LC_ALL=C sort | cksum | cut -d' ' -f1)
STAMP    := $(BIN)/.installed-$(PKG_HASH)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0" "numpy<2"
	$(BIN)/python -m pip install --quiet -e ".[dev]" --config-settings editable_mode=strict
	$(BIN)/python -m pip install --quiet --no-deps "nvidia-pytriton==0.7.0"
	$(BIN)/python -c "import numpy, torch, onnxruntime, tritonclient.grpc, pydicom; assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__"
	$(BIN)/python -c "import covidet.client, covidet.ensemble, covidet.export, covidet.server, covidet.cli"
	# perf_analyzer (bench.py --compare perf_analyzer) from the tritonclient 2.41.0 wheel, cached
	$(BIN)/python -c "from covidet.bench._perf_analyzer import find_perf_analyzer; find_perf_analyzer()"
	rm -f $(BIN)/.installed-*
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/covidet demo --out $(DEMO_DIR) --profile $(PROFILE)

serve: install
	$(BIN)/covidet serve --profile $(PROFILE) --http-port $(PORT_HTTP) --grpc-port $(PORT_GRPC) --metrics-port $(PORT_METRICS)

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: install
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

typecheck: install
	$(BIN)/mypy

train-demo: install
	$(BIN)/covidet train-demo --seed 0

# A labelled phantom cohort (12 scans, the classes in turn, + one serial course) through a server of its own
# on the EVAL_* ports; prints where the report is (opens nothing). `covidet evaluate-demo` is the
# in-process phantom check it replaced here.
evaluate: EVAL_DIR ?= build/evaluate
evaluate: EVAL_SCANS ?= 12
evaluate: EVAL_PORTS ?= 8100 8101 8102
evaluate: install
	test -f $(EVAL_DIR)/cohort/manifest.csv || $(BIN)/covidet phantom --cohort $(EVAL_SCANS) --courses 1 \
		--slices 32 --size 128 --out $(EVAL_DIR)/cohort
	set -- $(EVAL_PORTS); mkdir -p $(EVAL_DIR); \
	$(BIN)/covidet serve --profile $(PROFILE) --http-port $$1 --grpc-port $$2 --metrics-port $$3 \
		> $(EVAL_DIR)/server.log 2>&1 & pid=$$!; \
	$(BIN)/covidet evaluate $(EVAL_DIR)/cohort/manifest.csv --url 127.0.0.1:$$2 --out $(EVAL_DIR)/report \
		--wait-ready 600; rc=$$?; kill -INT $$pid; wait $$pid; exit $$rc

bench: install
	$(BIN)/python benchmarks/bench.py --concurrency 1,2,4 --duration 20 --json benchmarks/results/cpu.json

clean:
	rm -rf build $(DEMO_DIR) $(BIN)/.installed-* .pytest_cache .mypy_cache .ruff_cache
