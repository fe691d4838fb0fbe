"""Greedy generation: batched for scoring, batch-1 and synchronised for latency."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm


def render_prompts(tokenizer, conversations: list[list[dict]]) -> list[str]:
    """Chat-template each conversation, ending with the assistant's turn. Qwen3's thinking
    is disabled; templates without that switch ignore it."""
    return [
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
        for messages in conversations
    ]


def _greedy_kwargs(tokenizer, max_new_tokens: int) -> dict:
    return dict(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )


def first_box_closed(tokenizer) -> Callable[[list[int]], bool]:
    """A stop rule for `greedy_decode`: the reply so far holds a closed `\\boxed{...}`. Only a
    token whose text contains `}` can close one, so only those steps decode the reply."""
    closing = {
        index for token, index in tokenizer.get_vocab().items() if "}" in tokenizer.convert_tokens_to_string([token])
    }
    closed_box = re.compile(r"\\boxed\{.*?\}", re.DOTALL)

    def stop(sequence: list[int]) -> bool:
        return sequence[-1] in closing and bool(closed_box.search(tokenizer.decode(sequence)))

    return stop


def eos_token_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _count_generated(new_tokens: list[int], eos_ids: set[int]) -> int:
    """Tokens the model produced: up to and including the first end-of-sequence token."""
    for index, token in enumerate(new_tokens):
        if token in eos_ids:
            return index + 1
    return len(new_tokens)


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cache_keyword(model) -> str:
    import inspect

    forward = getattr(model, "forward", model)
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def _growing_layer_class():
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A decode cache layer whose keys and values live in buffers with room to spare: a step
        writes its token in place and attention reads a view of the filled part. `DynamicLayer`
        instead copies the whole cache into a new tensor (`torch.cat`) at every step, which for
        long replies moves more memory than the step's matrix products read. The buffers grow
        by doubling (up to `limit`), so a step copies the cache only when it is full."""

        def __init__(self, limit: int):
            super().__init__()
            self.limit, self.length = limit, 0
            self.key_buffer = self.value_buffer = None

        @classmethod
        def reserved(cls, batch: int, keys, values, limit: int):
            """A layer for `batch` rows with `limit` positions allocated up front (zeros: a
            left-pad position must hold finite values, as attention masks it by weight 0)."""
            layer = cls(limit)
            layer.device, layer.is_initialized = keys.device, True
            layer.key_buffer = keys.new_zeros((batch, keys.shape[1], limit, keys.shape[-1]))
            layer.value_buffer = values.new_zeros((batch, values.shape[1], limit, values.shape[-1]))
            return layer

        def _view_filled(self) -> None:
            """Attention reads `keys` and `values`: views of the buffers' filled part."""
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]

        def write_row(self, row: int, pad: int, keys, values) -> None:
            """Place one prompt's keys and values (heads x tokens x dim) after its `pad` left-pad positions."""
            end = pad + keys.shape[-2]
            self.key_buffer[row, :, pad:end] = keys
            self.value_buffer[row, :, pad:end] = values
            self.length = max(self.length, end)
            self._view_filled()

        def _room(self, needed: int) -> None:
            capacity = 0 if self.key_buffer is None else self.key_buffer.shape[-2]
            if needed <= capacity:
                return
            # doubling, capped at `limit` while the need fits it; a cache holding draft holes
            # (`greedy_decode`) may outgrow `limit`, and then keeps doubling
            size = max(needed, min(2 * capacity, self.limit)) if needed <= self.limit else max(needed, 2 * capacity)
            for name in ("key_buffer", "value_buffer"):
                old = getattr(self, name)
                new = old.new_empty((*old.shape[:2], size, old.shape[-1]))
                new[:, :, : self.length] = old[:, :, : self.length]
                setattr(self, name, new)

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.device, self.is_initialized = key_states.device, True
                self.key_buffer = key_states.new_empty((*key_states.shape[:2], 0, key_states.shape[-1]))
                self.value_buffer = value_states.new_empty((*value_states.shape[:2], 0, value_states.shape[-1]))
            end = self.length + key_states.shape[-2]
            self._room(end)
            self.key_buffer[:, :, self.length : end] = key_states
            self.value_buffer[:, :, self.length : end] = value_states
            self.length = end
            self._view_filled()
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if not self.length:
                return
            rows = indices.tolist()
            if all(source == row or source >= len(rows) for row, source in enumerate(rows)):
                # rows kept in place, or refilled from beyond the new batch (`_keep_rows`): copy only
                # the moved rows, then view the first len(rows)
                for row, source in enumerate(rows):
                    if source != row:
                        self.key_buffer[row, :, : self.length] = self.key_buffer[source, :, : self.length]
                        self.value_buffer[row, :, : self.length] = self.value_buffer[source, :, : self.length]
                self.key_buffer, self.value_buffer = self.key_buffer[: len(rows)], self.value_buffer[: len(rows)]
            else:
                # only the filled part is copied (an untouched buffer tail costs no memory)
                for name in ("key_buffer", "value_buffer"):
                    old = getattr(self, name)
                    new = old.new_empty((len(indices), *old.shape[1:]))
                    new[:, :, : self.length] = old[indices, :, : self.length]
                    setattr(self, name, new)
            self._view_filled()

        def gather_positions(self, columns: torch.Tensor) -> None:
            """Keep, per row, the positions `columns` (rows x new length) names, in that order:
            `greedy_decode` drops rejected draft positions this way."""
            index = columns[:, None, :, None]
            for name in ("key_buffer", "value_buffer"):
                old = getattr(self, name)[:, :, : self.length]
                gathered = old.gather(2, index.expand(-1, old.shape[1], -1, old.shape[-1]))
                new = old.new_empty((*old.shape[:2], max(columns.shape[1], self.limit), old.shape[-1]))
                new[:, :, : columns.shape[1]] = gathered
                setattr(self, name, new)
            self.length = columns.shape[1]
            self._view_filled()

    return GrowingLayer


