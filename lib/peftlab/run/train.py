"""One training run: a base model, a method, a task's rows, TRL's SFTTrainer, a record.

The run writes into `out_dir`:
  model/     the merged model in the base model's dtype (what evaluation serves)
  adapter/   the unmerged adapter (LoRA, DoRA, VeRA)
  train.json the record, written last and atomically: its presence with status ok
             means the run finished; a killed run leaves none.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

import torch

from peftlab.config import train_hash
from peftlab.core.errors import ConfigError, PeftlabError
from peftlab.core.files import atomic_dir, reusable_record, write_json
from peftlab.methods.registry import (
    attach_method,
    check_method_fits,
    effective_learning_rate,
    get_method,
    merge_into_base,
    parameter_counts,
    save_adapter,
)
from peftlab.models.loading import load_model
from peftlab.run.lean_training import embedding_grad_in_place, packed_dropout_masks, uses_packed_masks
from peftlab.run.memory import PhaseMemory
from peftlab.run.records import failure, run_metadata, train_record_start
from peftlab.tasks.registry import load_rows, train_example


class NonFiniteLossError(PeftlabError, RuntimeError):
    """The training loss became NaN or infinite."""


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _fit_rows(examples: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """Drop rows longer than max_length: truncation would cut the answer, the part trained on."""
    kept = []
    for example in examples:
        ids = tokenizer.apply_chat_template(
            example["prompt"] + example["completion"], tokenize=True, enable_thinking=False, return_dict=True
        )["input_ids"]
        if len(ids) <= max_length:
            kept.append(example)
    return kept, len(examples) - len(kept)


def _trainer_callbacks(config: Mapping):
    from transformers import TrainerCallback

    class StopOnNonFiniteLoss(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                raise NonFiniteLossError(f"training loss became {loss} at optimizer step {state.global_step}")

    class InjectFault(TrainerCallback):
        """Testing only (config key `fault`): break a run on purpose, to prove the failure is recorded."""

        def __init__(self, fault: str):
            kind, _, where = fault.partition("@")
            self.kind, self.step = kind, int(where.rpartition(":")[2])

        def _poison(self, model) -> None:
            with torch.no_grad():  # NaN weights: the step's loss is NaN, as after a divergence
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if self.kind == "nan_loss" and self.step <= 1:
                self._poison(model)

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if self.kind == "oom" and state.global_step + 1 == self.step:
                raise torch.OutOfMemoryError(f"injected fault: out of memory at optimizer step {self.step}")
            if self.kind == "kill" and state.global_step + 1 == self.step:
                os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer or a scheduler would

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if self.kind == "nan_loss" and state.global_step == self.step - 1:
                self._poison(model)

    callbacks = [StopOnNonFiniteLoss()]
    if config.get("fault") and config["fault"].split("@")[1] != "evaluate":
        callbacks.append(InjectFault(config["fault"]))
    return callbacks


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(error).lower()


class _Interrupts(list):
    """The SIGINTs received while a run is under way (Ctrl-C still raises KeyboardInterrupt)."""

    def __init__(self):
        super().__init__()
        self._previous = None
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            self._previous = signal.signal(signal.SIGINT, self._received)

    def _received(self, signum, frame):
        self.append(signum)
        signal.default_int_handler(signum, frame)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_training(*, config: Mapping) -> dict:
    """Train, merge, save and record one run. Returns the record (an existing ok one if the
    same configuration already finished here, unless config['force'])."""
    config = dict(config)
    out_dir = Path(config["out_dir"])
    record_path = out_dir / "train.json"
    chash = train_hash(config)
    existing = reusable_record(record_path, chash, config["force"])
    if existing is not None:
        print(f"{record_path} is finished (config {chash}); not redone (set force=true to redo)")
        return existing
    # A rank or target_modules the model cannot hold is refused from its architecture alone,
    # before anything loads (a configuration error, not a failed run: no record is written).
    check_method_fits(config)

    started = time.perf_counter()
    phase, info, timings = "load", None, {}
    record = train_record_start(config, run=out_dir.name, config_hash=chash)
    interrupted = _Interrupts()
    try:
        from transformers import set_seed

        set_seed(config["seed"])
        rows = load_rows(task=config["train_task"], split="train", source=config["data_source"], n=config["n_train"])
        model, tokenizer, info = load_model(
            base_model=config["base_model"], dtype=config["dtype"], device=config["device"]
        )
        base_dtype = model.dtype
        timings["load_s"] = time.perf_counter() - started

        phase = "prepare"
        examples = [train_example(config["train_task"], row, config["protocol"]) for row in rows]
        examples, n_too_long = _fit_rows(examples, tokenizer, config["max_length"])
        if not examples:
            raise ConfigError(
                f"config key 'max_length': every one of the {len(rows)} training rows is longer "
                f"than {config['max_length']} tokens; allowed: a larger max_length"
            )
        set_seed(config["seed"])  # adapter initialisation draws from the run's seed
        model = attach_method(model, config, initial_adapter_dir=out_dir / "initial_adapter")
        counts = parameter_counts(model)
        if config["gradient_checkpointing"] and get_method(config["method"]).trains_adapter:
            model.enable_input_require_grads()

        phase = "train"
        layout = training_layout(config, model.device)
        trainer, train_s, memory = _train(model, tokenizer, examples, config, layout, out_dir)
        timings["train_s"] = train_s
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * math.ceil(config["epochs"])
        history = trainer.state.log_history
        curve = [
            {
                "step": h["step"],
                "loss": h["loss"],
                "learning_rate": h.get("learning_rate"),
                "grad_norm": h.get("grad_norm"),
            }
            for h in history
            if "loss" in h
        ]

        phase = "save"
        save_started = time.perf_counter()
        adapter_bytes = None
        if get_method(config["method"]).trains_adapter:
            atomic_dir(out_dir / "adapter", lambda d: save_adapter(model, config, d), replace=True)
            adapter_bytes = _dir_size(out_dir / "adapter")
            shutil.rmtree(out_dir / "initial_adapter", ignore_errors=True)
        merged = merge_into_base(model, base_dtype)

        def save_merged(directory: Path) -> None:
            merged.save_pretrained(directory)
            tokenizer.save_pretrained(directory)

        atomic_dir(out_dir / "model", save_merged, replace=True)
        timings["save_s"] = time.perf_counter() - save_started

        record.update(
            {
                "status": "ok",
                "model": {
                    **info.to_dict(),
                    "merged_path": str(out_dir / "model"),
                    "merged_dtype": str(merged.dtype).replace("torch.", ""),
                    "merged_bytes": _dir_size(out_dir / "model"),
                },
                **counts,
                "adapter_bytes": adapter_bytes,
                "n_rows": len(examples),
                "n_rows_too_long": n_too_long,
                "bf16_autocast": uses_bf16_autocast(config, model),
                "layout": layout,
                "optimizer_steps": trainer.state.global_step,
                "tokens": tokens,
                "tokens_per_s": tokens / train_s if train_s else None,
                "loss_curve": curve,
                "final_loss": curve[-1]["loss"] if curve else None,
                "memory": memory,
            }
        )
    except BaseException as error:
        record["error"] = {**failure(error, phase), "traceback": traceback.format_exc(limit=20)}
        if is_out_of_memory(error):  # what the phase had reached when memory ran out
            record["error"]["memory_so_far"] = PhaseMemory(info.device if info else "cpu").snapshot()
        # A failure is recorded; an interruption (Ctrl-C, kill) is not, even when a library on the
        # way up turned the KeyboardInterrupt into another exception.
        if isinstance(error, Exception) and not interrupted:
            record["timings"] = {**timings, "wall_s": time.perf_counter() - started}
            record["meta"] = run_metadata(info.device if info else None)
            write_json(record_path, record)
        raise
    finally:
        shutil.rmtree(out_dir / ".trainer", ignore_errors=True)
        interrupted.restore()
    record["timings"] = {**timings, "wall_s": time.perf_counter() - started}
    record["meta"] = run_metadata(info.device)
    record["model"]["dtype"] = info.dtype
    write_json(record_path, record)
    return record


# Rows per optimizer step when the layout is left to the device: the reference study's 1 x 8.
EFFECTIVE_BATCH = 8


def training_layout(config: Mapping, device: torch.device | str) -> dict:
    """batch_size, grad_accum, padding_free and dropout_masks with `auto` decided for the device that trains.

    CPU: one row at a time and 8 accumulation steps, so no pad token is computed and no batch of
    activations is held: the leanest layout, which keeps the demo's jobs within a laptop's
    memory. Since only labelled positions reach the LM head (`lm_head_positions`), padding-free
    batches of 8 are about as fast on a 2-core CPU (bench/benchmark.py --only train, 64 OpenMath
    rows, against the reference layout: 1.75x full FT / 1.81x LoRA, one row at a time 1.52x /
    1.93x, the same final loss) at about 1.6 GB more peak memory: with memory to spare, set
    batch_size 8 and padding_free true. GPU: 8 rows in one padding-free batch, which fills
    the device. A grad_accum left to `auto` beside a batch_size that is set keeps 8 rows per
    optimizer step. `dropout_masks` (auto = packed on a CPU) says how adapter dropout draws its
    masks (peftlab.run.lean_training)."""
    cpu = torch.device(device).type == "cpu"
    batch = config["batch_size"]
    if batch == "auto":
        batch = 1 if cpu else EFFECTIVE_BATCH
    accum = config["grad_accum"]
    if accum == "auto":
        accum = max(1, math.ceil(EFFECTIVE_BATCH / batch))
    padding_free = config["padding_free"]
    if padding_free == "auto":
        padding_free = not cpu
    masks = "packed" if uses_packed_masks(config.get("dropout_masks", "auto"), device) else "bernoulli"
    return {"batch_size": batch, "grad_accum": accum, "padding_free": padding_free, "dropout_masks": masks}


def uses_bf16_autocast(config: Mapping, model) -> bool:
    """bf16 autocast for training: for bf16 weights (`auto`, the GPU default) or when asked for
    (`bf16`: float32 master weights and optimizer state, bf16 matrix products).

    `auto` leaves float32 CPU training in float32 although a CPU with AVX512-BF16/AMX runs bf16
    products 2x faster: measured on the embedded model, bf16 autocast raised the loss after
    8 steps by 2 % (full FT) and 7 % (LoRA), so it is a choice to make, not a default."""
    if config["mixed_precision"] == "no":
        return False
    return config["mixed_precision"] == "bf16" or model.dtype == torch.bfloat16


def tracking_project(out_dir: Path) -> str:
    """outputs/<study>/runs/<run> -> <study>; outputs/adhoc/<run> -> adhoc."""
    return out_dir.parent.parent.name if out_dir.parent.name == "runs" else out_dir.parent.name


def tracking_args(config: Mapping, out_dir: Path) -> dict:
    """TRL/Transformers `report_to` arguments for the opt-in experiment tracker (`report_to` key).

    tensorboard: event files in <out_dir>/tensorboard/ (`tensorboard --logdir outputs/<study>/runs`);
    trackio: its local store, project = the study (or the folder holding out_dir), run = the run's
    name (`trackio show --project <study>`). Tracking never changes what a run computes."""
    if config.get("report_to", "none") == "none":
        return {"report_to": "none"}
    return {"report_to": [config["report_to"]], "run_name": out_dir.name, "project": tracking_project(out_dir)}


@contextlib.contextmanager
def lm_head_positions(positions: str):
    """Which positions TRL's fused LM head scores in training: `labelled` (only those with a
    label, the completion's tokens) or `all` (every position, then masked: what the reference
    study's trainer computed). The loss is the same either way.

    TRL scores only the labelled positions on Triton devices (a GPU) and every position
    elsewhere, because on a compiling device (Neuron) a varying count would recompile. A CPU
    compiles nothing, and a prompt is most of a training row (SQuAD v2: about 95 % of its
    tokens), so there the 49k-vocabulary projection of every prompt position is time and memory
    spent on logits the loss masks out: `labelled` made a 32-row SQuAD v2 run 1.43x faster for
    full fine-tuning and 1.15x for LoRA, and lowered their peak RSS by 0.28 and 0.46 GB, with
    the same losses (bench/benchmark.py --only train measures it)."""
    import trl.trainer.utils as trl_utils

    decide = getattr(trl_utils, "_use_triton", None)
    if decide is None:  # a TRL without this switch: its own choice stands
        yield
        return
    trl_utils._use_triton = lambda device: positions == "labelled"
    try:
        yield
    finally:
        trl_utils._use_triton = decide


@contextlib.contextmanager
def _tensorboard_dir(config: Mapping, out_dir: Path):
    """Transformers' TensorBoard callback writes under the trainer's output_dir (.trainer/, removed
    after the run) unless TENSORBOARD_LOGGING_DIR says where: the run's folder keeps the events."""
    if config.get("report_to") != "tensorboard":
        yield
        return
    previous = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out_dir / "tensorboard")
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = previous


