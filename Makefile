# The two commands of the README. Each installs what it needs into $(VENV) first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: book test browser-test clean

# Build the HTML book into _build/html, executing every notebook; warnings are errors.
book: $(VENV)/.installed-book
	$(BIN)/jupyter-book build . --warningiserror --keep-going

# Lint, unit tests, then every notebook executed by nbval (durations are printed at the end).
test: $(VENV)/.installed-test
	$(BIN)/ruff check attn_course tests
	$(BIN)/pytest --nbval-lax --nbval-current-env

# Open every page of the built book in a real browser (Debian's chromium at /usr/bin/chromium,
# driven by Playwright) and check what readers see; run it after `make book`. test_book.py runs
# again here, now that the book's dependencies are installed (make test skips the tests needing them).
browser-test: $(VENV)/.installed-browser
	ATTN_REQUIRE_BROWSER=1 $(BIN)/pytest tests/test_browser.py tests/test_book.py -rxs

$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	touch $@

clean:
	rm -rf _build
