"""The private parts of other packages the project relies on, one test each.

A release of Transformers, TRL, WeasyPrint, jsonschema or PyTorch may rename or reshape what
is not its public API without notice. Each test checks the shape the project's code assumes
(names, parameters, attributes, and where cheap the behaviour) and fails with a message naming
the hook, where the project uses it and the installed version, so that an upgrade that breaks
one is found here and not in a study run.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import types
from importlib.metadata import version

import pytest
import torch


def hook_failure(hook: str, package: str, used_in: str, detail: str) -> str:
    return f"private hook {hook} ({package} {version(package)}), used by {used_in}: {detail}"


def parameter_names(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# --------------------------------------------------------------------------------------
# Transformers: DynamicLayer, subclassed by the growing decode cache
# --------------------------------------------------------------------------------------

GROWING = "lib/peftlab/run/generate.py (_growing_layer_class)"


def test_dynamic_layer_shape():
    """``GrowingLayer(DynamicLayer)`` calls ``DynamicLayer.__init__()`` without arguments, sets
    ``keys``, ``values``, ``device`` and ``is_initialized`` itself, overrides ``update`` and
    ``batch_select_indices``, and inherits the rest (``get_seq_length``, ``get_mask_sizes``,
    ``crop``...) which must read only ``keys``/``values``/``is_initialized``."""
    hook = "transformers.cache_utils.DynamicLayer"
    try:
        from transformers.cache_utils import Cache, DynamicLayer
    except ImportError as exc:
        pytest.fail(hook_failure(hook, "transformers", GROWING, f"cannot be imported ({exc})"))

    try:
        layer = DynamicLayer()
    except TypeError as exc:
        pytest.fail(hook_failure(hook, "transformers", GROWING, f"__init__ now needs arguments ({exc})"))
    for name, expected in (("keys", None), ("values", None), ("is_initialized", False)):
        assert hasattr(layer, name) and getattr(layer, name) == expected, hook_failure(
            hook, "transformers", GROWING, f"a new layer's {name!r} is no longer {expected!r}"
        )
    update = parameter_names(DynamicLayer.update)
    assert update[:3] == ["self", "key_states", "value_states"], hook_failure(
        hook, "transformers", GROWING, f"update's parameters are now {update}"
    )
    select = parameter_names(DynamicLayer.batch_select_indices)
    assert select == ["self", "indices"], hook_failure(
        hook, "transformers", GROWING, f"batch_select_indices' parameters are now {select}"
    )
    assert "layers" in parameter_names(Cache.__init__), hook_failure(
        "transformers.cache_utils.Cache(layers=...)", "transformers", GROWING, "Cache no longer takes `layers`"
    )


def test_growing_layer_behaves_as_dynamic_layer():
    """The growing cache, driven through ``Cache`` as a model drives it, holds the same keys and
    values and reports the same lengths and mask sizes as Transformers' own ``DynamicLayer``."""
    from transformers.cache_utils import Cache, DynamicLayer

    from peftlab.run.generate import _growing_layer_class

    growing_class = _growing_layer_class()
    generator = torch.Generator().manual_seed(0)

    def states(tokens):
        return torch.randn(3, 2, tokens, 4, generator=generator), torch.randn(3, 2, tokens, 4, generator=generator)

    ours = Cache(layers=[growing_class(limit=8) for _ in range(2)])
    theirs = Cache(layers=[DynamicLayer() for _ in range(2)])
    for tokens in (5, 1, 1, 3):  # a prompt, two decode steps, a draft that outgrows the limit
        for index in range(2):
            k, v = states(tokens)
            got = ours.update(k, v, index)
            want = theirs.update(k, v, index)
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b)
    detail = "the growing cache and DynamicLayer disagree on {}: {} != {}"
    for name, got, want in (
        ("get_seq_length", ours.get_seq_length(), theirs.get_seq_length()),
        ("get_mask_sizes", ours.get_mask_sizes(2, 0), theirs.get_mask_sizes(2, 0)),
    ):
        assert got == want, hook_failure(
            "transformers.cache_utils.DynamicLayer", "transformers", GROWING, detail.format(name, got, want)
        )
    index = torch.tensor([2, 0])
    ours.batch_select_indices(index)
    theirs.batch_select_indices(index)
    for mine, reference in zip(ours.layers, theirs.layers):
        torch.testing.assert_close(mine.keys, reference.keys)
        torch.testing.assert_close(mine.values, reference.values)


# --------------------------------------------------------------------------------------
# Transformers: an attention function registered by name (AttentionInterface) and a model
# switched to it (set_attn_implementation) inside grouped_head_attention
# --------------------------------------------------------------------------------------

ATTENTION = "lib/peftlab/run/generate.py (grouped_head_attention, _register_grouped_sdpa, _sdpa_grouped_heads)"
SDPA_PARAMETERS = ["module", "query", "key", "value", "attention_mask", "dropout", "scaling", "is_causal"]


