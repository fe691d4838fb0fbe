#!/usr/bin/env bash
# bench/gpu-check.sh OUTDIR: the project's GPU check, one command, at most 10 minutes on one NVIDIA GPU.
#
# What it runs (from the project root, whatever the current directory):
#   1. nvidia-smi and the package versions                  -> OUTDIR/nvidia-smi.txt, gpu.json, versions.json
#   2. the scale benchmark in bf16 (bench/benchmark.py --only scale): full FT, LoRA r256,
#      DoRA r256 and VeRA r1024 on random:qwen3-0.6b, two training steps each, and the merged
#      model's decode seconds per token at batch 1 and at the evaluation batch
#      (scale.json is rewritten after each method: a step cut short keeps what it measured)
#                                                           -> OUTDIR/scale.json, summary.json
#   3. the smoke study (every code path of the study on the tiny model) through the workflow,
#      `python -m peftlab.study run smoke --profile profiles/local`, in a fresh project folder
#      so that no earlier (CPU) record is reused           -> OUTDIR/smoke-summary.json, smoke.log
#   4. one evaluation through each evaluation engine (eval_backend: peftlab, transformers, auto)
#      on random:qwen3-0.6b in bf16, 32 items per task, 64 new tokens (python -m bench.engines):
#      each engine's wall time and items/s, identical replies, what auto chooses on the GPU
#                                                           -> OUTDIR/engines.json, engines.log
# OUTDIR/status.txt lists each step's exit status. Steps are capped by SCALE_TIMEOUT (240 s),
# STUDY_TIMEOUT (210 s) and ENGINES_TIMEOUT (120 s); a failed step does not stop the next one.
#
# Exit status: 0 all steps ran; 1 a step failed or timed out; 2 no GPU visible (nvidia-smi
# missing or listing no GPU, or PyTorch without CUDA); 3 a Python package is missing and no
# WHEELS folder was given; 4 installing from WHEELS failed; 64 bad usage.
#
# Python: $PYTHON, else the project's .venv/bin/python, else python3. It needs PyTorch with CUDA
# and the project's other dependencies (pyproject.toml): Transformers and PEFT (a GPU image may
# have them, maybe in too old a version), and TRL, datasets, accelerate, pandas, pyarrow, PyYAML,
# tqdm, psutil, math-verify (scoring), papermill, nbformat, nbconvert, ipykernel (the notebooks),
# snakemake (the workflow), seaborn, matplotlib, weasyprint (the report), nvidia-ml-py (NVML).
# The project itself is used from this checkout (PYTHONPATH=lib), not installed.
# `bench/gpu-check.sh --requirements` prints that list, and runs anywhere (no GPU needed).
#
# Without a network (WHEELS=dir): on a machine WITH a network and the GPU machine's Python
# version and platform, fetch the wheels once:
#   bench/gpu-check.sh --requirements > gpu-requirements.txt
#   python3 -m pip download -d wheels/ -r gpu-requirements.txt --only-binary=:all: \
#       --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
#   rm -f wheels/torch-* wheels/nvidia_* wheels/triton-*   # pulled in as dependencies; the GPU machine's PyTorch serves
# (a package published without a wheel: `pip wheel --no-deps -w wheels/ NAME==VERSION` on a
# machine of the same platform). Copy wheels/ to the GPU machine, then
#   WHEELS=wheels bench/gpu-check.sh OUTDIR
# installs what is missing or too old with `pip install --no-index --find-links wheels/` into
# the chosen Python's environment (SITE=dir installs into dir instead, put on PYTHONPATH), and
# never touches PyTorch.
#
# A CPU rehearsal (GPU_CHECK_REHEARSAL=1), for a machine without a GPU: the same steps and the
# same command lines, so a renamed profile, key or flag fails here first. It still needs an
# `nvidia-smi` (a stand-in that lists one GPU will do: the tests write one), then it
#   - hides every GPU (CUDA_VISIBLE_DEVICES="") and lets a PyTorch without CUDA through;
#   - writes a CPU stand-in for the GPU's name and count in versions.json (nothing is asked of
#     torch.cuda) and "rehearsal": true;
#   - runs the scale part with --scale-device cpu (float32, bench/scale.py's CPU dtype) and its
#     smallest sizes (1 row, batch 1, 3 new tokens: the fewest that time a decode step, decode
#     batch 2) on the `tiny` model with every rank capped at 16: the model and the ranks have no
#     flag, so a short Python launcher sets them and then runs bench/benchmark.py as a script;
#   - runs the smoke study unchanged (it is the tiny model already), on the CPU;
#   - times the engines on the `tiny` model in float32, 2 items per task, 4 new tokens.
# About two to five minutes on a CPU; allow for it with SCALE_TIMEOUT and STUDY_TIMEOUT.
set -uo pipefail

