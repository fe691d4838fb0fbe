"""Batched greedy decoding gives the tokens of one `generate()` call per prompt."""

from __future__ import annotations

import pytest
import torch

from peftlab.models.loading import load_model
from peftlab.run.generate import (
    NgramDrafter,
    _drop_holes,
    _growing_layer_class,
    first_box_closed,
    generate_batched,
    greedy_decode,
    grouped_head_attention,
    render_prompts,
    shared_prefix_length,
    time_single,
)

PROMPTS = [
    "What is 2 + 2?",
    "Name the largest planet of the solar system, and say why it is so large.",
    "Hi",
    "Which gas do plants take in, and which do they give off during photosynthesis?",
    "Solve for x: 3x + 5 = 20. Put the answer in a box.",
]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer, _ = load_model(base_model="tiny", dtype="float32", device="cpu")
    return model, tokenizer


def _one_by_one(model, tokenizer, max_new_tokens, eos_token_id):
    sequences = []
    for prompt in PROMPTS:
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        sequences.append(out[0, inputs["input_ids"].shape[1] :].tolist())
    return sequences


@pytest.mark.parametrize("growing_cache", [True, False])
def test_shrinking_batch_matches_one_generate_call_per_prompt(tiny, growing_cache):
    model, tokenizer = tiny
    free = _one_by_one(model, tokenizer, 24, eos_token_id=tokenizer.eos_token_id)
    # Make sequences end at different steps: treat a token each reply produces early as the end token.
    stop_token = free[1][5]
    expected = _one_by_one(model, tokenizer, 24, eos_token_id=stop_token)
    assert len({len(s) for s in expected}) > 1, "the test needs replies that end at different steps"
    tokenizer.padding_side = "left"
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    got = greedy_decode(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=24,
        eos_ids={stop_token},
        growing_cache=growing_cache,
    )
    assert got == expected


def test_growing_cache_layer_holds_what_concatenation_would():
    layer = _growing_layer_class()(limit=12)
    torch.manual_seed(0)
    keys = [torch.randn(3, 2, 4, 5)] + [torch.randn(3, 2, 1, 5) for _ in range(8)]
    values = [k + 1 for k in keys]
    capacities, moved = [], []
    for step, (k, v) in enumerate(zip(keys, values)):
        before = layer.key_buffer.data_ptr() if layer.key_buffer is not None else None
        got_k, got_v = layer.update(k, v)
        assert torch.equal(got_k, torch.cat(keys[: step + 1], dim=-2))
        assert torch.equal(got_v, torch.cat(values[: step + 1], dim=-2))
        capacities.append(layer.key_buffer.shape[-2])
        moved.append(layer.key_buffer.data_ptr() != before)
    assert layer.get_seq_length() == 12
    assert capacities == [4, 8, 8, 8, 8, 12, 12, 12, 12]  # the prompt, then doubled, then the limit
    assert [step for step, m in enumerate(moved) if m] == [0, 1, 5]  # every other step writes in place
    layer.batch_select_indices(torch.tensor([2, 0]))
    assert torch.equal(layer.keys, torch.cat(keys, dim=-2)[[2, 0]])
    assert torch.equal(layer.values, torch.cat(values, dim=-2)[[2, 0]])


def test_rows_that_end_are_refilled_from_the_batch_end_and_the_cache_follows():
    from peftlab.run.generate import _keep_rows

    assert _keep_rows([False, True, False, False, True]) == [0, 3, 2]
    assert _keep_rows([True, True, False, False]) == [3, 2]
    assert _keep_rows([False, False]) == [0, 1]
    layer = _growing_layer_class()(limit=8)
    torch.manual_seed(0)
    keys = torch.randn(5, 2, 3, 4)
    layer.update(keys, keys + 1)
    rows = _keep_rows([False, True, False, False, True])
    layer.batch_select_indices(torch.tensor(rows))
    assert torch.equal(layer.keys, keys[rows]) and torch.equal(layer.values, keys[rows] + 1)
    layer.update(torch.ones(3, 2, 1, 4), torch.ones(3, 2, 1, 4))  # the kept rows go on growing
    assert torch.equal(layer.keys[:, :, :3], keys[rows]) and layer.get_seq_length() == 4


def test_batched_replies_equal_single_replies_in_input_order(tiny):
    model, tokenizer = tiny
    single = time_single(model, tokenizer, PROMPTS, max_new_tokens=10)
    for batch_size in (1, 2, len(PROMPTS)):
        batched = generate_batched(model, tokenizer, PROMPTS, max_new_tokens=10, batch_size=batch_size)
        assert [b["reply"] for b in batched] == [s["reply"] for s in single]
        assert [b["tokens_generated"] for b in batched] == [s["tokens_generated"] for s in single]