@pytest.fixture(scope="module")
def tiny_model():
    from peftlab.models.loading import load_model

    return load_model(base_model="tiny", dtype="float32", device="cpu")[0]


def test_registered_attention_route(tiny_model):
    """The registered name reaches the model: inside the block its layers call the grouped
    sdpa (counted), the mask is sdpa's, and `sdpa_attention_forward` takes the positional
    parameters the wrapper passes on."""
    hook = "transformers AttentionInterface.register / AttentionMaskInterface.register / set_attn_implementation"
    try:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    except ImportError as exc:
        pytest.fail(hook_failure(hook, "transformers", ATTENTION, f"cannot be imported ({exc})"))
    from peftlab.run import generate

    names = parameter_names(sdpa_attention_forward)
    assert names[: len(SDPA_PARAMETERS)] == SDPA_PARAMETERS, hook_failure(
        hook, "transformers", ATTENTION, f"sdpa_attention_forward's parameters are now {names}"
    )
    model = tiny_model
    calls = []
    wrapped = generate._sdpa_grouped_heads

    def counting(original):
        inner = wrapped(original)

        def attention(*args, **kwargs):
            calls.append(1)
            return inner(*args, **kwargs)

        return attention

    original_sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    generate._sdpa_grouped_heads = counting
    try:
        with generate.grouped_head_attention(model):
            model(input_ids=torch.tensor([[1, 2, 3]]))
            assert ALL_MASK_ATTENTION_FUNCTIONS[generate.GROUPED_SDPA] is ALL_MASK_ATTENTION_FUNCTIONS["sdpa"]
    finally:
        generate._sdpa_grouped_heads = wrapped
    assert calls, hook_failure(
        hook, "transformers", ATTENTION, "the model no longer calls the attention registered by name"
    )
    assert model.config._attn_implementation == "sdpa"
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is original_sdpa


def test_grouped_sdpa_matches_transformers():
    """The wrapper's own path (a grouped-query, several-token step on a CPU under a mask)
    returns what Transformers' sdpa returns: (batch, tokens, heads, dim) and no weights."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from peftlab.run.generate import _sdpa_grouped_heads

    original = ALL_ATTENTION_FUNCTIONS["sdpa"]  # what the registered wrapper wraps: sdpa_attention_forward
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(2, 4, 3, 8, generator=generator)  # 4 query heads
    key = torch.randn(2, 2, 6, 8, generator=generator)  # 2 key/value heads
    value = torch.randn(2, 2, 6, 8, generator=generator)
    mask = torch.ones(2, 1, 3, 6, dtype=torch.bool).tril(diagonal=3)
    mask[1, :, :, 0] = False  # a left-pad position
    module = types.SimpleNamespace(num_key_value_groups=2, is_causal=True, training=False)
    want, want_weights = original(module, query, key, value, mask, dropout=0.0, scaling=8**-0.5)
    got, got_weights = _sdpa_grouped_heads(original)(module, query, key, value, mask, dropout=0.0, scaling=8**-0.5)
    assert want.shape == got.shape == (2, 3, 4, 8), hook_failure(
        'transformers.modeling_utils.ALL_ATTENTION_FUNCTIONS["sdpa"]',
        "transformers",
        ATTENTION,
        f"sdpa now returns shape {tuple(want.shape)}, the wrapper {tuple(got.shape)}",
    )
    assert want_weights is None and got_weights is None
    torch.testing.assert_close(got, want)


# --------------------------------------------------------------------------------------
# TRL: trl.trainer.utils._use_triton, replaced inside lm_head_positions
# --------------------------------------------------------------------------------------

USE_TRITON = "lib/peftlab/run/train.py (lm_head_positions)"


def _code_objects(code: types.CodeType):
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def test_trl_use_triton():
    """``lm_head_positions`` replaces the module attribute ``trl.trainer.utils._use_triton``
    (device -> bool). That changes what the fused LM head scores only while a function defined
    in that module looks the name up among the module's globals when it runs."""
    hook = "trl.trainer.utils._use_triton"
    import trl.trainer.utils as trl_utils

    decide = getattr(trl_utils, "_use_triton", None)
    assert callable(decide), hook_failure(hook, "trl", USE_TRITON, "no longer exists (lm_head_positions is inert)")
    assert parameter_names(decide) == ["device"], hook_failure(
        hook, "trl", USE_TRITON, f"its parameters are now {parameter_names(decide)}"
    )
    assert isinstance(decide(torch.device("cpu")), bool)
    readers = [
        f"{function.__qualname__}"
        for function in vars(trl_utils).values()
        if isinstance(function, types.FunctionType) and function.__module__ == trl_utils.__name__
        for code in _code_objects(function.__code__)
        if "_use_triton" in code.co_names
    ]
    assert readers, hook_failure(
        hook, "trl", USE_TRITON, "no function of trl.trainer.utils reads it any more (replacing it has no effect)"
    )

    from peftlab.run.train import lm_head_positions

    with lm_head_positions("labelled"):
        assert trl_utils._use_triton(torch.device("cpu")) is True
    with lm_head_positions("all"):
        assert trl_utils._use_triton(torch.device("cpu")) is False
    assert trl_utils._use_triton is decide


