# Two commands do all the set-up: `make demo` and `make test` each create the
# virtual environment in .venv (if it is not there yet) and install the package.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demo: both stages on scikit-learn's bundled digits.
NETWORK ?= mobilenet_v2
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
	$(BIN)/extract_features --network=$(NETWORK) --weights=$(WEIGHTS) --output_dir=$(DEMO_DIR)
	$(BIN)/feature_extraction \
	  --training_file=$(DEMO_DIR)/$(NETWORK)_digits_bottleneck_features_train.h5 \
	  --validation_file=$(DEMO_DIR)/$(NETWORK)_digits_bottleneck_features_validation.h5 \
	  --output_dir=$(DEMO_DIR)/$(NETWORK)_digits_softmax

# The whole suite, slow tests included (the real-data test runs when ../shared/data exists).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick loop while developing: skips the tests marked slow.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(DEMO_DIR) runs .pytest_cache
