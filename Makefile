# Two commands set up a fresh machine:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines take the local torch wheel; on a CUDA machine: make TORCH_SPEC=torch demo
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/default.yaml
OUT ?= runs/default

.PHONY: install browser demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/dexlite run --config $(CONFIG) --out $(OUT)

# tests/test_gallery.py draws the grasp gallery in a real headless browser: Debian's chromium, installed
# here when none is on PATH and apt-get can (root); elsewhere that test skips, and fails under CI.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	  || echo "no chromium (apt-get install chromium): the gallery's browser test will skip"

test: install browser
	$(PY) -m pytest -q -ra

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/energy.py

clean:
	rm -rf $(VENV) runs .pytest_cache