# --------------------------------------------------------------------------------------
# WeasyPrint: page._page_box, the laid-out boxes wide_tables walks
# --------------------------------------------------------------------------------------

PAGE_BOX = "lib/peftlab/report/pages.py (wide_tables)"


def test_weasyprint_page_box(tmp_path):
    """``wide_tables`` reads ``page._page_box`` (``content_box_x()``, ``width``, ``children``)
    and each ``TableBox``'s ``position_x`` and ``margin_width()``: a table wider than the page
    is found, a narrow one is not."""
    hook = "weasyprint Page._page_box"
    from peftlab.report.pages import render_document, wide_tables

    cells = "".join(f"<td>{'x' * 40}</td>" for _ in range(12))
    html = tmp_path / "tables.html"
    html.write_text(
        "<html><body><table><tr><td>narrow</td></tr></table>"
        f"<table style='table-layout: fixed; width: 400mm'><tr>{cells}</tr></table></body></html>"
    )
    document = render_document(html)
    page = document.pages[0]
    box = getattr(page, "_page_box", None)
    assert box is not None, hook_failure(hook, "weasyprint", PAGE_BOX, "pages no longer have _page_box")
    for name in ("content_box_x", "width", "children"):
        assert hasattr(box, name), hook_failure(hook, "weasyprint", PAGE_BOX, f"the page box has no {name!r}")
    found = wide_tables(document)
    assert len(found) == 1 and found[0]["page"] == 1 and found[0]["overflow_mm"] > 100, hook_failure(
        hook, "weasyprint", PAGE_BOX, f"the wide table is not found from the boxes: {found}"
    )


# --------------------------------------------------------------------------------------
# jsonschema: the optional `rfc3987_syntax` import that skip_iri_format_checker blocks
# --------------------------------------------------------------------------------------

IRI = "lib/peftlab/study/run_notebook.py (skip_iri_format_checker)"
IRI_CHECK = """
import sys
{skip}
import jsonschema
print("iri" in jsonschema.FormatChecker.checkers, "rfc3987_syntax" in sys.modules and sys.modules["rfc3987_syntax"] is not None)
"""


def _iri_checker(skip: bool) -> str:
    line = "from peftlab.study.run_notebook import skip_iri_format_checker; skip_iri_format_checker()" if skip else ""
    code = IRI_CHECK.format(skip=line)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_jsonschema_iri_checker_skipped():
    """With ``rfc3987_syntax`` made unimportable, jsonschema registers no ``iri`` format checker
    and does not load the module; without it (where the module is installed) it does both,
    so the trick still has something to skip."""
    hook = "jsonschema's optional `import rfc3987_syntax` (iri formats)"
    assert _iri_checker(skip=True) == ["False", "False"], hook_failure(
        hook, "jsonschema", IRI, "the iri checker is still registered or the module still loaded"
    )
    try:
        version("rfc3987-syntax")
    except Exception:
        pytest.skip("rfc3987-syntax is not installed: there is nothing to skip")
    assert _iri_checker(skip=False) == ["True", "True"], hook_failure(
        hook, "jsonschema", IRI, "jsonschema no longer loads rfc3987_syntax for the iri formats (the trick is moot)"
    )


# --------------------------------------------------------------------------------------
# PyTorch: nn.Module._modules, written to swap dropouts
# --------------------------------------------------------------------------------------

MODULES = "lib/peftlab/run/lean_training.py (packed_dropout_masks)"


def test_module_children_mapping():
    """``packed_dropout_masks`` swaps a child by assigning ``parent._modules[name]``: the swap
    must be what attribute access, indexing and ``modules()`` then see, and it must undo."""
    hook = "torch.nn.Module._modules"
    from torch import nn

    from peftlab.run.lean_training import PackedDropout, packed_dropout_masks

    dropout = nn.Dropout(0.1)
    model = nn.Sequential(nn.Linear(4, 4), dropout)
    model.add_module("extra", nn.Sequential(nn.Dropout(0.2)))
    assert isinstance(getattr(model, "_modules", None), dict), hook_failure(
        hook, "torch", MODULES, "nn.Module no longer keeps its children in a dict `_modules`"
    )
    with packed_dropout_masks(model) as swapped:
        assert swapped == 2
        kinds = [type(m) for m in model.modules() if isinstance(m, nn.Dropout)]
        assert kinds == [PackedDropout, PackedDropout] and isinstance(model[1], PackedDropout), hook_failure(
            hook, "torch", MODULES, "a child written into _modules is not the one the model uses"
        )
        assert model[1].p == 0.1 and model.extra[0].p == 0.2
    assert model[1] is dropout and type(model.extra[0]) is nn.Dropout
