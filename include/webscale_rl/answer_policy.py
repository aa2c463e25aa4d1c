"""The one answer-length policy: the run param `max_answer_words` sets what the generate
prompt asks for, the answer's maxLength in the output schemas, verify's rule and the
dataset gate, so the four cannot disagree.

The method asks for answers that are "relatively short and easily verified"; a reward that
matches a final answer against the reference (exactly, numerically or by a judge) works best
on a number, a date, a name or a few words. The character bound follows from the word bound
(CHARS_PER_WORD per word), so a server enforcing the schema cuts an answer where the verifier
would reject it anyway.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from webscale_rl.text import words

# Characters allowed per word: English words average ~5 characters, technical answers carry
# units, version strings and identifiers ("2.4 GHz", "fsync()", "ISO 8601"), so 12 leaves room
# for those without letting a sentence through.
CHARS_PER_WORD = 12


@dataclass(frozen=True)
class AnswerPolicy:
    max_words: int

    def __post_init__(self) -> None:
        if self.max_words < 1:
            raise ValueError(f"max_answer_words must be >= 1, got {self.max_words}")

    @property
    def max_chars(self) -> int:
        return CHARS_PER_WORD * self.max_words

    def violation(self, answer: str) -> str | None:
        """Why the answer is too long for the policy ("N words > M" / "N characters > M"),
        or None when it fits."""
        n_words = len(words(answer))
        if n_words > self.max_words:
            return f"{n_words} words > {self.max_words}"
        n_chars = len(answer.strip())
        if n_chars > self.max_chars:
            return f"{n_chars} characters > {self.max_chars}"
        return None

    def prompt_values(self) -> dict[str, int]:
        """The generate prompts' placeholders."""
        return {"max_answer_words": self.max_words, "max_answer_chars": self.max_chars}

    def constrain_schema(self, schema: dict) -> dict:
        """A copy of an output schema with every `answer` string property's maxLength set to
        the policy's character bound (the pairs' items included)."""
        schema = copy.deepcopy(schema)

        def walk(node) -> None:
            if isinstance(node, dict):
                answer = (node.get("properties") or {}).get("answer")
                if isinstance(answer, dict) and answer.get("type") == "string":
                    answer["maxLength"] = self.max_chars
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(schema)
        return schema

    def describe(self) -> str:
        return (
            f"at most {self.max_words} words and {self.max_chars} characters "
            f"({CHARS_PER_WORD} per word): asked for in the generate prompt, enforced by the "
            "output schema, checked by verify's rule and by the dataset gate"
        )


def from_params(params) -> AnswerPolicy:
    return AnswerPolicy(params.max_answer_words)
