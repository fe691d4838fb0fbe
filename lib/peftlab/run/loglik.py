"""Log-likelihood multiple choice, as lm-evaluation-harness scores `arc_easy` / `arc_challenge`.

No generation and no answer format to parse: each option is scored as a continuation of a
shared prompt, and the model "chooses" the option it finds most likely. A task supplies its
prompt and options (`tasks.arc.multiple_choice`: lm-eval's "Question: ...\nAnswer:"). This reproduces
lm-eval 0.4.x (`HFLM.loglikelihood` on a causal model plus `ConfigurableTask.process_results`
for `output_type: multiple_choice`):

* tokenisation (`TemplateLM._encode_pair`): trailing spaces of the context move to the
  continuation; whole = tok(context + continuation), context_enc = tok(context) and
  continuation_enc = whole[len(context_enc):]. `tok` is the tokenizer's own default (a BOS
  only where the tokenizer adds one), as `HFLM.tok_encode` with `add_bos_token` unset;
* scoring (`HFLM._loglikelihood_tokens`): the model reads (context_enc + continuation_enc)
  minus its last token, left-truncated to the context window, and the continuation tokens'
  log-probabilities are summed;
* `acc` = argmax of the sums; `acc_norm` = argmax of sum / len(option text) in characters, the
  option without the delimiter space (lm-eval's `completion_len`); `acc_bytes` = the same with
  the option's UTF-8 bytes. Ties go to the first option (np.argmax).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

ARC_TARGET_DELIMITER = " "  # lm-eval's target_delimiter: each option is scored as " " + its text


def _tok_encode(tokenizer, text: str) -> list[int]:
    # HFLM.tok_encode: the tokenizer's default special tokens, none if the text already starts with the prefix token.
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    starts_with_prefix = prefix is not None and text.startswith(tokenizer.decode(prefix))
    return tokenizer.encode(text, **({"add_special_tokens": False} if starts_with_prefix else {}))


def _encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    # TemplateLM._encode_pair (causal): split the whole encoding so the boundary token merges as in the full text.
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = _tok_encode(tokenizer, context + continuation)
    context_enc = _tok_encode(tokenizer, context)
    return context_enc, whole[len(context_enc) :]


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first of equals, as np.argmax


def _per_length(loglik: float, length: int) -> float:
    return loglik / length if length else float("-inf")  # an empty option: numpy's negative / 0


def multiple_choice_loglik(
    model,
    tokenizer,
    contexts: list[str],
    choices: list[list[str]],
    *,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "loglik",
    delimiter: str = ARC_TARGET_DELIMITER,
    softmax_dtype: torch.dtype | None = None,
) -> list[dict]:
    """Score each item's options (texts, without the delimiter) as continuations `delimiter + option`
    of its context. Per item: {"loglik": [summed log-prob per option], "choice": argmax (lm-eval
    acc), "choice_norm": argmax per character of the option (acc_norm), "choice_bytes": argmax
    per UTF-8 byte (acc_bytes)}. `softmax_dtype` is HFLM's option of that name (None: the model's dtype)."""
    if len(contexts) != len(choices):
        raise ValueError(f"{len(contexts)} contexts but {len(choices)} choice lists")
    requests = []  # (item, option, context tokens, continuation tokens)
    for item, (context, options) in enumerate(zip(contexts, choices)):
        for option, text in enumerate(options):
            context_enc, continuation_enc = _encode_pair(tokenizer, context, delimiter + text)
            if not continuation_enc:  # lm-eval asserts this too: "Answer: th" + "e" merges into the context's tokens
                raise ValueError(f"item {item} option {option}: {delimiter + text!r} adds no token to {context!r}")
            requests.append((item, option, context_enc, continuation_enc))
    # Longest first, as lm-eval: similar lengths share a batch, so little padding.
    requests.sort(key=lambda r: -(len(r[2]) + len(r[3])))
    window = getattr(model.config, "max_position_embeddings", None)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    loglik = [[0.0] * len(options) for options in choices]

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(requests), disable=not progress, desc=desc) as bar:
            for start in range(0, len(requests), batch_size):
                batch = requests[start : start + batch_size]
                # The last token is only a target; the window keeps the end (lm-eval truncates from the left).
                inputs = [(c + t)[-(window + 1) if window else 0 :][:-1] for _, _, c, t in batch]
                longest = max(map(len, inputs))
                # Right padding: real tokens keep positions 0..n-1 and, under the causal mask, never see the pads.
                ids = torch.tensor([x + [pad_id] * (longest - len(x)) for x in inputs], device=model.device)
                mask = torch.tensor([[1] * len(x) + [0] * (longest - len(x)) for x in inputs], device=model.device)
                logits = model(input_ids=ids, attention_mask=mask).logits
                for row, ((item, option, _, cont), x) in enumerate(zip(batch, inputs)):
                    # Logits at position p predict token p + 1: the continuation's come from the last len(cont) inputs.
                    scores = torch.log_softmax(logits[row, len(x) - len(cont) : len(x)], dim=-1, dtype=softmax_dtype)
                    targets = torch.tensor(cont, device=scores.device).unsqueeze(-1)
                    loglik[item][option] = float(scores.gather(-1, targets).sum())
                bar.update(len(batch))
    finally:
        model.train(was_training)

    results = []
    for lls, options in zip(loglik, choices):
        chars = [_per_length(ll, len(text)) for ll, text in zip(lls, options)]
        utf8 = [_per_length(ll, len(text.encode("utf-8"))) for ll, text in zip(lls, options)]
        results.append(
            {"loglik": lls, "choice": _argmax(lls), "choice_norm": _argmax(chars), "choice_bytes": _argmax(utf8)}
        )
    return results