def shared_prefix_length(token_lists: list[list[int]]) -> int:
    """Tokens every prompt starts with (system prompt and chat template), at most one less
    than the shortest prompt, so that each prompt keeps a token of its own to compute."""
    if len(token_lists) < 2:
        return 0
    first, limit = token_lists[0], min(len(ids) for ids in token_lists) - 1
    length = 0
    while length < limit and all(ids[length] == first[length] for ids in token_lists):
        length += 1
    return length


def prefix_cache(model, prefix_ids: torch.Tensor, cache_keyword: str | None = None):
    """The KV cache of a prefix (1 x tokens) that many prompts share: computed once, it is
    extended by each prompt's own tokens (`_prefill`), so the shared tokens go through the
    model once per batch of prompts instead of once per prompt. Causal attention makes a
    prefix's keys and values independent of what follows it."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    if prefix_ids.shape[-1]:
        model(input_ids=prefix_ids, use_cache=True, logits_to_keep=1, **{cache_keyword or _cache_keyword(model): cache})
    return cache


# Prompt tokens after the shared prefix computed in one forward pass when scoring. A forward pass
# reads every weight whatever its width, so short prompts gain most: on the demo's 64 items per
# task (SmolLM2-135M, 2 CPU cores, float32), per-prompt passes against 1024-token groups took
# ARC 13.4 s -> 10.2 s, OpenMath 16.6 s -> 13.7 s and SQuAD v2 30.9 s -> 31.6 s (its prompts
# already fill a pass); 2048 was no faster than 1024, and a wider pass holds more activations.
PREFILL_TOKENS = 1024


def _expanded(model, prefix, rows: int):
    """A fresh cache for `rows` prompts that all start with the shared prefix (`prefix_cache`):
    the prefix's keys and values are broadcast, not copied; the first update concatenates them
    into new tensors, so the shared prefix itself is never written to."""
    from transformers import DynamicCache

    own = DynamicCache(config=model.config)
    if prefix is not None:
        for index, layer in enumerate(prefix.layers):
            if layer.keys is not None and layer.keys.numel():
                own.update(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1), index)
    return own


def _prefill_groups(lengths: list[int], shared: int, budget: int) -> list[list[int]]:
    """Consecutive rows whose own tokens (after the shared prefix), padded to the group's
    longest, fit `budget` tokens: one forward pass per group. Without a shared prefix every
    row is its own group (a left-pad position would then attend to nothing at all)."""
    if not shared:
        return [[row] for row in range(len(lengths))]
    groups: list[list[int]] = []
    for row in range(len(lengths)):
        if groups and max(lengths[r] - shared for r in groups[-1] + [row]) * (len(groups[-1]) + 1) <= budget:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _unpadded(tensor, shared: int, pad: int):
    """One row's keys or values (heads x positions x dim) without the `pad` positions that
    follow its `shared` prefix positions."""
    if not pad:
        return tensor
    return torch.cat([tensor[:, :shared], tensor[:, shared + pad :]], dim=-2)


def _row_caches(model, input_ids, attention_mask, cache_keyword: str, prefix, budget: int):
    """Each prompt's keys and values (per layer: heads x tokens x dim, no pad position) and
    last logits, in row order. Prompts are computed in groups (`_prefill_groups`): the group's
    own tokens left-padded after the shared prefix, in one forward pass whose attention mask
    hides the pad positions and whose position ids count each prompt's tokens as a prompt
    computed alone would; the pad positions are then cut out of each row's keys and values."""
    shared = 0 if prefix is None else prefix.get_seq_length()
    reals = [ids[mask.bool()] for ids, mask in zip(input_ids, attention_mask)]
    for group in _prefill_groups([len(real) for real in reals], shared, budget):
        owns = [reals[row][shared:] for row in group]
        width = max(len(own) for own in owns)
        ids = input_ids.new_zeros((len(group), width))
        mask = attention_mask.new_zeros((len(group), shared + width))
        mask[:, :shared] = 1
        positions = torch.full_like(ids, shared)
        for index, own in enumerate(owns):
            ids[index, width - len(own) :] = own
            mask[index, shared + width - len(own) :] = 1
            positions[index, width - len(own) :] = torch.arange(shared, shared + len(own), device=ids.device)
        cache = _expanded(model, prefix, len(group))
        output = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{cache_keyword: cache},
        )
        for index, (row, own) in enumerate(zip(group, owns)):
            yield (
                row,
                [_unpadded(layer.keys[index], shared, width - len(own)) for layer in cache.layers],
                [_unpadded(layer.values[index], shared, width - len(own)) for layer in cache.layers],
                output.logits[index : index + 1, -1, :],
            )
        del cache, output


