# The two commands of the README. Each installs what it needs into $(VENV) first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: book test clean

# Build the HTML book into _build/html, executing every notebook; warnings are errors.
book: $(VENV)/.installed-book
	$(BIN)/jupyter-book build . --warningiserror --keep-going

# Lint, unit tests, then every notebook executed by nbval (durations are printed at the end).
test: $(VENV)/.installed-test
	$(BIN)/ruff check attn_course tests
	$(BIN)/pytest --nbval-lax --nbval-current-env

$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	touch $@

clean:
	rm -rf _build
