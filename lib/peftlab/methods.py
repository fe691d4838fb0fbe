"""The four fine-tuning methods: full, LoRA, DoRA (PEFT use_dora) and VeRA.

`attach_method` turns a loaded base model into the trainable model for a method;
`merge_into_base` folds an adapter back into plain weights for serving.
"""

from __future__ import annotations

from typing import Mapping

import torch

from .config import ConfigError, effective_alpha


class MethodError(ConfigError):
    """A method cannot be applied to this model (no module matches target_modules, a rank the
    model's layers cannot hold)."""


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


def targeted_layers(model, config: Mapping) -> dict[str, tuple[int, int]]:
    """{module name: (in_features, out_features)} of the linear layers the adapter wraps.
    Works on a real model and on a weightless `meta` skeleton alike."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in config["target_modules"] if m not in names]
    if missing:
        raise MethodError(
            f"config key 'target_modules': {missing} match no module of {type(model).__name__}; "
            f"linear layers it has include: {', '.join(sorted(n for n in names if n.endswith('proj')))}"
        )
    wanted = set(config["target_modules"])
    return {name: (module.in_features, module.out_features) for name, module in model.named_modules()
            if name.rsplit(".", 1)[-1] in wanted and hasattr(module, "in_features")}


def check_rank(model, config: Mapping) -> None:
    """Refuse a rank the targeted layers cannot use, naming the layer and its dimensions.

    LoRA and DoRA: the update B A of a layer (in -> out) has rank at most min(in, out), so
    r above that only adds parameters. VeRA: the frozen random bases A (r x largest in) and
    B (largest out x r) are shared by every layer and sliced to its shape; a layer's update
    diag(b) B diag(d) A is a weighted sum of r fixed rank-1 matrices of shape out x in, and
    more than in x out of those are linearly dependent, so r above in x out adds trainable
    entries of d that cannot change the update."""
    method = config["method"]
    if method == "full":
        return
    layers = targeted_layers(model, config)
    if not layers:
        return
    rank = config["rank"]
    if method in ("lora", "dora"):
        name, (n_in, n_out) = min(layers.items(), key=lambda item: min(item[1]))
        limit = min(n_in, n_out)
        if rank > limit:
            raise MethodError(
                f"config key 'rank': {rank} is more than {method} can use on {type(model).__name__}: its layer "
                f"{name} is {n_in} -> {n_out} (in_features -> out_features), and an update B A of that layer has "
                f"rank at most min({n_in}, {n_out}) = {limit}; allowed: an integer from 1 to {limit} "
                f"for target_modules {list(config['target_modules'])}")
    elif method == "vera":
        name, (n_in, n_out) = min(layers.items(), key=lambda item: item[1][0] * item[1][1])
        limit = n_in * n_out
        if rank > limit:
            largest_in = max(n for n, _ in layers.values())
            largest_out = max(n for _, n in layers.values())
            raise MethodError(
                f"config key 'rank': {rank} is more than vera can use on {type(model).__name__}: its shared "
                f"random bases (A: r x {largest_in}, B: {largest_out} x r, sized for the largest targeted layer) "
                f"are sliced to each layer, whose update is a weighted sum of r fixed rank-1 matrices of its shape; "
                f"the smallest layer, {name}, is {n_in} -> {n_out}, so at most {n_in} x {n_out} = {limit} of them "
                f"are independent; allowed: an integer from 1 to {limit} for target_modules "
                f"{list(config['target_modules'])}")


def check_method_fits(config: Mapping) -> None:
    """check_rank against the base model's architecture built from its configuration alone
    (no weights), so a bad rank or target_modules is refused before the model is loaded.
    Skipped where the configuration cannot be read without loading (attach_method checks then)."""
    if config["method"] == "full":
        return
    from .models import model_skeleton

    skeleton = model_skeleton(config["base_model"])
    if skeleton is not None:
        check_rank(skeleton, config)


def attach_method(model, config: Mapping):
    """Return the model to train: the base itself for `full`, else a PEFT model."""
    if config["method"] == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model
    from peft import get_peft_model

    check_rank(model, config)
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
