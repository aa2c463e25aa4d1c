"""Versioned prompt templates beside their JSON output schemas, and the message builders.

Two call layouts (the run param `call_layout`), both laid out for server-side prefix
caching (vLLM reuses the KV cache of a prompt's longest previously seen prefix):

- `method`, the paper's calls: one filter, one classify, one generate per persona and one
  verify per pair. Each task's fixed instructions come first (system), then the few-shot
  demonstrations (drawn per document, as the method's reference draws them per call), then
  the document; the persona or pair, which varies between calls on the same document,
  comes last, so a task's calls on one document share the prefix up to the end of the
  document.
- `fused`: one filter+classify call, one generate call for all personas and one verify
  call for all pairs of a document. Every call starts with the same system preamble and
  the document, and the task comes after it, so all three calls of a document share
  that prefix: the server reads each document once.

Untrusted text is fenced in tags, and closing tags inside it are neutralised so a
document cannot end its own fence.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template

from webscale_rl.answer_policy import AnswerPolicy

DOMAINS: tuple[str, ...] = (
    "Math",
    "Technology & Engineering",
    "Coding",
    "Social Science",
    "Natural Science",
    "Travel & Lifestyle",
    "Commerce & Economics",
    "Medicine & Health",
    "Education",
    "Other",
)
FENCE_TAGS = (
    "document",
    "persona",
    "question",
    "answer",
    "material",
    "example",
    "examples",
    "output",
)


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    template: str
    schema_json: str

    @property
    def prompt_id(self) -> str:
        return f"{self.name}.{self.version}"

    @property
    def schema(self) -> dict:
        return json.loads(self.schema_json)

    def system(self, **values) -> str:
        return Template(self.template).substitute(values)


# The version each prompt is used at (a template's text changed = a new version: the
# ledger records prompt ids). generate v2: the answer-length policy is a placeholder.
CURRENT_VERSIONS = {"generate": "v2", "generate_pairs": "v2"}


@lru_cache(maxsize=None)
def load(name: str, version: str | None = None) -> Prompt:
    version = version or CURRENT_VERSIONS.get(name, "v1")
    base = resources.files(__package__)
    template = (base / f"{name}.{version}.txt").read_text(encoding="utf-8")
    schema = (base / f"{name}.{version}.schema.json").read_text(encoding="utf-8")
    json.loads(schema)  # fail at load, not at the first call, on a broken schema file
    return Prompt(name, version, template, schema)


_OUR_TAG = re.compile(rf"<\s*(/?)\s*({'|'.join(FENCE_TAGS)})\s*>", re.I)


def fence(tag: str, text: str) -> str:
    """Wrap untrusted text in <tag>…</tag>, defusing any of our tags inside it, in any case
    and spacing (</Document >, < /document>): each becomes "</ tag>" or "< tag>"."""
    text = _OUR_TAG.sub(lambda m: f"<{m.group(1)} {m.group(2)}>", text)
    return f"<{tag}>\n{text}\n</{tag}>"


@lru_cache(maxsize=None)
def _text(filename: str) -> str:
    return (resources.files(__package__) / filename).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def demo_library() -> tuple[dict, ...]:
    text = (resources.files(__package__) / "demos.jsonl").read_text(encoding="utf-8")
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


DEMO_SELECTIONS = ("per_document", "per_domain")


def demos_for(domain: str, k: int, doc_id: str | None = None) -> list[dict]:
    """K demonstrations from the domain's library, drawn deterministically: per document
    (`doc_id` given: a different draw for each document, the same on a re-run, as the
    method's reference draws two at random for each call) or, without `doc_id`, one draw
    for the whole domain (every document then shows the same demonstrations)."""
    key = domain if doc_id is None else f"{domain}|{doc_id}"
    pool = [d for d in demo_library() if d["domain"] == domain]
    pool.sort(key=lambda d: hashlib.sha256(f"{key}|{d['id']}".encode()).hexdigest())
    return pool[:k]


def _examples_block(demos: list[dict]) -> str:
    if not demos:
        return ""
    parts = []
    for d in demos:
        output = json.dumps({"question": d["question"], "answer": d["answer"]}, ensure_ascii=False)
        parts.append(
            "<example>\n"
            + fence("material", d["material"])
            + "\n"
            + fence("persona", d["persona"])
            + f"\n<output>{output}</output>\n</example>"
        )
    return "<examples>\n" + "\n".join(parts) + "\n</examples>\n\n"


def filter_messages(text: str) -> list[dict]:
    return [
        {"role": "system", "content": load("llm_filter").system()},
        {"role": "user", "content": fence("document", text)},
    ]


def classify_messages(text: str, max_personas: int) -> list[dict]:
    return [
        {"role": "system", "content": load("classify").system(max_personas=max_personas)},
        {"role": "user", "content": fence("document", text)},
    ]


def classify_schema(max_personas: int) -> dict:
    schema = load("classify").schema
    schema["properties"]["personas"]["maxItems"] = max_personas
    return schema


def generate_messages(
    text: str, persona: str, demos: list[dict], policy: AnswerPolicy
) -> list[dict]:
    return [
        {"role": "system", "content": load("generate").system(**policy.prompt_values())},
        {
            "role": "user",
            "content": _examples_block(demos)
            + fence("document", text)
            + "\n\n"
            + fence("persona", persona),
        },
    ]


def verify_messages(text: str, question: str, answer: str) -> list[dict]:
    return [
        {"role": "system", "content": load("verify").system()},
        {
            "role": "user",
            "content": fence("document", text)
            + "\n\n"
            + fence("question", question)
            + "\n\n"
            + fence("answer", answer),
        },
    ]


# --- the fused layout: system preamble + document first, the task after it ---------------


def _document_first(text: str, task: str) -> list[dict]:
    return [
        {"role": "system", "content": _text("fused_system.v1.txt")},
        {"role": "user", "content": fence("document", text) + "\n\n" + task},
    ]


def filter_classify_messages(text: str, max_personas: int) -> list[dict]:
    return _document_first(text, load("filter_classify").system(max_personas=max_personas))


def filter_classify_schema(max_personas: int) -> dict:
    schema = load("filter_classify").schema
    schema["properties"]["personas"]["maxItems"] = max_personas
    return schema


def generate_schema(policy: AnswerPolicy) -> dict:
    return policy.constrain_schema(load("generate").schema)


def generate_pairs_messages(
    text: str, personas: list[str], demos: list[dict], policy: AnswerPolicy
) -> list[dict]:
    listed = "\n".join(f"{i + 1}. {p}" for i, p in enumerate(personas))
    task = load("generate_pairs").system(**policy.prompt_values()) + "\n\n" + _examples_block(demos)
    return _document_first(text, task + fence("persona", listed))


def _exactly(name: str, field: str, n: int) -> dict:
    """Prompt `name`'s schema with its list `field` holding exactly `n` items (one per
    persona or pair of the request, matched by position)."""
    schema = load(name).schema
    schema["properties"][field].update(minItems=n, maxItems=n)
    return schema


def generate_pairs_schema(n_personas: int, policy: AnswerPolicy) -> dict:
    return policy.constrain_schema(_exactly("generate_pairs", "pairs", n_personas))


def verify_pairs_messages(text: str, pairs: list[tuple[str, str]]) -> list[dict]:
    listed = "\n\n".join(
        f"Pair {i + 1}:\n" + fence("question", q) + "\n" + fence("answer", a)
        for i, (q, a) in enumerate(pairs)
    )
    return _document_first(text, load("verify_pairs").system() + "\n\n" + listed)


def verify_pairs_schema(n_pairs: int) -> dict:
    return _exactly("verify_pairs", "verdicts", n_pairs)
