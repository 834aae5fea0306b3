# Two commands set up a fresh machine:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines take the local torch wheel; on a CUDA machine: make TORCH_SPEC=torch demo
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/default.yaml
OUT ?= runs/default

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/dexlite run --config $(CONFIG) --out $(OUT)

test: install
	$(PY) -m pytest -q -ra

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/energy.py

clean:
	rm -rf $(VENV) runs .pytest_cache
