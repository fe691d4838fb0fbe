"""The method registry: one entry per fine-tuning method, and what every method shares.

An entry (`Method`) says everything the rest of the project needs to know about a method:
its name in configurations and run names, its label and colour in the report, its PEFT
configuration, the corrected protocol's default learning rate, which run keys belong to its
identity, whether it takes a rank (and how far a rank can go), and whether its adapter folds
into the base weights. The configuration schema, the study files, training, the records and
the plots all read `METHODS`; adding a method is one `register(Method(...))` below and a test.

`attach_method` turns a loaded base model into the trainable model for a method;
`merge_into_base` folds an adapter back into plain weights for serving.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from peftlab.core.errors import ConfigError
from peftlab.models.loading import model_skeleton

# Keys every run's identity holds, whatever the method (its learning rate is added resolved).
COMMON_IDENTITY_KEYS = (
    "base_model",
    "dtype",
    "protocol",
    "method",
    "epochs",
    "batch_size",
    "grad_accum",
    "max_length",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "gradient_checkpointing",
    "group_by_length",
    "padding_free",
    "mixed_precision",
    "dropout_masks",
    "seed",
    "train_task",
    "n_train",
    "data_source",
)
ADAPTER_KEYS = ("rank", "alpha", "dropout", "target_modules")

# The reference study's shared hyperparameters (docs/protocols.md), applied by protocol=reference.
REFERENCE_LEARNING_RATE = 1e-5
REFERENCE_ALPHA = 16


class MethodError(ConfigError):
    """A method cannot be applied to this model (no module matches target_modules, a rank the
    model's layers cannot hold)."""


@dataclass(frozen=True)
class Method:
    name: str  # in configurations, study files and run names: lowercase, no '-' or '_'
    label: str  # in Table 1, the plots and the answers
    colour: str  # in the plots
    learning_rate: float  # the corrected protocol's default (the reference uses 1e-5 for all)
    peft_config: Callable[[Mapping], object] | None  # config -> a PEFT config; None: every weight trains
    identity_keys: tuple[str, ...] = ADAPTER_KEYS  # run keys besides COMMON_IDENTITY_KEYS that decide a run
    ranked: bool = True  # takes an adapter rank (study files list ranks; run names carry rN)
    rank_limit: str | None = "low_rank"  # how a rank is checked against the layers: low_rank | vera | None
    uses_alpha: bool = True  # the update is scaled by alpha (effective_alpha)
    merges: bool = True  # the adapter folds into the base weights (served at the base's cost)
    save_adapter: Callable | None = None  # (peft_model, directory) -> None; None: save_pretrained
    description: str = ""

    @property
    def trains_adapter(self) -> bool:
        return self.peft_config is not None


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if not method.name.isalnum() or method.name != method.name.lower():
        raise ValueError(f"method name {method.name!r}: lowercase letters and digits only (it is part of run names)")
    if method.name in METHODS or method.name == "base":
        raise ValueError(f"method {method.name!r} is registered already (or reserved)")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"config key 'method': {name!r} is not allowed; allowed: {', '.join(METHODS)}")
    return METHODS[name]


# --- what several methods share ------------------------------------------------------------


def effective_alpha(config: Mapping) -> float:
    """Reference: alpha 16 whatever the rank (the update is scaled by 16/r). Corrected: alpha = r."""
    if config["alpha"] is not None:
        return float(config["alpha"])
    return float(REFERENCE_ALPHA if config["protocol"] == "reference" else config["rank"])


def effective_learning_rate(config: Mapping) -> float:
    """An explicit learning_rate wins; else the protocol's default for the method."""
    if config["learning_rate"] is not None:
        return float(config["learning_rate"])
    if config["protocol"] == "reference":
        return REFERENCE_LEARNING_RATE
    return float(get_method(config["method"]).learning_rate)


def recorded_alpha(config: Mapping) -> float | None:
    """The alpha a run's record states: None for a method that has none."""
    return effective_alpha(config) if get_method(config["method"]).uses_alpha else None