def _prefill(
    model,
    input_ids,
    attention_mask,
    cache_keyword: str,
    room: int | None = None,
    prefix=None,
    prefill_tokens: int = PREFILL_TOKENS,
):
    """The prompts' KV caches (`_row_caches`: no pad token through the model beyond a group's
    own), left-padded into one batch cache. Returns the cache and each prompt's last logits.

    `prefix`: the cache of tokens every prompt of the batch starts with (`prefix_cache`);
    each prompt then computes only the tokens after it, and `prefill_tokens` of those (padded
    to the longest) go through the model in one forward pass. A forward pass reads every
    weight once whatever its width, so short prompts computed together cost little more than
    one of them; 1 computes each prompt on its own.

    `room`: the most tokens the batch cache will hold (prompt width + new tokens); given, the
    cache is one of growing buffers (`_growing_layer_class`) allocated once at that size, and
    each group's cache is copied in and dropped as soon as it is computed, so at most one
    group's own cache exists beside the batch cache (peak memory: the batch cache, not twice
    it). Without `room`, a `DynamicCache` built from all the prompts' caches at the end."""
    from transformers import DynamicCache
    from transformers.cache_utils import Cache

    width = input_ids.shape[1]
    rows = _row_caches(model, input_ids, attention_mask, cache_keyword, prefix, prefill_tokens)
    if room is not None:
        last_logits, layers = [], None
        for row, keys, values, logits in rows:
            if layers is None:
                growing = _growing_layer_class()
                layers = [growing.reserved(len(input_ids), k[None], v[None], room) for k, v in zip(keys, values)]
            for layer, k, v in zip(layers, keys, values):
                layer.write_row(row, width - k.shape[-2], k, v)
            last_logits.append(logits)
        return Cache(layers=layers), torch.cat(last_logits)

    collected = list(rows)

    def left_padded(tensors):
        return torch.cat([torch.nn.functional.pad(t, (0, 0, width - t.shape[-2], 0))[None] for t in tensors])

    cache = DynamicCache(config=model.config)
    for index in range(len(collected[0][1])):
        cache.update(
            left_padded([keys[index] for _, keys, _, _ in collected]),
            left_padded([values[index] for _, _, values, _ in collected]),
            index,
        )
    return cache, torch.cat([logits for *_, logits in collected])


