# The two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Site telemetry needs an MQTT broker: Mosquitto if installed, else the pure-Python
# amqtt (installed here on demand); without either the demo says it runs without it.
demo: $(STAMP)
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto \
	  || $(BIN)/python -c 'import amqtt' 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet 'amqtt>=0.12' \
	  || echo "no MQTT broker (Mosquitto or amqtt): the demo runs without site telemetry"
	$(BIN)/nii demo

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core edge central drivers firmware_sim nii bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache var
