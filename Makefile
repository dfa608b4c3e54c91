# The two commands a fresh machine needs: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench pi-check

# The demo needs the device install only (no TensorFlow): the package, its runtime
# dependencies and the `demo` extra (an embedded broker where mosquitto is absent).
demo:
	./scripts/setup.sh demo
	$(BIN)/facegate demo

# The tests need the workstation and development extras too (TensorFlow, pytest, ...).
test:
	./scripts/setup.sh test
	$(BIN)/python -m pytest

lint:
	./scripts/setup.sh test
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && MYPY=$(BIN)/mypy ./scripts/typecheck

bench:
	./scripts/setup.sh test
	$(BIN)/facegate bench encoder

# Raspberry Pi OS's 64-bit bases under emulation (bookworm and trixie, arm64):
# the wheel, demo, doctor, installer, `-m pi` tests and parity with x86 in each; needs
# root. Writes docs/results/pi-check.md. CI runs the bookworm arm64 one (.ci/run).
pi-check:
	./scripts/setup.sh test
	./scripts/pi-check --record all
