# The README's two commands: `make run` (install + the default workflow) and `make test` (lint + tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PROFILE ?= default
CORES ?= all

.PHONY: install data run rehearse test lint docs report clean-results mmdet test-mmdet

# The exact versions of envs/constraints.txt within pyproject.toml's ranges; the stamp is rebuilt whenever
# either changes.
$(VENV)/.installed: pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c envs/constraints.txt -e '.[test,docs]'
	touch $@

install: $(VENV)/.installed

# Finds Fashion-MNIST, or fetches it into data/fashion-mnist without root (apt-get download + dpkg-deb).
data: install
	$(BIN)/blockswap data fetch fashion-mnist

run: install data
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/config/$(PROFILE).yaml
	$(BIN)/snakemake --cores 1 --configfile workflow/config/$(PROFILE).yaml --report results/$(PROFILE)/report.html

# A paper profile shrunk onto the CPU (stand-in data where its own is absent): every rule of its DAG runs in
# minutes, into results/rehearse/<profile>/, its tables and figures marked as a rehearsal.
rehearse: install data
	$(BIN)/blockswap rehearse workflow/config/$(PROFILE).yaml --out results/rehearse/$(PROFILE)
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/config/$(PROFILE).yaml results/rehearse/$(PROFILE)/overlay.yaml

test: install data lint docs
	$(BIN)/pytest -q

# The documentation site into site/ (mkdocs.yml): strict, so a broken link or a missing page fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Opt-in: the mmdetection backend. The first install on a machine builds mmcv's ops (about 12 minutes on
# 2 cores); later ones reuse that wheel and take seconds (envs/mmdet.sh says where it is kept).
mmdet: install
	bash envs/mmdet.sh $(VENV)

test-mmdet: mmdet data
	$(BIN)/pytest -q tests/test_mmdet.py

lint: install
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --configfile workflow/config/default.yaml
