"""The four fine-tuning methods: full, LoRA, DoRA (PEFT use_dora) and VeRA.

`attach_method` turns a loaded base model into the trainable model for a method;
`merge_into_base` folds an adapter back into plain weights for serving.
"""

from __future__ import annotations

from typing import Mapping

import torch

from .config import effective_alpha


class MethodError(ValueError):
    """A method cannot be applied to this model (e.g. no module matches target_modules)."""


def peft_config(config: Mapping):
    from peft import LoraConfig, VeraConfig

    method = config["method"]
    common = dict(r=config["rank"], target_modules=list(config["target_modules"]), bias="none",
                  task_type="CAUSAL_LM")
    if method in ("lora", "dora"):
        return LoraConfig(lora_alpha=effective_alpha(config), lora_dropout=config["dropout"],
                          use_dora=method == "dora", **common)
    if method == "vera":
        # One pair of frozen random bases shared by all layers, drawn from the run's seed.
        # PEFT sizes them for the largest layer and slices them for GQA's smaller k/v projections.
        return VeraConfig(vera_dropout=config["dropout"], d_initial=config["vera_d_initial"],
                          projection_prng_key=config["seed"], save_projection=True, **common)
    raise MethodError(f"method {method!r} has no adapter config")


def attach_method(model, config: Mapping):
    """Return the model to train: the base itself for `full`, else a PEFT model."""
    if config["method"] == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model
    from peft import get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in config["target_modules"] if m not in names]
    if missing:
        raise MethodError(
            f"config key 'target_modules': {missing} match no module of {type(model).__name__}; "
            f"linear layers it has include: {', '.join(sorted(n for n in names if n.endswith('proj')))}"
        )
    return get_peft_model(model, peft_config(config))


def parameter_counts(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": trainable, "total_params": total,
            "trainable_share": trainable / total if total else 0.0}


def merge_into_base(model, dtype: torch.dtype):
    """Merge the adapter (if any) into the base weights and cast to the base model's dtype.

    A merged adapter has the base's architecture, so it must serve at the base's cost:
    saving it in float32 when the base is bf16 doubles its memory (a defect of the
    reference study's checkpoints).
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    # Training turns the KV cache off; a checkpoint saved that way decodes without it,
    # recomputing the whole prompt for every new token (measured: 12x slower per token).
    model.config.use_cache = True
    return model.to(dtype)