# Draft tokens for a sequence still being written: looked up in its own prompt and reply
# (`NgramDrafter`) and checked in the same forward pass as its next token (`greedy_decode`).
# A reply that rambles to the length cap repeats itself (a list, a sentence over and over, one
# token), so its drafts are accepted and a step writes several tokens; an extractive answer
# copies its context. On the 60 reference-protocol items of the benchmark (untuned
# SmolLM2-135M, 1,000-token cap, 2 CPU cores) six replies run to the cap; drafting 10 tokens
# writes those 6,000 tokens in about 860 steps per row instead of 6,000, and the whole run
# took 63-81 s against 126 s without drafts (settings swept: 6-16 drafts, budgets 24-128;
# all within that range, every reply identical).
DRAFT_TOKENS = 10
# The most tokens (current plus drafts, over all sequences) one decoding step computes. A
# pass reads every weight whatever its width, so drafts are nearly free while few sequences
# remain (batch 1: 11 tokens cost 1.2x one) but cost their share in a wide batch, where most
# are rejected; a wide batch decodes one token per sequence.
DRAFT_BUDGET = 48
NGRAM_SIZES = (3, 2, 1)  # longest match first
# Rejected drafts stay in the cache as hidden positions until they reach this share of the
# longest row's kept positions; then the cache is gathered without them (`_drop_holes`):
# attention then reads fewer positions, for the price of one copy of the cache.
HOLE_SHARE = 0.25


class NgramDrafter:
    """Draft tokens for one sequence from its own history (prompt lookup decoding): the tokens
    that followed the latest earlier occurrence of its last 3 (else 2, else 1) tokens. Where
    that occurrence's continuation reaches the sequence's end, the draft repeats it, so a loop
    of period p drafts whole periods. The index is updated as tokens arrive (one dictionary
    write per n-gram size), so a draft costs a few lookups, not a scan."""

    def __init__(self, tokens: list[int], sizes: tuple[int, ...] = NGRAM_SIZES):
        self.sizes, self.tokens = sizes, []
        self.following: dict[int, dict[tuple, int]] = {n: {} for n in sizes}
        self.extend(tokens)

    def extend(self, tokens) -> None:
        for token in tokens:
            end = len(self.tokens)  # `token`'s position: it follows the n-grams that end before it
            for n in self.sizes:
                if end >= n:
                    self.following[n][tuple(self.tokens[end - n : end])] = end
            self.tokens.append(token)

    def draft(self, count: int) -> list[int]:
        length = len(self.tokens)
        for n in self.sizes:
            if length < n or count < 1:
                continue
            start = self.following[n].get(tuple(self.tokens[length - n :]))
            if start is None:
                continue
            drafted: list[int] = []
            for offset in range(count):
                at = start + offset
                drafted.append(self.tokens[at] if at < length else drafted[at - length])
            return drafted
        return []


def _sdpa_grouped_heads(original):
    """Transformers' sdpa attention, except that on a CPU a query of several tokens under an
    attention mask attends with `enable_gqa` instead of first copying every key and value
    head (`repeat_kv`): the same result, bit for bit, without copying the cache at every
    layer (2 CPU cores, 135M, 600 cached tokens, 32 rows of 2 tokens: 1.39 s -> 0.29 s)."""

    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
        grouped = query.shape[1] != key.shape[1]
        if (
            grouped
            and query.shape[2] > 1
            and attention_mask is not None
            and query.device.type == "cpu"
            and kwargs.get("position_bias") is None
            and kwargs.get("softcap") is None
        ):
            output = torch.nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
            )
            return output.transpose(1, 2).contiguous(), None
        return original(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)

    return attention


# The name the grouped-head sdpa attention is registered under (`AttentionInterface`): a model
# switched to it (`grouped_head_attention`) looks it up by name, every other model keeps `sdpa`.
GROUPED_SDPA = "peftlab_grouped_sdpa"