def identity(config: Mapping) -> dict:
    """The values that decide what a training run computes: its identity hash covers these.
    The learning rate is the resolved one, so changing a method's default makes a new run."""
    method = get_method(config["method"])
    keys = COMMON_IDENTITY_KEYS + tuple(k for k in method.identity_keys if k not in COMMON_IDENTITY_KEYS)
    return {**{key: config[key] for key in keys if key in config}, "learning_rate": effective_learning_rate(config)}


def _lora_common(config: Mapping) -> dict:
    return dict(
        r=config["rank"],
        lora_alpha=effective_alpha(config),
        lora_dropout=config["dropout"],
        target_modules=list(config["target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _save_converted_to_lora(model, directory: Path) -> None:
    """PiSSA and OLoRA move the adapter's initial value out of the base weights. Saved as it is,
    the adapter would only fit that modified base; PEFT converts it to a plain LoRA adapter (of
    rank 2r) that fits the original base, from the adapter as initialised, which
    `attach_method` keeps (`initial_adapter`)."""
    initial = getattr(model, "initial_adapter", None)
    if initial is None:
        model.save_pretrained(directory)
        return
    model.save_pretrained(directory, path_initial_model_for_weight_conversion=str(initial))


# --- the registry ----------------------------------------------------------------------------

register(
    Method(
        name="full",
        label="Full FT",
        colour="#d62728",
        learning_rate=2e-5,
        peft_config=None,
        identity_keys=(),
        ranked=False,
        rank_limit=None,
        uses_alpha=False,
        description="every weight trains",
    )
)


def _lora(config: Mapping):
    from peft import LoraConfig

    return LoraConfig(**_lora_common(config))


register(
    Method(
        name="lora",
        label="LoRA",
        colour="#1f77b4",
        learning_rate=2e-4,
        peft_config=_lora,
        description="a low-rank update B A beside each targeted weight (Hu et al. 2021)",
    )
)


def _dora(config: Mapping):
    from peft import LoraConfig

    return LoraConfig(use_dora=True, **_lora_common(config))


register(
    Method(
        name="dora",
        label="DoRA",
        colour="#2ca02c",
        learning_rate=2e-4,
        peft_config=_dora,
        description="LoRA on the direction of each weight, with a trained magnitude vector (PEFT use_dora)",
    )
)


def _vera(config: Mapping):
    from peft import VeraConfig

    # One pair of frozen random bases shared by all layers, drawn from the run's seed.
    # PEFT sizes them for the largest layer and slices them for GQA's smaller k/v projections.
    return VeraConfig(
        r=config["rank"],
        target_modules=list(config["target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
        vera_dropout=config["dropout"],
        d_initial=config["vera_d_initial"],
        projection_prng_key=config["seed"],
        save_projection=True,
    )


register(
    Method(
        name="vera",
        label="VeRA",
        colour="#9467bd",
        learning_rate=4e-3,
        peft_config=_vera,
        identity_keys=("rank", "dropout", "target_modules", "vera_d_initial"),
        rank_limit="vera",
        uses_alpha=False,
        description="shared frozen random bases, two trained scaling vectors per layer (only they train: a higher rate)",
    )
)


def _pissa(config: Mapping):
    from peft import LoraConfig

    # the adapter starts from the principal singular vectors of each weight (an exact SVD: the
    # randomised one PEFT offers misses them on flat spectra such as a random model's)
    return LoraConfig(init_lora_weights="pissa", **_lora_common(config))


register(
    Method(
        name="pissa",
        label="PiSSA",
        colour="#ff7f0e",
        learning_rate=2e-4,
        peft_config=_pissa,
        save_adapter=_save_converted_to_lora,
        description="LoRA initialised from each weight's principal singular components, the residual frozen "
        "(Meng et al. 2024; PEFT init_lora_weights='pissa')",
    )
)


def _olora(config: Mapping):
    from peft import LoraConfig

    return LoraConfig(init_lora_weights="olora", **_lora_common(config))


register(
    Method(
        name="olora",
        label="OLoRA",
        colour="#8c564b",
        learning_rate=2e-4,
        peft_config=_olora,
        save_adapter=_save_converted_to_lora,
        description="LoRA initialised from an orthonormal (QR) basis of each weight, the rest frozen "
        "(Büyükakyüz 2024; PEFT init_lora_weights='olora')",
    )
)


def _rslora(config: Mapping):
    from peft import LoraConfig

    return LoraConfig(use_rslora=True, **_lora_common(config))


register(
    Method(
        name="rslora",
        label="rsLoRA",
        colour="#e377c2",
        learning_rate=2e-4,
        peft_config=_rslora,
        description="LoRA with its update scaled by alpha/sqrt(r) instead of alpha/r, so that higher ranks keep "
        "learning (Kalajdzievski 2023; PEFT use_rslora)",
    )
)


def _ia3(config: Mapping):
    from peft import IA3Config

    # every targeted module is treated as an attention projection: its output is rescaled
    return IA3Config(target_modules=list(config["target_modules"]), feedforward_modules=[], task_type="CAUSAL_LM")


register(
    Method(
        name="ia3",
        label="IA³",
        colour="#7f7f00",
        learning_rate=3e-3,
        peft_config=_ia3,
        identity_keys=("target_modules",),
        ranked=False,
        rank_limit=None,
        uses_alpha=False,
        description="one trained vector per targeted layer that rescales its output (Liu et al. 2022; PEFT IA3); "
        "no rank, few parameters: a higher rate, as its paper used",
    )
)


def _lycoris_common(config: Mapping) -> dict:
    return dict(
        r=config["rank"],
        alpha=effective_alpha(config),
        rank_dropout=config["dropout"],
        target_modules=list(config["target_modules"]),
    )


def _loha(config: Mapping):
    from peft import LoHaConfig

    return LoHaConfig(**_lycoris_common(config))


register(
    Method(
        name="loha",
        label="LoHa",
        colour="#17becf",
        learning_rate=2e-4,
        peft_config=_loha,
        description="the update is the Hadamard product of two rank-r products, so its rank reaches r^2 "
        "(Hyeon-Woo et al. 2022, LyCORIS; PEFT LoHa)",
    )
)


def _lokr(config: Mapping):
    from peft import LoKrConfig

    return LoKrConfig(**_lycoris_common(config))


register(
    Method(
        name="lokr",
        label="LoKr",
        colour="#bcbd22",
        learning_rate=2e-4,
        peft_config=_lokr,
        rank_limit=None,
        description="the update is a Kronecker product of a small full matrix and a rank-r one "
        "(Yeh et al. 2023, LyCORIS; PEFT LoKr); r bounds one factor's rank, not the update's",
    )
)


# --- checks against a model ------------------------------------------------------------------


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
    return {
        name: (module.in_features, module.out_features)
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] in wanted and hasattr(module, "in_features")
    }


def check_rank(model, config: Mapping) -> None:
    """Refuse a rank the targeted layers cannot use, naming the layer and its dimensions.

    low_rank (LoRA and its variants): the update B A of a layer (in -> out) has rank at most
    min(in, out), so r above that only adds parameters. vera: the frozen random bases A
    (r x largest in) and B (largest out x r) are shared by every layer and sliced to its shape;
    a layer's update diag(b) B diag(d) A is a weighted sum of r fixed rank-1 matrices of shape
    out x in, and more than in x out of those are linearly dependent, so r above in x out adds
    trainable entries of d that cannot change the update."""
    method = get_method(config["method"])
    if not method.trains_adapter:
        return
    layers = targeted_layers(model, config)
    if not layers or method.rank_limit is None:
        return
    rank = config["rank"]
    if method.rank_limit == "low_rank":
        name, (n_in, n_out) = min(layers.items(), key=lambda item: min(item[1]))
        limit = min(n_in, n_out)
        if rank > limit:
            raise MethodError(
                f"config key 'rank': {rank} is more than {method.name} can use on {type(model).__name__}: its layer "
                f"{name} is {n_in} -> {n_out} (in_features -> out_features), and an update B A of that layer has "
                f"rank at most min({n_in}, {n_out}) = {limit}; allowed: an integer from 1 to {limit} "
                f"for target_modules {list(config['target_modules'])}"
            )
    elif method.rank_limit == "vera":
        name, (n_in, n_out) = min(layers.items(), key=lambda item: item[1][0] * item[1][1])
        limit = n_in * n_out
        if rank > limit:
            largest_in = max(n for n, _ in layers.values())
            largest_out = max(n for _, n in layers.values())
            raise MethodError(
                f"config key 'rank': {rank} is more than {method.name} can use on {type(model).__name__}: its "
                f"shared random bases (A: r x {largest_in}, B: {largest_out} x r, sized for the largest targeted "
                f"layer) are sliced to each layer, whose update is a weighted sum of r fixed rank-1 matrices of its "
                f"shape; the smallest layer, {name}, is {n_in} -> {n_out}, so at most {n_in} x {n_out} = {limit} of "
                f"them are independent; allowed: an integer from 1 to {limit} for target_modules "
                f"{list(config['target_modules'])}"
            )
    else:
        raise ValueError(f"method {method.name!r}: unknown rank_limit {method.rank_limit!r}")


def check_method_fits(config: Mapping) -> None:
    """check_rank against the base model's architecture built from its configuration alone
    (no weights), so a bad rank or target_modules is refused before the model is loaded.
    Skipped where the configuration cannot be read without loading (attach_method checks then)."""
    if not get_method(config["method"]).trains_adapter:
        return
    skeleton = model_skeleton(config["base_model"])
    if skeleton is not None:
        check_rank(skeleton, config)


def peft_config(config: Mapping):
    method = get_method(config["method"])
    if not method.trains_adapter:
        raise MethodError(f"method {method.name!r} trains every weight; it has no adapter config")
    return method.peft_config(config)


def attach_method(model, config: Mapping, *, initial_adapter_dir: Path | None = None):
    """Return the model to train: the base itself when every weight trains, else a PEFT model.
    `initial_adapter_dir`: where a method that saves its adapter converted (PiSSA, OLoRA)
    keeps the adapter as initialised (PEFT names the adapter after the folder: no '.' in it)."""
    method = get_method(config["method"])
    if not method.trains_adapter:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model
    from peft import get_peft_model

    check_rank(model, config)
    peft_model = get_peft_model(model, peft_config(config))
    peft_model.method_name = method.name
    if method.save_adapter is not None and initial_adapter_dir is not None:
        # the initial adapter, saved as a plain one, is what PEFT converts against at the end
        adapter_config = peft_model.peft_config["default"]
        conversion = adapter_config.init_lora_weights
        adapter_config.init_lora_weights = True
        peft_model.save_pretrained(initial_adapter_dir)
        adapter_config.init_lora_weights = conversion
        peft_model.initial_adapter = initial_adapter_dir
    return peft_model


def save_adapter(model, config: Mapping, directory: Path) -> None:
    method = get_method(config["method"])
    (method.save_adapter or (lambda m, d: m.save_pretrained(d)))(model, directory)


def parameter_counts(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_share": trainable / total if total else 0.0,
    }


def merge_into_base(model, dtype):
    """Merge the adapter (if any) into the base weights and cast to the base model's dtype.

    A merged adapter has the base's architecture, so it must serve at the base's cost:
    saving it in float32 when the base is bf16 doubles its memory (a defect of the
    reference study's checkpoints).
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        name = getattr(model, "method_name", None)
        if name is not None and not get_method(name).merges:
            raise MethodError(f"method {name!r} does not fold into the base weights; only merged models are served")
        model = model.merge_and_unload()
    # Training turns the KV cache off; a checkpoint saved that way decodes without it,
    # recomputing the whole prompt for every new token (measured: 12x slower per token).
    model.config.use_cache = True
    return model.to(dtype)
