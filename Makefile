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

# The virtualenv is (re)built when pyproject.toml changes. torch is pinned to the CPU build on disk;
# numpy<2 is required by Triton's Python backend; nvidia-pytriton is installed without its
# dependencies because only its tritonserver binary and Python backend are needed.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0" "numpy<2"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps "nvidia-pytriton==0.7.0"
	$(BIN)/python -c "import numpy, torch, onnxruntime, tritonclient.grpc, pydicom; assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__"
	# perf_analyzer (bench.py --compare perf_analyzer) from the tritonclient 2.41.0 wheel, cached
	$(BIN)/python -c "from covidet.bench._perf_analyzer import find_perf_analyzer; find_perf_analyzer()"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/covidet demo --out $(DEMO_DIR) --profile $(PROFILE)

serve: install
	$(BIN)/covidet serve --profile $(PROFILE) --http-port $(PORT_HTTP) --grpc-port $(PORT_GRPC) --metrics-port $(PORT_METRICS)

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

train-demo: install
	$(BIN)/covidet train-demo --seed 0

evaluate: install
	$(BIN)/covidet evaluate-demo --seed 1000

bench: install
	$(BIN)/python benchmarks/bench.py --concurrency 1,2,4 --duration 20 --json benchmarks/results/cpu.json

clean:
	rm -rf build $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
