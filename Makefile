# One entry point per job. Each target bootstraps .venv from the pinned versions on first use.
#   make test    lint, then the whole test suite (unit tests + every chapter at `smoke`, papermill + nbval)
#   make book    execute the chapters at `default`, side by side, into the cache; render _build/html
#   make check-book  open every page of _build/html in headless Chromium: raw TeX, images, links, errors
#   make full    every chapter at `full` on one GPU, in parallel; results into the ledger book/results-full/
#   make bench   the speed benchmarks (never part of the tests)
#   make sweep   a chapter over a grid on Dask: CHAPTER=saxe-deep-linear ARGS="-p lr 0.004 0.005 --seeds 0 1 --scale smoke"
#   make clean   remove builds and results (keeps .venv)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Extra pip options, e.g. PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"
# on a machine where PyPI's torch would pull CUDA packages.
PIP_EXTRA ?=
# Tests: xdist workers, one torch thread each (tiny models are Python-bound; two processes beat two threads).
TEST_JOBS ?= 2
PYTEST_ARGS ?=

.PHONY: all test lint book check-book full bench sweep clean distclean venv

all: test

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q $(PIP_EXTRA) -c constraints.txt -e ".[book,test,dev]"
	@touch $@

test: $(STAMP) lint
	@OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg $(PY) -m pytest -n $(TEST_JOBS) $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; exit $$rc

# Lint: ruff's rules as set in pyproject.toml, on the package, the tests and the benchmarks.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools

# The chapters execute side by side first (BOOK_JOBS at once, default: CPU cores), straight into
# jupyter-book's execution cache; the build then finds them cached and only renders. The
# scoreboard page includes a table made from results/*.json, which those executions wrote. A
# chapter the cache step could not execute is executed again by the build (serially), so the
# scoreboard is remade and the (cached, cheap) build run once more.
BOOK_JOBS ?=
book: $(STAMP)
	-PHENOMENA_SCALE=default MPLBACKEND=Agg $(PY) -m phenomena cache-book $(if $(BOOK_JOBS),--jobs $(BOOK_JOBS))
	$(PY) -m phenomena scoreboard --quiet
	PHENOMENA_SCALE=default MPLBACKEND=Agg $(VENV)/bin/jupyter-book build .
	$(PY) -m phenomena scoreboard --quiet
	PHENOMENA_SCALE=default MPLBACKEND=Agg $(VENV)/bin/jupyter-book build .
	@echo "The book is in _build/html/index.html"

# The built book opened page by page in headless Chromium (Debian's `chromium`; nothing is
# downloaded): fails on raw TeX, a missing image, a broken internal link or an error output;
# screenshots of the scoreboard and a chapter go to _build/check-book/. Not part of `make test`.
check-book: $(STAMP)
	$(PY) tools/check_book.py _build/html --out _build/check-book

# Every chapter at `full` on a one-GPU machine, each chapter its own process sharing the GPU, resumable;
# the results go into the tracked ledger book/results-full/ that the scoreboard reads.
FULL_JOBS ?= 8
full: $(STAMP)
	$(PY) -m phenomena run-all --scale full --device cuda --jobs $(FULL_JOBS) --ledger book/results-full

bench: $(STAMP)
	$(PY) benchmarks/run_all.py --compile

sweep: $(STAMP)
	@test -n "$(CHAPTER)" || { echo 'usage: make sweep CHAPTER=slug ARGS="-p NAME V1 V2 --seeds 0 1 --scale smoke"'; exit 2; }
	$(PY) -m phenomena sweep $(CHAPTER) $(ARGS)

clean:
	rm -rf _build results book/_generated .pytest_cache

distclean: clean
	rm -rf $(VENV)
