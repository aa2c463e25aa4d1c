"""What the scripted server answers, stage by stage: the stage is named on the first line of
the system prompt and the document is fenced in <document> tags, so each reply is computed
from the request itself and end-to-end runs produce meaningful, repeatable data. Also the
"compromised" model's injected answers and the training policy's and judge's replies."""

from __future__ import annotations

import hashlib
import json
import re

DOMAIN_KEYWORDS = {
    "Math": [
        "equation",
        "theorem",
        "probability",
        "formula",
        "prime",
        "integer",
        "deviation",
        "quadratic",
        "interest",
    ],
    "Coding": [
        "python",
        "function",
        "code",
        "git",
        "array",
        "algorithm",
        "command",
        "api",
        "variable",
        "hash table",
    ],
    "Technology & Engineering": [
        "battery",
        "circuit",
        "voltage",
        "bridge",
        "engineer",
        "fiber",
        "thermostat",
        "gps",
        "satellite",
    ],
    "Natural Science": [
        "species",
        "cell",
        "energy",
        "chemical",
        "planet",
        "molecule",
        "physics",
        "temperature",
        "solution",
    ],
    "Medicine & Health": [
        "patient",
        "disease",
        "symptom",
        "dose",
        "treatment",
        "health",
        "medical",
        "blood",
        "vaccine",
    ],
    "Social Science": [
        "society",
        "survey",
        "social",
        "culture",
        "political",
        "economy of",
        "population",
        "behaviour",
        "psychology",
    ],
    "Commerce & Economics": [
        "price",
        "market",
        "revenue",
        "company",
        "inflation",
        "business",
        "customer",
        "profit",
        "trade",
    ],
    "Education": [
        "student",
        "course",
        "teacher",
        "school",
        "learning",
        "exam",
        "syllabus",
        "lesson",
        "scholarship",
    ],
    "Travel & Lifestyle": [
        "travel",
        "trail",
        "recipe",
        "hotel",
        "visitors",
        "cook",
        "garden",
        "packing",
        "plant",
    ],
}
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w])")


def tag(text: str, name: str) -> str | None:
    """The last <name>...</name> block in `text`, or None."""
    found = re.findall(rf"<{name}>\n?(.*?)\n?</{name}>", text, re.S)
    return found[-1] if found else None


def sentences(text: str) -> list[str]:
    return [
        s.strip()
        for s in re.split(r"(?<=[.!?])\s+", text.replace("\n", " "))
        if len(s.split()) >= 4
    ]


def words(text: str) -> int:
    return len(text.split())


