"""Text normalisation, content hashing and the word tokenizer shared by every stage."""

from __future__ import annotations

import hashlib
import unicodedata

import regex

_WS = regex.compile(r"[^\S\n]+")
_BLANK_LINES = regex.compile(r"\n{3,}")
# Words are runs of letters/digits (with inner apostrophes or hyphens); punctuation marks
# are separate tokens. Unlike a spaCy tokenizer this never counts "(" as a word, which is
# what made Gopher's alpha-word rule reject good technical prose (punctuation counted as words).
_TOKEN = regex.compile(r"[\p{L}\p{N}]+(?:['’\-][\p{L}\p{N}]+)*|[^\s\p{L}\p{N}]")
_WORD = regex.compile(r"[\p{L}\p{N}]+(?:['’\-][\p{L}\p{N}]+)*")
_NOT_ALNUM = regex.compile(r"[^\p{L}\p{N}]+")


def normalize_text(text: str) -> str:
    """Canonical form stored and hashed: NFC, unified newlines, trimmed line-end spaces."""
    # NUL bytes are dropped: they break downstream tools and carry no text.
    text = (
        unicodedata.normalize("NFC", text)
        .replace("\x00", "")
        .replace("\r\n", "\n")
        .replace("\r", "\n")
    )
    text = "\n".join(_WS.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def content_hash(normalized: str) -> str:
    """doc_id: sha256 of the normalised text (stable across runs, files and machines)."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def dedup_key(normalized: str) -> str:
    """Key for exact-duplicate removal: ignores case, punctuation, whitespace and accents."""
    folded = unicodedata.normalize("NFKD", normalized.casefold())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return hashlib.sha256(_NOT_ALNUM.sub(" ", folded).strip().encode("utf-8")).hexdigest()


def tokenize(text: str) -> list[str]:
    """Word and punctuation tokens; the unit of the method's '< 50 tokens' rule."""
    return _TOKEN.findall(text)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def folded_words(text: str) -> list[str]:
    """Words, casefolded: the unit every similarity, grounding and dedup check compares."""
    return [w.casefold() for w in _WORD.findall(text)]