usage() { echo "usage: bench/gpu-check.sh OUTDIR | --requirements   (see the header of bench/gpu-check.sh)" >&2; exit 64; }
die() { local code=$1; shift; echo "gpu-check: $*" >&2; exit "$code"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY="python3"; fi
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
SCALE_TIMEOUT="${SCALE_TIMEOUT:-240}"
STUDY_TIMEOUT="${STUDY_TIMEOUT:-210}"
ENGINES_TIMEOUT="${ENGINES_TIMEOUT:-120}"
REHEARSAL="${GPU_CHECK_REHEARSAL:-0}"

# The project's dependencies that the check needs: all but PyTorch (the GPU machine's own),
# jupyterlab (`make lab` only), the SLURM plugin and gguf (the embedded model only).
requirements() {
    "$PY" - "$ROOT/pyproject.toml" <<'EOF'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
try:
    import tomllib
    deps = tomllib.loads(text)["project"]["dependencies"]
except ImportError:  # Python 3.10: the dependencies list read by hand
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    deps = re.findall(r'^\s*"([^"]+)"', block, re.M)
skip = {"torch", "jupyterlab", "snakemake-executor-plugin-slurm", "gguf"}
for dep in deps:
    if re.split(r"[\[<>=!~ ;]", dep)[0].lower() not in skip:
        print(dep)
EOF
}

[[ $# -eq 1 ]] || usage
if [[ "$1" == "--requirements" ]]; then requirements; exit $?; fi
[[ "$1" == -* ]] && usage
OUTDIR="$1"
[[ "$REHEARSAL" == 0 || "$REHEARSAL" == 1 ]] || die 64 "GPU_CHECK_REHEARSAL=$REHEARSAL; allowed: 0 (the GPU check) or 1 (its CPU rehearsal)"
if [[ "$REHEARSAL" == 1 ]]; then
    export CUDA_VISIBLE_DEVICES=""
    echo "gpu-check: CPU rehearsal (GPU_CHECK_REHEARSAL=1): every step on the CPU in float32, tiny sizes, GPU details stood in"
fi

# --- 1. a GPU, before anything else ---------------------------------------------------------
command -v "$NVIDIA_SMI" >/dev/null 2>&1 \
    || die 2 "no NVIDIA GPU visible: '$NVIDIA_SMI' is not on this machine (this check needs one NVIDIA GPU; on a CPU run bench/benchmark.py --only scale instead)"
GPUS="$("$NVIDIA_SMI" -L 2>&1)" || die 2 "no NVIDIA GPU visible: '$NVIDIA_SMI -L' failed: $GPUS"
grep -q "^GPU " <<<"$GPUS" || die 2 "no NVIDIA GPU visible: '$NVIDIA_SMI -L' lists none ($GPUS)"
command -v "$PY" >/dev/null 2>&1 || die 3 "no Python at '$PY' (set PYTHON=/path/to/python)"
CUDA_OK="$("$PY" -c 'import torch; print(torch.cuda.is_available(), torch.__version__, torch.version.cuda)' 2>&1)" \
    || die 2 "PyTorch cannot be imported by $PY: $CUDA_OK"
[[ "$CUDA_OK" == True* || "$REHEARSAL" == 1 ]] \
    || die 2 "no NVIDIA GPU visible to PyTorch ($PY: torch.cuda.is_available() is False; torch, CUDA: ${CUDA_OK#* }); a CPU-only PyTorch build or a hidden device (CUDA_VISIBLE_DEVICES)"

mkdir -p "$OUTDIR" || die 64 "cannot create $OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"

# --- 2. the packages --------------------------------------------------------------------------
if [[ -n "${SITE:-}" ]]; then
    mkdir -p "$SITE" && SITE="$(cd "$SITE" && pwd)"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
unmet() {  # requirement lines not met in this Python, one per line
    requirements | "$PY" -c '
import re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    Requirement = None
for line in sys.stdin.read().splitlines():
    name = Requirement(line).name if Requirement else re.split(r"[\[<>=!~ ;]", line)[0]
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        print(line); continue
    if Requirement and not Requirement(line).specifier.contains(version, prereleases=True):
        print(line)
'
}
UNMET="$(unmet)"
if [[ -n "$UNMET" ]]; then
    if [[ -z "${WHEELS:-}" ]]; then
        die 3 "$PY lacks these packages (or has too old a version):
$(sed 's/^/  /' <<<"$UNMET")
Install them, or, without a network, fetch wheels on a connected machine and pass WHEELS=dir
(the header of bench/gpu-check.sh says how: bench/gpu-check.sh --requirements, pip download)."
    fi
    [[ -d "$WHEELS" ]] || die 4 "WHEELS=$WHEELS is not a folder"
    echo "gpu-check: installing from $WHEELS: $(tr '\n' ' ' <<<"$UNMET")"
    mapfile -t LINES <<<"$UNMET"
    TARGET=()
    [[ -n "${SITE:-}" ]] && TARGET=(--target "$SITE")
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "${TARGET[@]}" "${LINES[@]}" \
        || die 4 "pip could not install the packages from $WHEELS (see above: a wheel missing or built for another Python/platform?)"
    UNMET="$(unmet)"
    [[ -z "$UNMET" ]] || die 4 "still missing after installing from $WHEELS: $(tr '\n' ' ' <<<"$UNMET")"
fi

export PYTHONPATH="$ROOT/lib:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_MININTERVAL=5 PYTHONUNBUFFERED=1
# A fresh project folder sharing this checkout's code and data: its own outputs/ (no earlier record reused).
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
mkdir -p "$WORK/root"
for name in data notebooks report workflow profiles lib params bench; do ln -s "$ROOT/$name" "$WORK/root/$name"; done
export PEFTLAB_ROOT="$WORK/root"

STATUS=0
step() {  # step NAME COMMAND...: run, note the exit status, go on
    local name=$1; shift
    local started=$SECONDS
    "$@"
    local rc=$?
    echo "$name $rc $((SECONDS - started))s" >>"$OUTDIR/status.txt"
    [[ $rc -eq 0 ]] || { echo "gpu-check: step $name failed (exit $rc)" >&2; STATUS=1; }
}
: >"$OUTDIR/status.txt"

"$NVIDIA_SMI" >"$OUTDIR/nvidia-smi.txt" 2>&1
"$NVIDIA_SMI" --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | "$PY" -c '
import json, sys
rows = [[c.strip() for c in line.split(",")] for line in sys.stdin if line.strip()]
json.dump([dict(zip(("name", "memory_total", "driver_version"), row)) for row in rows], open(sys.argv[1], "w"), indent=1)
' "$OUTDIR/gpu.json"
"$PY" -c '
import json, sys, torch
from peftlab.run.records import package_versions
if sys.argv[2] == "1":  # the CPU rehearsal: no GPU to ask
    gpu = {"gpu": "cpu (rehearsal stand-in, no GPU queried)", "gpu_count": 0, "rehearsal": True}
else:
    gpu = {"gpu": torch.cuda.get_device_name(0), "gpu_count": torch.cuda.device_count()}
versions = {**package_versions(), "torch_cuda": torch.version.cuda, **gpu}
json.dump(versions, open(sys.argv[1], "w"), indent=1)
' "$OUTDIR/versions.json" "$REHEARSAL"

cd "$ROOT" || die 1 "cannot enter $ROOT"
SCALE_PY=("$PY")
SCALE_DEVICE=cuda
SCALE_SIZES=()
ENGINES_ARGS=(--device cuda --dtype bfloat16)
if [[ "$REHEARSAL" == 1 ]]; then
    # bench/benchmark.py has no flag for the scale part's model or ranks: set them, then run it as a script
    SCALE_PY=("$PY" -c '
import runpy, sys
import bench.scale as scale
scale.bench_scale.__kwdefaults__["base_model"] = "tiny"
scale.METHODS.update({method: rank and min(rank, 16) for method, rank in scale.METHODS.items()})
print("gpu-check rehearsal: scale part on tiny, ranks", scale.METHODS, flush=True)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
')
    SCALE_DEVICE=cpu
    SCALE_SIZES=(--scale-rows 1 --scale-batch 1 --scale-max-length 256 --scale-new-tokens 3 --scale-eval-batch 2)
    ENGINES_ARGS=(--device cpu --dtype float32 --base-model tiny --n-eval 2 --max-new-tokens 4)
fi
scale() {
    timeout -k 15 "$SCALE_TIMEOUT" "${SCALE_PY[@]}" bench/benchmark.py --only scale --scale-device "$SCALE_DEVICE" \
        "${SCALE_SIZES[@]}" >"$OUTDIR/scale.log" 2>&1
    local rc=$?
    cp "$PEFTLAB_ROOT/outputs/bench/scale.json" "$PEFTLAB_ROOT/outputs/bench/summary.json" "$OUTDIR/" 2>/dev/null
    tail -n 12 "$OUTDIR/scale.log"
    return $rc
}
smoke() {
    timeout -k 15 "$STUDY_TIMEOUT" "$PY" -m peftlab.study run smoke --profile profiles/local \
        --directory "$PEFTLAB_ROOT" >"$OUTDIR/smoke.log" 2>&1
    local rc=$?
    "$PY" -m bench.study_runs smoke --out "$OUTDIR/smoke-summary.json"
    local summary_rc=$?
    return $((rc != 0 ? rc : summary_rc))
}
engines() {
    timeout -k 15 "$ENGINES_TIMEOUT" "$PY" -m bench.engines "${ENGINES_ARGS[@]}" --out "$OUTDIR/engines.json" \
        >"$OUTDIR/engines.log" 2>&1
    local rc=$?
    grep "^engines" "$OUTDIR/engines.log"
    return $rc
}
step scale scale
step smoke smoke
step engines engines
rm -rf "$WORK"

echo "gpu-check: results in $OUTDIR ($(tr '\n' ';' <"$OUTDIR/status.txt"))$([[ "$REHEARSAL" == 1 ]] && echo " (CPU rehearsal)")"
exit $STATUS
