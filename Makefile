# Set-up installs the pinned CPU torch first, so the project's torch>= requirement is
# already met and pip never pulls a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
SPEC ?= warmup(5%) >> cosine(end=0.01)

.PHONY: setup data demo schedule-demo test lint bench clean check-torch

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	@# the test extras (Lightning, transformers) and the runtime dependencies (optuna,
	@# schedulefree, prodigyopt) must not have replaced the pinned torch
	@$(MAKE) --no-print-directory check-torch
	touch $@

# The installed torch is the pinned one (CI runs this after set-up, too).
check-torch: | $(BIN)/python
	@$(BIN)/python -c "import sys, torch; want = '$(TORCH)'.partition('==')[2]; \
		sys.exit(0 if not want or torch.__version__.split('+')[0] == want else \
		f'torch {torch.__version__} replaced the pinned {want}')"

setup: $(VENV)/.installed

# Fashion-MNIST: Debian's dataset-fashion-mnist when we can install it (root + apt-get);
# otherwise the loader searches $$LRLAB_DATA, ~/.cache/lrlab, ... and says where it looked.
FMNIST := /usr/share/datasets/fashion-mnist
data:
	@if [ -e "$(FMNIST)/train-images-idx3-ubyte.gz" ] || [ -e "$(FMNIST)/train-images-idx3-ubyte" ] || [ -n "$$LRLAB_DATA" ]; then \
		echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)) && \
		echo "Fashion-MNIST: installed dataset-fashion-mnist"; \
	else \
		echo "Fashion-MNIST: not found; install dataset-fashion-mnist or set LRLAB_DATA"; \
	fi

demo: setup data
	$(BIN)/lrlab compare --preset quickstart --jobs 2 --out out/quickstart

schedule-demo: setup
	$(BIN)/lrlab schedule "$(SPEC)" --lr 0.1 --steps 1000 --compare "warmup(5%)" "cosine()" --plot out/schedule.png --every 100

test: setup
	$(BIN)/python -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) out build *.egg-info