def _register_grouped_sdpa() -> None:
    """Register the attention and its mask (sdpa's) under `GROUPED_SDPA`: Transformers' supported
    route for a custom attention function, in place of replacing `sdpa` for every model."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GROUPED_SDPA, _sdpa_grouped_heads(sdpa_attention_forward))
    AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)


@contextmanager
def grouped_head_attention(model):
    """Within it, `model` attends through the registered grouped-head sdpa (`_sdpa_grouped_heads`:
    no `repeat_kv` on a CPU); a model on another attention implementation, or one that cannot
    switch (not a Transformers model), is left as it is."""
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if implementation != "sdpa" or not hasattr(model, "set_attn_implementation"):
        yield
        return
    _register_grouped_sdpa()
    model.set_attn_implementation(GROUPED_SDPA)
    try:
        yield
    finally:
        model.set_attn_implementation("sdpa")


def _keep_rows(ended: list[bool]) -> list[int]:
    """The rows of a batch still running, as the new batch's row order: a row that ended is
    refilled by a running row from the batch's end, so the growing cache copies only the moved
    rows (`batch_select_indices`) instead of the whole cache each time a sequence ends."""
    running = len(ended) - sum(ended)
    tail = [row for row in range(running, len(ended)) if not ended[row]]
    return [tail.pop() if ended[row] else row for row in range(running)]


def _draft_width(rows: int, draft_tokens: int, budget: int) -> int:
    """Draft tokens per sequence this step: as many as `budget` tokens over `rows` sequences allow."""
    return max(0, min(draft_tokens, budget // max(rows, 1) - 1))


class UnsupportedAttentionError(ValueError):
    """The decoder's cache holds every position of every layer: a model whose layers attend
    through a sliding window, or mix attention kinds, needs Transformers' own cache."""


def check_supported_attention(model) -> None:
    """Full causal attention in every layer, or an error naming what the model uses instead."""
    config = getattr(model, "config", None)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    if kinds != {"full_attention"} or (window and "layer_types" not in vars(config)):
        name = getattr(config, "model_type", type(model).__name__)
        raise UnsupportedAttentionError(
            f"the batched decoder supports full causal attention in every layer; {name} uses "
            f"{', '.join(sorted(kinds)) if kinds != {'full_attention'} else f'a sliding window of {window} tokens'}: "
            "decode it with Transformers' own generate()"
        )


