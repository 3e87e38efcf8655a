# Every target bootstraps .venv on first use from the dev lock (exact versions with their
# hashes, the CPU build of torch among them); `make lock` refreshes both locks after a change
# to pyproject.toml or requirements-torch.in (the Dockerfile installs the runtime lock).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements-dev.lock
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: run test lint format demo bench simulate lock clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# The runtime lock, then the dev lock constrained to it (requirements-dev.in), with hashes.
# Extras stay in the pins (``uvicorn[standard]==…``): pip's hash mode treats a dependency's
# ``uvicorn[standard]`` as a requirement of its own, unpinned when the lock says ``uvicorn==``.
COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --no-strip-extras \
	--no-emit-index-url --no-emit-find-links
lock:
	test -x $(BIN)/pip-compile || { test -x $(BIN)/python || $(PY) -m venv $(VENV); $(BIN)/pip install --quiet pip-tools; }
	$(COMPILE) -o requirements.lock pyproject.toml requirements-torch.in
	$(COMPILE) --extra dev -o $(LOCK) pyproject.toml requirements-torch.in requirements-dev.in

run: $(STAMP)
	$(BIN)/npo run

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP)
	$(BIN)/npo demo

simulate: $(STAMP)
	$(BIN)/npo simulate --operator outcome --seeds 30 --out var/simulate

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