def test_shared_prefix_length_leaves_every_prompt_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # one prompt is the other's prefix
    assert shared_prefix_length([[1, 2], [3, 4]]) == 0
    assert shared_prefix_length([[1, 2, 3]]) == 0  # a single prompt shares nothing


def test_prompts_sharing_a_system_prompt_get_the_replies_of_one_generate_call_each(tiny):
    """The shared prefix (system prompt, chat template) is computed once and extended by each
    prompt: the replies are those of one generate() call per prompt, in every batch layout."""
    model, tokenizer = tiny
    system = "You are a careful assistant. Think about the question, then give one short answer in a box."
    prompts = render_prompts(
        tokenizer, [[{"role": "system", "content": system}, {"role": "user", "content": p}] for p in PROMPTS]
    )
    token_lists = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert shared_prefix_length(token_lists) > 20, "the prompts should share their system prompt"
    single = time_single(model, tokenizer, prompts, max_new_tokens=12)
    own = [len(ids) - shared_prefix_length(token_lists) for ids in token_lists]
    assert len(set(own)) > 1, "the prompts should differ in length after the prefix"
    # prompts computed one by one, two or three per pass (left-padded after the prefix), all at once
    for prefill_tokens in (1, 2 * max(own), 3 * max(own), 10**6):
        for batch_size in (1, 2, len(prompts)):
            for share in (True, False):
                batched = generate_batched(
                    model,
                    tokenizer,
                    prompts,
                    max_new_tokens=12,
                    batch_size=batch_size,
                    share_prefix=share,
                    prefill_tokens=prefill_tokens,
                )
                layout = (prefill_tokens, batch_size, share)
                assert [b["reply"] for b in batched] == [s["reply"] for s in single], layout
                assert [b["tokens_generated"] for b in batched] == [s["tokens_generated"] for s in single]


def test_prefill_groups_fit_the_token_budget_and_need_a_shared_prefix():
    from peftlab.run.generate import _prefill_groups

    # own tokens after a 10-token prefix: 2, 3, 3, 6; a group costs rows x its longest
    assert _prefill_groups([12, 13, 13, 16], shared=10, budget=9) == [[0, 1, 2], [3]]
    assert _prefill_groups([12, 13, 13, 16], shared=10, budget=24) == [[0, 1, 2, 3]]
    assert _prefill_groups([12, 13, 13, 16], shared=10, budget=1) == [[0], [1], [2], [3]]
    # without a shared prefix a left-pad position would attend to nothing: one prompt per pass
    assert _prefill_groups([2, 3, 3], shared=0, budget=100) == [[0], [1], [2]]


