import pytest

from webscale_rl.text import content_hash, dedup_key, normalize_text, tokenize, words

pytestmark = pytest.mark.unit


def test_normalize_text_unifies_newlines_spaces_and_unicode():
    raw = "  Caf\u0065\u0301  au\tlait \r\n\r\n\r\n\r\nsecond  line\x00 "
    assert normalize_text(raw) == "Café au lait\n\nsecond line"


def test_content_hash_is_stable_and_whitespace_insensitive():
    a = content_hash(normalize_text("Hello   world\r\n"))
    assert a == content_hash(normalize_text("Hello world"))
    assert a == "64ec88ca00b268e5ba1a35678a1b5316d212f4f366b2477232534a8aeca37f3c"
    assert a != content_hash(normalize_text("Hello world!"))


def test_dedup_key_ignores_case_punctuation_and_accents_but_not_words():
    base = dedup_key("The café opened in 1887.")
    assert base == dedup_key("THE CAFE, opened in 1887")
    assert base != dedup_key("The café opened in 1888.")


def test_tokens_count_words_and_punctuation_separately():
    assert tokenize("It's O(log n), isn't it?") == [
        "It's",
        "O",
        "(",
        "log",
        "n",
        ")",
        ",",
        "isn't",
        "it",
        "?",
    ]
    assert words("x = f(2) + 3.5") == ["x", "f", "2", "3", "5"]
