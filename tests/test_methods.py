"""The method registry: every entry trains on the tiny model through the train notebook, merges
exactly, is scored, and appears in Table 1 and the Pareto plots; each method's own promise
(its initialisation, its scaling, its parameter count) is tested beside it."""

from __future__ import annotations

import json
from pathlib import Path

import papermill as pm
import pytest
import torch

from peftlab.analysis.comparisons import configurations
from peftlab.analysis.study_records import load_study
from peftlab.analysis.table1 import table1
from peftlab.config import resolve_config
from peftlab.core.errors import ConfigError
from peftlab.core.paths import repo_root
from peftlab.methods.registry import METHODS, attach_method, get_method, merge_into_base, parameter_counts
from peftlab.models.loading import load_model
from peftlab.report.plots import METHOD_COLOURS, plot_pareto
from peftlab.run.evaluate import run_evaluation

ADAPTERS = [name for name, method in METHODS.items() if method.trains_adapter]
RANK = 4


def _perturbed(method: str, initial_adapter_dir: Path | None = None, **overrides):
    """The tiny base with the method attached and its trainable weights moved away from their
    initial value (many adapters start as the identity), in eval mode."""
    config = resolve_config(overrides=dict(base_model="tiny", method=method, rank=RANK, dropout=0.0, **overrides))
    base, tokenizer, _ = load_model(base_model="tiny")
    model = attach_method(base, config, initial_adapter_dir=initial_adapter_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    model.eval()
    inputs = tokenizer(["A question about physics?", "2 + 2 ="], return_tensors="pt", padding=True)
    return config, model, tokenizer, inputs


def test_registry_entries_are_complete():
    for name, method in METHODS.items():
        assert method.name == name and method.label and method.colour.startswith("#")
        assert method.learning_rate > 0
        assert METHOD_COLOURS[method.label] == method.colour
        if not method.ranked:
            assert "rank" not in method.identity_keys
    with pytest.raises(ConfigError, match="allowed: " + ", ".join(METHODS)):
        get_method("qlora")


@pytest.mark.parametrize("method", ADAPTERS)
def test_merged_logits_equal_unmerged_and_keep_the_base_size(method, tmp_path):
    config, model, _, inputs = _perturbed(method)
    base_bytes = sum(p.numel() * p.element_size() for p in load_model(base_model="tiny")[0].parameters())
    with torch.no_grad():
        unmerged = model(**inputs).logits
        merged_model = merge_into_base(model, torch.float32)
        merged = merged_model(**inputs).logits
    assert (merged - unmerged).abs().max().item() <= 1e-4
    merged_model.save_pretrained(tmp_path / "merged")
    reloaded, _, info = load_model(base_model=str(tmp_path / "merged"), dtype="float32")
    assert info.architecture == "Qwen3ForCausalLM"
    assert sum(p.numel() * p.element_size() for p in reloaded.parameters()) == base_bytes


@pytest.fixture(scope="module")
def methods_study(tmp_path_factory):
    """Every registered method trained on the tiny model through notebooks/train.ipynb (as
    papermill runs it in a study), then every model and the untuned base scored."""
    root = tmp_path_factory.mktemp("methods") / "study"
    runs = root / "runs"
    for name, method in METHODS.items():
        run = runs / (f"arc-{name}" + (f"-r{RANK}" if method.ranked else "") + "-s0")
        run.mkdir(parents=True)
        pm.execute_notebook(
            str(repo_root() / "notebooks" / "train.ipynb"),
            str(run / "train.ipynb"),
            parameters=dict(
                base_model="tiny",
                method=name,
                rank=RANK,
                n_train=4,
                batch_size=4,
                max_length=512,
                train_task="arc",
                out_dir=str(run),
            ),
            cwd=str(repo_root() / "notebooks"),
            progress_bar=False,
            kernel_name="python3",
        )
    evaluation = dict(
        base_model="tiny", eval_tasks=["arc", "openmath"], n_eval=3, max_new_tokens=6, eval_batch_size=3, n_latency=2
    )
    for run in sorted(runs.iterdir()):
        run_evaluation(config=resolve_config(overrides=dict(evaluation, out_dir=str(run))), run_dir=str(run))
    base = runs / "base-tiny"
    run_evaluation(config=resolve_config(overrides=dict(evaluation, out_dir=str(base))))
    return root


@pytest.mark.slow
def test_every_method_trains_through_the_notebook_and_is_scored(methods_study):
    for name, method in METHODS.items():
        run = methods_study / "runs" / (f"arc-{name}" + (f"-r{RANK}" if method.ranked else "") + "-s0")
        record = json.loads((run / "train.json").read_text())
        assert record["status"] == "ok", record.get("error")
        assert (record["adapter_bytes"] is None) == (not method.trains_adapter)
        assert record["learning_rate"] == method.learning_rate  # the corrected default from its entry
        assert json.loads((run / "model" / "config.json").read_text())["use_cache"] is True
        for task in ("arc", "openmath"):
            assert json.loads((run / f"eval-{task}.json").read_text())["status"] == "ok"


@pytest.mark.slow
def test_every_method_has_its_row_in_table1_and_its_point_in_the_pareto_plot(methods_study):
    records = load_study(methods_study)
    table = table1(records)
    labels = [method.label for method in METHODS.values()]
    assert sorted(set(table["method"]) - {"—"}) == sorted(labels)
    for method in METHODS.values():  # a method without rank shows none
        ranks = table.loc[table["method"] == method.label, "rank"]
        assert ranks.notna().all() if method.ranked else ranks.isna().all(), (method.name, ranks.tolist())
    assert table["status"].eq("ok").all()
    configs = configurations(records=records)
    fig = plot_pareto(configs)
    legend = {text.get_text() for legend in fig.legends for text in legend.get_texts()}
    legend |= {text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()}
    assert set(labels) <= legend, set(labels) - legend
    for label in labels:
        assert configs.loc[configs["method"] == label, "score"].notna().all()


def _converted_adapter_fits_the_original_base(method: str, tmp_path) -> None:
    """The saved adapter, applied to the original base, gives the trained model's logits."""
    from peft import PeftModel

    from peftlab.methods.registry import save_adapter

    config, model, _, inputs = _perturbed(method, initial_adapter_dir=tmp_path / "initial")
    save_adapter(model, config, tmp_path / "adapter")
    with torch.no_grad():
        trained = model(**inputs).logits
    original, _, _ = load_model(base_model="tiny")
    reloaded = PeftModel.from_pretrained(original, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert (reloaded(**inputs).logits - trained).abs().max().item() <= 1e-4


def _attached_as_the_original(method: str):
    """The method attached to the tiny base, checked to compute the original model at the start
    (PiSSA and OLoRA move part of each weight into the adapter); returns the original q_proj
    weight of layer 0 and that layer."""
    config = resolve_config(overrides=dict(base_model="tiny", method=method, rank=RANK, dropout=0.0))
    original, tokenizer, _ = load_model(base_model="tiny")
    weight = original.model.layers[0].self_attn.q_proj.weight.detach().clone()
    inputs = tokenizer(["2 + 2 ="], return_tensors="pt")
    with torch.no_grad():
        before = original(**inputs).logits
    model = attach_method(original, config).eval()
    with torch.no_grad():
        assert (model(**inputs).logits - before).abs().max().item() <= 1e-4
    return weight, model.base_model.model.model.layers[0].self_attn.q_proj


def test_pissa_starts_from_the_principal_components_and_saves_an_adapter_for_the_original_base(tmp_path):
    """PiSSA moves the top-r singular components of each targeted weight into the adapter: at the
    start, base + adapter is the original model, and the frozen residual lacks exactly those."""
    weight, layer = _attached_as_the_original("pissa")
    spectrum = torch.linalg.svdvals(weight)
    # the residual's spectrum is the original's without its first r singular values
    residual = layer.base_layer.weight
    assert torch.allclose(torch.linalg.svdvals(residual)[:5], spectrum[RANK : RANK + 5], atol=1e-4)
    _converted_adapter_fits_the_original_base("pissa", tmp_path)


def test_olora_starts_from_an_orthonormal_basis_and_saves_an_adapter_for_the_original_base(tmp_path):
    """OLoRA's B starts as the first r orthonormal columns of the weight's QR decomposition (A as
    the matching rows of R), and base + adapter is the original model at the start."""
    _, layer = _attached_as_the_original("olora")
    b = layer.lora_B["default"].weight
    assert torch.allclose(b.T @ b, torch.eye(RANK), atol=1e-4)
    _converted_adapter_fits_the_original_base("olora", tmp_path)


@pytest.mark.parametrize("protocol, alpha", [("reference", 16.0), ("corrected", float(RANK)), ("corrected", 8.0)])
def test_rslora_scales_its_update_by_alpha_over_the_square_root_of_the_rank(protocol, alpha):
    overrides = {"alpha": alpha} if alpha == 8.0 else {}
    config = resolve_config(
        overrides=dict(base_model="tiny", method="rslora", rank=RANK, protocol=protocol, **overrides)
    )
    model = attach_method(load_model(base_model="tiny")[0], config)
    layer = model.base_model.model.model.layers[0].self_attn.v_proj
    assert layer.scaling["default"] == pytest.approx(alpha / RANK**0.5)
    lora = attach_method(load_model(base_model="tiny")[0], dict(config, method="lora"))
    assert lora.base_model.model.model.layers[0].self_attn.v_proj.scaling["default"] == pytest.approx(alpha / RANK)


def test_ia3_trains_one_scaling_vector_per_targeted_layer_and_has_no_rank():
    config = resolve_config(overrides=dict(base_model="tiny", method="ia3"))
    base = load_model(base_model="tiny")[0]
    outputs = sum(
        module.out_features
        for name, module in base.named_modules()
        if name.rsplit(".", 1)[-1] in config["target_modules"] and hasattr(module, "out_features")
    )
    model = attach_method(base, config)
    assert parameter_counts(model)["trainable_params"] == outputs
    vector = model.base_model.model.model.layers[0].self_attn.q_proj.ia3_l["default"]
    assert torch.equal(vector, torch.ones_like(vector))  # the identity at the start
    # its rank is no part of the run: two ranks are one run
    from peftlab.config import train_hash

    assert train_hash(config) == train_hash(dict(config, rank=64))
    assert not get_method("ia3").ranked


def test_loha_update_is_a_hadamard_product_whose_rank_exceeds_r():
    """LoHa: (B1 A1) * (B2 A2), 2 r (in + out) trained numbers per layer, an update of rank up to r^2."""
    config, model, _, _ = _perturbed("loha")
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    n_in, n_out = layer.in_features, layer.out_features
    trained = sum(p.numel() for name, p in layer.named_parameters() if p.requires_grad)
    assert trained == 2 * RANK * (n_in + n_out)
    update = layer.get_delta_weight("default")
    assert update.shape == (n_out, n_in)
    assert torch.linalg.matrix_rank(update).item() > RANK


def test_lokr_update_is_a_kronecker_product():
    """LoKr: the update is kron(W1, W2), W1 a small full matrix and W2 a product of rank r, so
    it is determined by far fewer numbers than it has entries."""
    config, model, _, _ = _perturbed("lokr")
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    w1 = layer.lokr_w1["default"]
    # W2 is kept as its rank-r factors where r is below its size, else whole (as on the tiny model)
    w2 = (
        layer.lokr_w2["default"]
        if "default" in layer.lokr_w2
        else layer.lokr_w2_a["default"] @ layer.lokr_w2_b["default"]
    )
    update = layer.get_delta_weight("default")
    scale = layer.scaling["default"]
    assert torch.allclose(update, scale * torch.kron(w1, w2), atol=1e-6)
    trained = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert trained < update.numel() / 10