def _train(model, tokenizer, examples: list[dict], config: Mapping, layout: Mapping, out_dir: Path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    steps_per_epoch = math.ceil(len(examples) / (layout["batch_size"] * layout["grad_accum"]))
    total_steps = max(1, math.ceil(steps_per_epoch * config["epochs"]))
    bf16 = uses_bf16_autocast(config, model)
    args = SFTConfig(
        output_dir=str(out_dir / ".trainer"),
        per_device_train_batch_size=layout["batch_size"],
        gradient_accumulation_steps=layout["grad_accum"],
        learning_rate=effective_learning_rate(config),
        num_train_epochs=config["epochs"],
        warmup_steps=math.ceil(config["warmup_ratio"] * total_steps),
        weight_decay=config["weight_decay"],
        max_grad_norm=config["max_grad_norm"],
        activation_checkpointing=config["gradient_checkpointing"],
        # Rows over max_length were already left out (_fit_rows); padding-free batches are not truncated again.
        max_length=None if layout["padding_free"] else config["max_length"],
        packing=False,
        padding_free=layout["padding_free"],
        train_sampling_strategy="group_by_length" if config["group_by_length"] else "random",
        completion_only_loss=True,
        logging_steps=1,
        logging_nan_inf_filter=False,  # the default hides a NaN loss behind the running mean
        save_strategy="no",
        **tracking_args(config, out_dir),
        seed=config["seed"],
        data_seed=config["seed"],
        bf16=bf16,
        use_cpu=model.device.type == "cpu",
        dataloader_num_workers=0,
    )
    with _tensorboard_dir(config, out_dir):  # its callback reads the folder when the trainer is built
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
            callbacks=_trainer_callbacks(config),
        )
    with (
        PhaseMemory(model.device) as memory,
        lm_head_positions(config["lm_head_positions"]),
        packed_dropout_masks(model, layout["dropout_masks"] == "packed"),
        embedding_grad_in_place(model),
    ):
        started = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - started
    return trainer, train_s, memory.result()
