# Two commands do all the set-up: `make demo` and `make test` each create the
# virtual environment in .venv (if it is not there yet) and install the package.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demo: both stages on scikit-learn's bundled digits (VGG16 at input 32; seeded random
# weights, said and marked, where the ImageNet weights cannot be downloaded).
NETWORK ?= vgg16
WEIGHTS ?= imagenet
DEMO_DIR ?= demo_output
PYTEST_ARGS ?=

.PHONY: install demo test test-fast clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,ray,openvino]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python -m bottleneck_cache.bin.demo --network=$(NETWORK) --weights=$(WEIGHTS) --output_dir=$(DEMO_DIR)

# The whole suite, slow tests included (the real-data test runs when ../shared/data exists).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick loop while developing: skips the tests marked slow.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(DEMO_DIR) runs .pytest_cache