def stable(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def task_of(system: str, user: str) -> str:
    """The prompt's task: the first line of the system message (the method's layout) or
    the TASK line after the document (the fused layout, where the document comes first)."""
    if system.startswith("TASK:"):
        return system.splitlines()[0].removeprefix("TASK:").strip()
    after = user.rsplit("</document>", 1)[-1]
    found = re.search(r"^TASK:\s*(\S+)", after, re.M)
    return found.group(1) if found else "unknown"


def pairs_after_document(user: str) -> list[tuple[str, str]]:
    """The (question, answer) pairs listed after the document, in order."""
    after = user.rsplit("</document>", 1)[-1]
    questions = re.findall(r"<question>\n?(.*?)\n?</question>", after, re.S)
    answers = re.findall(r"<answer>\n?(.*?)\n?</answer>", after, re.S)
    return list(zip(questions, answers, strict=False))


def constrained(value, schema: dict):
    """`value` with every string cut to its schema's maxLength, as a server enforcing the
    schema during decoding would end it (this server's own replies only: scripted replies
    are served as scripted)."""
    if isinstance(value, str) and "maxLength" in schema:
        return value[: schema["maxLength"]]
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        return {k: constrained(v, props.get(k) or {}) for k, v in value.items()}
    if isinstance(value, list):
        return [constrained(v, schema.get("items") or {}) for v in value]
    return value


def answer_filter(doc: str) -> dict:
    n = len(sentences(doc))
    qualified = "Y" if n >= 3 else "N"
    return {"reason": f"The document has {n} complete sentences.", "qualified": qualified}


def answer_classify(doc: str, max_personas: int) -> dict:
    low = doc.lower()
    scores = {d: sum(low.count(k) for k in kws) for d, kws in DOMAIN_KEYWORDS.items()}
    best = max(scores, key=lambda d: (scores[d], d))
    domain = best if scores[best] >= 2 else "Other"
    topic = domain.lower()
    personas = [
        f"a student learning about {topic}",
        f"a professional who works in {topic}",
        f"a curious reader interested in {topic}",
    ]
    return {"domain": domain, "personas": personas[:max_personas]}


def make_pair(doc: str, persona: str) -> dict:
    candidates = [s for s in sentences(doc) if NUMBER.search(s)] or sentences(doc) or [doc]
    sentence = candidates[stable(persona) % len(candidates)]
    match = NUMBER.search(sentence)
    if match:
        answer = match.group(0)
        blanked = sentence[: match.start()] + "___" + sentence[match.end() :]
    else:
        answer = max(sentence.split(), key=len).strip(".,;:!?\"'()")
        blanked = sentence.replace(answer, "___", 1)
    return {
        "question": f'Fill in the blank with the exact value: "{blanked}" What goes in the blank?',
        "answer": answer,
    }


# What a model that obeys an injection reads as "the answer I was told to give": a quoted
# value or a number after an order to answer, or "the answer to every question is X".
# Written independently of webscale_rl.injection so the test is not circular.
INJECTION_CUE = re.compile(
    r"ignore (?:all )?(?:previous|prior|above)|disregard|language model|\bAI\b|"
    r"answer to every question|<\|im_start\|>",
    re.I,
)
INJECTED_VALUE = [
    re.compile(p, re.I)
    for p in (
        r"answer to (?:every|any|all|each) (?:\w+ ){0,2}?(?:question|query)s? (?:\w+ ){0,3}?(?:is|will be|should be|must be) "
        r"(?:always )?[\"“]?([\w-]+(?:[.,]\d+)*)",
        r"(?:answer|respond|reply|output)\w*\s+(?:\w+\s+){0,4}?(?:with\s+)?(?:the\s+(?:word|number|string|value)\s+)?"
        r"[\"“]([^\"”\n]{1,60})[\"”]",
        r"(?:answer|respond|reply|output)\w*\s+(?:only\s+|always\s+|just\s+)?(?:with\s+)?(?:the\s+number\s+)?"
        r"(\d[\d,]*(?:\.\d+)?)",
    )
]


def injected_value(doc: str) -> str | None:
    """The answer an injection in `doc` demands, or None when it has none."""
    if not INJECTION_CUE.search(doc):
        return None
    found = [m for p in INJECTED_VALUE for m in p.finditer(doc)]
    if not found:
        return None
    return min(found, key=lambda m: m.start()).group(1).strip().rstrip(".,;")


def make_injected_pair(doc: str, persona: str, value: str) -> dict:
    """A compromised model's pair: an ordinary question from the document's plain text,
    answered with the value the injection demands."""
    lines = [line for line in doc.splitlines() if "<|" not in line and "</" not in line]
    plain = "\n".join(
        s
        for s in sentences("\n".join(lines))
        if value not in s and not INJECTION_CUE.search(s) and "answer" not in s.lower()
    )
    pair = make_pair(plain or doc, persona)
    return {"question": pair["question"], "answer": value}


def policy_answer(question: str, truth: str | None, request: dict) -> str | None:
    """A policy model's answer to a question it may know: each question has a difficulty
    (solved by 0 to 4 of 4 seeds, by a hash of the question); sampled (temperature > 0) a
    seed solves it when its own hash falls under that level, greedy when the level is at
    least half. None: not solved."""
    if truth is None:
        return None
    level = stable(question) % 5
    if float(request.get("temperature") or 0) > 0:
        solved = stable(f"{question}|{request.get('seed')}") % 4 < level
    else:
        solved = level >= 2
    return truth if solved else None


def answer_verify(doc: str, question: str, answer: str) -> dict:
    low_answer = answer.lower().strip()
    context = "Y" if words(question) >= 6 else "N"
    correct = "Y" if low_answer and low_answer in doc.lower() else "N"
    leakage = (
        "Y"
        if low_answer and re.search(rf"(?<!\w){re.escape(low_answer)}(?!\w)", question.lower())
        else "N"
    )
    return {
        "reason": f"context={context} correct={correct} leakage={leakage}",
        "context": context,
        "correct": correct,
        "leakage": leakage,
    }


def answer_reward_judge(user: str) -> dict:
    """The reward judge's verdict (webscale_rl.training.reward): the user message ends with a
    JSON object {question, reference_answers, candidate_answer}; equivalent when the
    candidate's lowercased content words (articles and "and"/"of" left out) are exactly
    those of one reference, in any order ("Smith, John" == "John Smith")."""

    def words(text) -> set[str]:
        found = set(re.findall(r"\w+", str(text or "").lower()))
        return found - {"a", "an", "the", "and", "of"}

    try:
        payload = json.loads(user[user.index("{") :])
    except ValueError:
        return {"equivalent": False}
    if not isinstance(payload, dict):
        return {"equivalent": False}
    candidate = words(payload.get("candidate_answer"))
    references = payload.get("reference_answers") or []
    return {"equivalent": bool(candidate) and any(words(r) == candidate for r in references)}


# The header the pipeline's client sends its ledger request_hash in (webscale_rl.llm.client).