def test_first_box_rule_stops_once_the_first_box_closes(tiny):
    model, tokenizer = tiny
    stop = first_box_closed(tokenizer)

    def tokens(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    assert not stop(tokens("so the answer is \\boxed{7"))
    assert stop(tokens("so the answer is \\boxed{7}"))
    assert not stop(tokens("no box here }"))

    box = tokens("\\boxed{7}")
    forced = iter(box + [7] * 20)  # a reply that would go on after its box

    class Forced(torch.nn.Module):
        """The tiny model with its choice overridden step by step."""

        config = model.config

        def forward(self, **kwargs):
            out = model(**kwargs)
            out.logits[:, -1, :] = -1e9
            out.logits[:, -1, next(forced)] = 0.0
            return out

    batch = tokenizer(["x"], return_tensors="pt", add_special_tokens=False)
    got = greedy_decode(
        Forced(),
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=20,
        eos_ids={tokenizer.eos_token_id},
        stop=stop,
        draft_tokens=0,  # one forced token per forward pass
    )
    assert got == [box]


def test_drafter_proposes_what_followed_the_latest_earlier_occurrence():
    drafter = NgramDrafter([5, 1, 2, 3, 9, 1, 2, 3, 4])
    drafter.extend([1, 2, 3])
    assert drafter.draft(2) == [4, 1]  # the latest "1 2 3" was followed by 4, then 1
    # a loop's continuation runs past the sequence's end: the draft repeats its period
    loop = NgramDrafter([7, 8, 9, 7, 8, 9])
    assert loop.draft(7) == [7, 8, 9, 7, 8, 9, 7]
    # no 3-gram or 2-gram match: the last token alone
    single = NgramDrafter([4, 6, 1, 4])
    assert single.draft(3) == [6, 1, 4]
    assert NgramDrafter([1, 2, 3]).draft(4) == []  # nothing seen before
    assert loop.draft(0) == []


def test_drafted_decoding_writes_the_greedy_replies_in_fewer_passes():
    """Drafts checked in one pass give one generate() call's reply per prompt, and a reply
    that repeats itself takes fewer passes than tokens. Float64, so that no float rounding
    of a several-token pass can change an argmax."""
    model, tokenizer, _ = load_model(base_model="tiny", dtype="float64", device="cpu")
    expected = _one_by_one(model, tokenizer, 60, eos_token_id=tokenizer.eos_token_id)
    tokenizer.padding_side = "left"
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    passes = []
    forward = model.forward

    def counted(*args, **kwargs):
        passes.append(kwargs["input_ids"].shape)
        return forward(*args, **kwargs)

    model.forward = counted
    for draft_tokens, draft_budget in ((0, 64), (4, 64), (10, 64), (10, 12)):
        passes.clear()
        got = greedy_decode(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            max_new_tokens=60,
            eos_ids={tokenizer.eos_token_id},
            draft_tokens=draft_tokens,
            draft_budget=draft_budget,
        )
        assert got == expected, (draft_tokens, draft_budget)
        decoding = [shape for shape in passes if shape[0] <= len(PROMPTS) and shape[1] <= draft_tokens + 1]
        widest = max(shape[1] for shape in decoding)
        if draft_tokens:
            assert len(decoding) < max(len(reply) for reply in expected) - 1, "drafts should save passes"
            assert widest <= draft_tokens + 1
            # a pass computes at most the budget's tokens, or one per row when the rows alone fill it
            assert all(rows * width <= max(draft_budget, rows) for rows, width in decoding)
        else:
            assert widest == 1


def test_dropping_holes_keeps_each_rows_positions_right_aligned():
    layer = _growing_layer_class()(limit=4)
    torch.manual_seed(0)
    keys = torch.randn(2, 1, 140, 3)
    layer.update(keys, keys + 1)
    mask = torch.ones(2, 140, dtype=torch.long)
    mask[0, :70] = 0  # row 0 keeps its last 70 positions
    mask[1, 1::2] = 0  # row 1 keeps every other one: 70 positions
    mask[1, 139] = 1  # and the last: 71 kept, 69 holes (at least 64 and a quarter of 71)

    class Holder:
        layers = [layer]

    new_mask = _drop_holes(Holder(), mask)
    assert new_mask.shape == (2, 71)
    assert new_mask[0].tolist() == [0] + [1] * 70 and new_mask[1].tolist() == [1] * 71
    assert torch.equal(layer.keys[0, :, 1:], keys[0, :, 70:])
    assert torch.equal(layer.keys[1], keys[1][:, mask[1].bool()])
    assert torch.equal(layer.values[1], keys[1][:, mask[1].bool()] + 1)
    assert layer.get_seq_length() == 71
    # few holes: the cache is left as it is
    assert _drop_holes(Holder(), new_mask) is new_mask


def test_grouped_head_attention_computes_the_same_logits_and_is_undone(tiny):
    """The model attends through the registered grouped-head sdpa inside the block and through
    sdpa after it; the registry's own `sdpa` is never replaced, so other models are untouched."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from peftlab.run.generate import GROUPED_SDPA

    model, tokenizer = tiny
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    tokenizer.padding_side = "left"
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    assert not batch["attention_mask"].all(), "the test needs a masked, several-token query"
    plain = model(**batch).logits
    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    with grouped_head_attention(model):
        assert model.config._attn_implementation == GROUPED_SDPA
        assert ALL_ATTENTION_FUNCTIONS["sdpa"] is original
        grouped = model(**batch).logits
    assert model.config._attn_implementation == "sdpa"
    real = batch["attention_mask"].bool()
    assert torch.equal(grouped[real], plain[real])


def test_grouped_head_attention_leaves_other_implementations_alone(tiny):
    model, _ = tiny
    model.set_attn_implementation("eager")
    try:
        with grouped_head_attention(model):
            assert model.config._attn_implementation == "eager"
    finally:
        model.set_attn_implementation("sdpa")


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"layer_types": ["full_attention", "sliding_attention"], "sliding_window": 8, "use_sliding_window": True},
         "full_attention, sliding_attention"),
        ({"layer_types": ["sliding_attention", "sliding_attention"], "sliding_window": 8, "use_sliding_window": True},
         "sliding_attention"),
    ],
)  # fmt: skip
def test_the_batched_decoder_refuses_sliding_window_and_hybrid_attention(changes, words):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from peftlab.run.generate import UnsupportedAttentionError, check_supported_attention

    config = Qwen3Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, **changes,
    )  # fmt: skip
    model = Qwen3ForCausalLM(config)
    with pytest.raises(UnsupportedAttentionError, match=f"full causal attention in every layer; qwen3 uses {words}"):
        check_supported_attention(model)
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(UnsupportedAttentionError):
        greedy_decode(model, ids, torch.ones_like(ids), max_new_tokens=2, eos_ids=set())
    check_supported_attention(Qwen3ForCausalLM(Qwen3Config(**{**config.to_dict(), **FULL})))


FULL = {"layer_types": ["full_attention", "full_attention"], "use_sliding_window": False, "sliding_window": None}
