# cargo-vouch: `make test` installs what the tests need and runs them; `make demo` runs the
# main job end to end.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The end-to-end tests run again on Python 3.12+ (mitmproxy 12) when one is installed.
PYTHON312 ?= $(shell tests/find-python312)
VENV312 ?= .venv312

.PHONY: install test test-312 demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	@tests/run-pytest $(PY) -p no:cacheprovider
	@$(MAKE) --no-print-directory test-312

test-312:
ifneq ($(PYTHON312),)
	$(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install --quiet --upgrade pip
	$(VENV312)/bin/python -m pip install --quiet -e '.[test]'
	@tests/run-pytest $(VENV312)/bin/python -p no:cacheprovider tests/e2e
else
	@echo "python3.12 not found: skipping the mitmproxy 12 smoke"
endif

demo: install
	@$(PY) -m examples.demo

# Not part of `make test`: timings belong in figures, not in pass/fail. RTT_MS=40 measures
# at a 40 ms round trip (through tests/benchmarks/latency_relay.py) as well as on loopback.
ROUNDS ?= 5
RTT_MS ?= 0
bench: install
	@tests/benchmarks/ensure-nginx
	@$(PY) tests/benchmarks/bench.py $(ROUNDS) --rtt-ms $(RTT_MS)

clean:
	rm -rf $(VENV) $(VENV312) *.egg-info
