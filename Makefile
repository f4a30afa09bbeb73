# The two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean fuzz

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

# The system tests run one at a time: they start real processes and check time limits
# (recovery within 5 s, verdicts within 1.5 s) that two at once would blur. They leave
# most of a second core idle, so the unit tests (CPU-bound, sharing nothing; two
# pytest-xdist workers) run beside them at the lowest CPU priority (nice 19): they take
# only what the system tests leave. They run in a session of their own, so that Ctrl-C
# can stop them; where the kernel groups sessions for scheduling (autogroup) that
# group is set to nice 19 too, else it would get half the CPU whatever its nice. System
# tests marked `beside` (no field timing to keep: the benchmark's) run there too. Their
# report, kept in var/unit-tests.log, follows the system tests' (decision 0024).
test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	@mkdir -p var; \
	  setsid -w sh -c '{ echo 19 >/proc/self/autogroup; } 2>/dev/null; exec nice -n 19 "$$@"' \
	    - $(BIN)/python -m pytest -q -n 2 -p no:cacheprovider -m "not system or beside" \
	    tests/unit tests/system >var/unit-tests.log 2>&1 & upid=$$!; \
	  trap 'kill -TERM -$$upid 2>/dev/null; exit 130' INT TERM HUP; \
	  $(BIN)/python -m pytest -q -m "not beside" tests/system; system=$$?; \
	  wait $$upid; unit=$$?; \
	  echo "--- unit tests (run beside the system tests; var/unit-tests.log)"; \
	  cat var/unit-tests.log; \
	  test $$unit -eq 0 && test $$system -eq 0

# Every fuzz target (tests/fuzz/fuzz_*.py) for FUZZ_RUNS inputs each; each prints its
# inputs/s (libFuzzer's log and any crashing input go to var/fuzz/). A short run of
# each is part of `make test` (tests/unit/test_fuzz_short.py).
FUZZ_RUNS ?= 1000000
fuzz: $(STAMP)
	@mkdir -p var/fuzz; for f in tests/fuzz/fuzz_*.py; do \
	  n=$${f##*/fuzz_}; n=$${n%.py}; \
	  $(BIN)/python -m tests.fuzz.run $$n --runs $(FUZZ_RUNS) --crash-dir var/fuzz \
	    2>var/fuzz/$$n.log || { tail -n 40 var/fuzz/$$n.log; exit 1; }; \
	done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core edge central drivers firmware_sim nii bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache var