@torch.inference_mode()
def greedy_decode(
    model,
    input_ids,
    attention_mask,
    *,
    max_new_tokens: int,
    eos_ids: set[int],
    stop: Callable[[list[int]], bool] | None = None,
    growing_cache: bool = True,
    prefix=None,
    prefill_tokens: int = PREFILL_TOKENS,
    draft_tokens: int = DRAFT_TOKENS,
    draft_budget: int = DRAFT_BUDGET,
) -> list[list[int]]:
    """Greedy decoding of a left-padded batch that drops each sequence from the batch as soon
    as it has ended (end-of-sequence token, `max_new_tokens`, or `stop`).

    `generate()` keeps computing a finished sequence as padding until the longest one in its
    batch ends; with the reference's `max_new_tokens=1000` one rambling reply would make the
    whole batch run 1000 full-width steps. Here the batch, its attention mask and its KV
    cache shrink instead, so every step computes only sequences still being written; the
    prompts' own tokens are computed in groups after their shared prefix (`_prefill`), each
    position attending only to its own prompt.
    The tokens are those of `generate(do_sample=False)`: the same argmax over the same
    logits, with positions counted from each sequence's first real token as `generate()` does.

    Drafts (`draft_tokens` per sequence, 0 for none): once few sequences remain
    (`draft_budget` tokens per step at most), each sequence's next token is computed together
    with up to `draft_tokens` tokens drafted from its own text (`NgramDrafter`). The model's
    argmax at each position checks the draft: the tokens up to the first mismatch are kept,
    plus the model's own token at the mismatch, so the reply is the greedy one (to the last
    bits of float arithmetic a several-token pass may round differently) and a step writes
    between 1 and `draft_tokens` + 1 tokens. The rejected positions stay in the cache as holes
    the attention mask hides, until `_drop_holes` gathers the cache without them. Drafts need
    the growing cache.

    `growing_cache` keeps the batch cache in buffers that grow by doubling, written in place
    (`_growing_layer_class`); False uses Transformers' `DynamicCache`, which copies the whole
    cache at every step. Same tokens either way.

    `prefix`: the cache of the tokens every prompt starts with (`prefix_cache`), and
    `prefill_tokens` how many of the prompts' own tokens after it go through the model in one
    forward pass (`_prefill`)."""
    check_supported_attention(model)
    keyword = _cache_keyword(model)
    room = input_ids.shape[1] + max_new_tokens if growing_cache else None
    if not growing_cache:
        draft_tokens = 0
    with grouped_head_attention(model):
        cache, logits = _prefill(model, input_ids, attention_mask, keyword, room, prefix, prefill_tokens)
        next_position = attention_mask.long().sum(-1)
        alive = list(range(input_ids.shape[0]))  # batch row -> input index
        generated: list[list[int]] = [[] for _ in alive]
        drafters = (
            [NgramDrafter(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask)]
            if draft_tokens
            else None
        )
        emitted = [[token] for token in logits.argmax(dim=-1).tolist()]  # per row: tokens written this step
        while True:
            ended = []
            for row, tokens in enumerate(emitted):
                sequence, done = generated[alive[row]], False
                for token in tokens:
                    sequence.append(token)
                    done = token in eos_ids or len(sequence) >= max_new_tokens or bool(stop and stop(sequence))
                    if done:
                        break
                if drafters and not done:
                    drafters[alive[row]].extend(tokens)
                ended.append(done)
            if all(ended):
                break
            if any(ended):
                keep = _keep_rows(ended)
                index = torch.tensor(keep, device=input_ids.device)
                cache.batch_select_indices(index)
                attention_mask, next_position = attention_mask[index], next_position[index]
                alive, emitted = [alive[row] for row in keep], [emitted[row] for row in keep]
            width = _draft_width(len(alive), draft_tokens, draft_budget)
            drafts = [drafters[i].draft(width) for i in alive] if width else [[] for _ in alive]
            width = 1 + max(len(draft) for draft in drafts)
            columns = torch.arange(width, device=input_ids.device)
            step_ids = torch.tensor(
                [[tokens[-1], *draft] + [0] * (width - 1 - len(draft)) for tokens, draft in zip(emitted, drafts)],
                dtype=input_ids.dtype,
                device=input_ids.device,
            )
            drafted = torch.tensor([len(draft) for draft in drafts], device=input_ids.device)
            # a row's current token and its drafts are seen; the fill after a shorter draft is not
            step_mask = (columns <= drafted[:, None]).to(attention_mask.dtype)
            attention_mask = torch.cat([attention_mask, step_mask], dim=-1)
            output = model(
                input_ids=step_ids,
                attention_mask=attention_mask,
                position_ids=next_position[:, None] + columns,
                use_cache=True,
                **{keyword: cache},
            )
            predicted = output.logits.argmax(dim=-1).tolist()
            emitted = []
            for row, draft in enumerate(drafts):
                accepted = 0
                while accepted < len(draft) and draft[accepted] == predicted[row][accepted]:
                    accepted += 1
                emitted.append(predicted[row][: accepted + 1])
            written = torch.tensor([len(tokens) for tokens in emitted], device=input_ids.device)
            next_position = next_position + written
            if width > 1:
                # positions after a row's accepted drafts hold rejected drafts: hidden from now on
                attention_mask[:, -width:] *= (columns < written[:, None]).to(attention_mask.dtype)
                attention_mask = _drop_holes(cache, attention_mask)
    return generated


def _drop_holes(cache, attention_mask):
    """Once the hidden positions of a batch cache (left padding and rejected drafts) reach
    `HOLE_SHARE` of the longest row's kept ones (and 64), keep only the kept ones,
    right-aligned: a gather of the cache that the next `greedy_decode` steps repay by
    attending over fewer positions."""
    kept = attention_mask.sum(-1)
    longest = int(kept.max())
    if attention_mask.shape[1] - longest < max(longest * HOLE_SHARE, 64):
        return attention_mask
    # per row: the kept columns in order, right-aligned; the left fill points at column 0 (masked)
    order = torch.argsort(attention_mask, dim=-1, stable=True)[:, -longest:]
    right_aligned = torch.arange(longest, device=kept.device) >= longest - kept[:, None]
    columns = torch.where(right_aligned, order, 0)
    for layer in cache.layers:
        layer.gather_positions(columns)
    return right_aligned.to(attention_mask.dtype)


