"""How a task's row becomes chat messages, for training and for evaluation, per protocol.

`reference` reproduces the reference study on purpose: it trains on the bare answer with
no system prompt, evaluates with a system prompt demanding `\\boxed{}`, places the system
message after the user message, and glues the SQuAD context straight onto the question.
`corrected` trains on exactly the messages evaluation sends (system first, `\\boxed{}`
targets), so a fine-tuned model is scored on the format it learned.
"""

from __future__ import annotations

SYSTEM_PROMPTS = {  # the reference study's prompts, verbatim
    "arc": (
        "You are taking a multiple-choice test.\n"
        "Each question will have exactly 4 options: A, B, C or D.\n"
        "Read the question and choose the correct answer.\n"
        "Output only the letter of the correct answer inside \\boxed{}, like this: \\boxed{C}"
    ),
    "squad_v2": (
        "You are answering a question based on a passage.\n"
        "Read the context carefully and provide the exact answer span from the passage.\n"
        "Do not add extra words or explanations.\n"
        "Output your answer inside \\boxed{}, like this: \\boxed{Einstein}"
    ),
    "openmath": (
        "You are solving math problems.\n"
        "Read each problem carefully and provide only the final numeric answer.\n"
        "Output your answer inside \\boxed{}, like this: \\boxed{42}\n"
        "Do not include any explanation or intermediate steps."
    ),
}
# The corrected protocol says what to write for an unanswerable SQuAD v2 question.
UNANSWERABLE_HINT = "\nIf the passage does not contain the answer, output \\boxed{unanswerable}."
UNANSWERABLE = "unanswerable"


def system_prompt(task: str, protocol: str) -> str:
    if task == "squad_v2" and protocol == "corrected":
        return SYSTEM_PROMPTS[task] + UNANSWERABLE_HINT
    return SYSTEM_PROMPTS[task]


def user_content(task: str, row: dict, protocol: str) -> str:
    if task == "squad_v2":
        if protocol == "reference":
            return row["question"] + row["context"]  # as the reference code did: no separator
        return f"Passage: {row['context']}\n\nQuestion: {row['question']}"
    return row["question"]


def gold(task: str, row: dict):
    """The value scoring compares against: a label, a number, or the list of gold spans."""
    return row["answers"] if task == "squad_v2" else row["answer"]


def _format_number(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def target(task: str, row: dict, protocol: str) -> str:
    """The assistant message a training row teaches."""
    if protocol == "reference":  # the bare answer, as the reference study stored it
        if task == "squad_v2":
            return row["answers"][0] if row["answers"] else ""
        return str(row["answer"])  # OpenMath answers are floats there: "45.0"
    if task == "squad_v2":
        answer = row["answers"][0] if row["answers"] else UNANSWERABLE
    elif task == "openmath":
        answer = _format_number(row["answer"])
    else:
        answer = row["answer"]
    return f"\\boxed{{{answer}}}"


def eval_messages(task: str, row: dict, protocol: str) -> list[dict]:
    user = {"role": "user", "content": user_content(task, row, protocol)}
    system = {"role": "system", "content": system_prompt(task, protocol)}
    return [user, system] if protocol == "reference" else [system, user]


def train_example(task: str, row: dict, protocol: str) -> dict:
    """A TRL prompt-completion row (conversational); TRL puts the loss on the completion only."""
    if protocol == "reference":
        prompt = [{"role": "user", "content": user_content(task, row, protocol)}]
    else:
        prompt = eval_messages(task, row, protocol)
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": target(task, row, protocol)}]}
