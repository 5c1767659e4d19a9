"""Scorers: (the model's answer, the example) → a score in [0, 1]; 1.0 counts as correct.

Pure functions (HumanEval's runs the code in ``nrt.sandbox``), one per scoring rule, shared by the built-in
tasks of ``nrt eval`` and the official-format loaders of ``nrt.official``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable

from nrt.data import Example
from nrt.sandbox import humaneval_program, run_program

Scorer = Callable[[str, Example], float]


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, articles and extra spaces (SQuAD-style)."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, example: Example) -> float:
    return float(normalize(prediction) == normalize(example.answer))


def choice_letter(prediction: str, example: Example) -> float:
    """The first standalone capital letter of the prediction ("B", "(B)", "B. text", "Answer: B")."""
    match = re.search(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", prediction)
    return float(bool(match) and match.group(1) == example.answer)


NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(prediction: str, example: Example) -> float:
    numbers = NUMBER.findall(prediction)
    if not numbers:
        return 0.0
    try:
        return float(float(numbers[-1].replace(",", "")) == float(example.answer))
    except ValueError:
        return 0.0


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (braces balanced), or None."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return None


def normalize_math(answer: str) -> str:
    """A short form of Hendrycks' ``strip_string``: spacing, ``\\left``/``\\right``, ``dfrac``, units, ``$``."""
    s = answer.strip().strip("$").strip()
    s = re.sub(r"\\text\{\s*[a-zA-Z ]*\}$", "", s)
    for old, new in [("\\left", ""), ("\\right", ""), ("\\!", ""), ("dfrac", "frac"), ("tfrac", "frac"),
                     ("^\\circ", ""), ("^{\\circ}", ""), ("\\$", ""), ("\\%", ""), ("%", ""), (" ", "")]:
        s = s.replace(old, new)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    if re.fullmatch(r"[a-z]=.+", s):
        s = s.split("=", 1)[1]
    s = s.rstrip(".")
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s


def math_equal(prediction: str, example: Example) -> float:
    predicted = last_boxed(prediction) or prediction
    return float(normalize_math(predicted) == normalize_math(example.answer))


def code_passes(prediction: str, example: Example) -> float:
    """HumanEval: the prediction's code (a fenced block if any) + the tests, run in the sandbox."""
    problem = example.meta["problem"]
    blocks = re.findall(r"```(?:python)?\n(.*?)(?:```|$)", prediction, flags=re.S)
    code = blocks[0] if blocks else prediction
    if f"def {problem['entry_point']}" in code:  # a whole function: run it instead of the prompt's stub
        problem = {**problem, "prompt": ""}
    return float(run_program(humaneval_program(problem, code), timeout=10.0).passed)


def _bag(text: str) -> Counter[str]:
    return Counter(normalize(text).split())


def token_f1(prediction: str, example: Example) -> float:
    """DROP/SQuAD bag-of-words F1, best over the gold answers (1.0 exactly when the bags are equal)."""
    best = 0.0
    for gold in example.meta.get("golds", [example.answer]):
        pred, ref = _bag(prediction), _bag(gold)
        common = sum((pred & ref).values())
        if common:
            precision, recall = common / sum(pred.values()), common / sum(ref.values())
            best = max(best, 2 * precision * recall / (precision + recall))
        elif not pred and not ref:
            best = 1.0
    return best


def contains_answer(prediction: str, example: Example) -> float:
    """PopQA: any accepted answer appears in the prediction (normalised)."""
    text = f" {normalize(prediction)} "
    return float(any(f" {normalize(g)} " in text for g in example.meta["golds"] if normalize(g)))


def instructions_followed(prediction: str, example: Example) -> float:
    """IFEval (strict): the fraction of the prompt's instructions the response follows (1.0 = all).

    The language checks call langdetect, which samples n-grams at random: unseeded, a short English response
    was detected as French one time in twenty, so the same response scored differently between runs."""
    import langdetect
    from if_verifiable import evaluate_output_for_sample
    from if_verifiable.types import IFEvalSample

    langdetect.DetectorFactory.seed = 0

    sample = IFEvalSample(key=example.meta["key"], prompt=example.messages[-1]["content"],
                          instruction_id_list=example.meta["instruction_id_list"], kwargs=example.meta["kwargs"])
    _, scores = evaluate_output_for_sample("ifeval", sample, prediction)
    return float(scores.partial_strict)


def reasoning_gym_score(prediction: str, example: Example) -> float:
    import reasoning_gym

    entry = example.meta["entry"]
    return float(reasoning_gym.get_score_answer_fn(entry["metadata"]["source_dataset"])(prediction, entry))


def bigbench_score(prediction: str, example: Example) -> float:
    """BIG-bench: the choice letter for multiple-choice examples (``target_scores``), else exact match."""
    entry = example.meta.get("entry", {})
    if isinstance(entry.get("target_scores"), dict) and len(entry["target_scores"]) >= 2:
        return choice_letter(prediction, example)
    return exact_match(prediction, example)