@torch.inference_mode()
def generate_batched(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    desc: str = "generate",
    stop_at_first_box: bool = False,
    growing_cache: bool = True,
    share_prefix: bool = True,
    prefill_tokens: int = PREFILL_TOKENS,
    draft_tokens: int = DRAFT_TOKENS,
) -> list[dict]:
    """Replies for all prompts, `batch_size` at a time, left-padded, greedy (`greedy_decode`).
    Prompts are grouped by length (fewer pad tokens) and returned in input order. Each item's
    `seconds` is its share of its batch's wall time (the shared prefix's once-only cost
    included in the first batch's).

    `share_prefix` computes the tokens all prompts start with (a task's system prompt and
    chat template: 30-50 % of the prompt tokens of the three tasks) once for all prompts
    (`prefix_cache`) instead of once per prompt.

    `prefill_tokens`: how many of the prompts' own tokens after the shared prefix are computed
    in one forward pass (`_prefill`).

    `draft_tokens`: tokens drafted from each reply's own text and checked in the pass that
    computes its next token, once few replies remain (`greedy_decode`); 0 drafts none.

    `stop_at_first_box` ends a reply once it holds a closed `\\boxed{...}`: the reference
    scoring reads the first box only, so nothing after it can change that score; the
    corrected scoring reads the last box and must not use it."""
    tokenizer.padding_side = "left"
    eos_ids = eos_token_ids(model, tokenizer)
    stop = first_box_closed(tokenizer) if stop_at_first_box else None
    token_lists = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(token_lists[i]))
    results: list[dict | None] = [None] * len(prompts)
    prefix, prefix_s = None, 0.0
    shared = shared_prefix_length(token_lists) if share_prefix else 0
    if shared:
        sync_device(model.device)
        started = time.perf_counter()
        prefix = prefix_cache(model, torch.tensor([token_lists[0][:shared]], device=model.device))
        sync_device(model.device)
        prefix_s = time.perf_counter() - started
    with tqdm(total=len(prompts), desc=desc, unit="item") as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = tokenizer(
                [prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            sync_device(model.device)
            started = time.perf_counter()
            sequences = greedy_decode(
                model,
                batch["input_ids"],
                batch["attention_mask"],
                max_new_tokens=max_new_tokens,
                eos_ids=eos_ids,
                stop=stop,
                growing_cache=growing_cache,
                prefix=prefix,
                prefill_tokens=prefill_tokens,
                draft_tokens=draft_tokens,
            )
            sync_device(model.device)
            seconds = (time.perf_counter() - started + prefix_s) / len(chunk)
            prefix_s = 0.0
            for index, new in zip(chunk, sequences):
                results[index] = {
                    "reply": tokenizer.decode(new, skip_special_tokens=True),
                    "tokens_generated": len(new),
                    "seconds": seconds,
                }
            bar.update(len(chunk))
    return results


@torch.inference_mode()
def time_single(
    model, tokenizer, prompts: list[str], *, max_new_tokens: int, desc: str = "latency", warm_up: bool = True
) -> list[dict]:
    """One generate() call per prompt after one warm-up call, with device synchronisation:
    the serving latency a user sees for a single request. `warm_up=False` skips the warm-up
    call (a further timing pass right after a warmed one). The warm-up call decodes two tokens:
    it runs the prompt pass and a cached decoding step, the two kinds of step a timed call
    repeats; more tokens would only repeat the second."""
    eos_ids = eos_token_ids(model, tokenizer)
    kwargs = _greedy_kwargs(tokenizer, max_new_tokens)
    if not prompts:
        return []
    if warm_up:
        warm = tokenizer(prompts[0], return_tensors="pt", add_special_tokens=False).to(model.device)
        model.generate(**warm, **{**kwargs, "max_new_tokens": min(2, max_new_tokens)})
    timed = []
    for prompt in tqdm(prompts, desc=desc, unit="item"):
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        sync_device(model.device)
        started = time.perf_counter()
        output = model.generate(**inputs, **kwargs)
        sync_device(model.device)
        seconds = time.perf_counter() - started
        new = output[0, inputs["input_ids"].shape[1] :].tolist()
        n = _count_generated(new, eos_ids)
        timed.append(
            {"reply": tokenizer.decode(new[:n], skip_special_tokens=True), "tokens_generated": n, "seconds": seconds}
        )
    return timed
