"""Verifiable reward for RL training on the exported question-answer pairs.

Standard library only and no imports from other webscale_rl modules: the file is loaded
by path in a training environment (torch, verl or TRL) that has none of Airflow, duckdb
or pandas. Every reward is exactly 0.0 or 1.0.

verl:  custom_reward_function.path=<this file>  custom_reward_function.name=compute_score
       (keyword arguments in custom_reward_function.reward_kwargs, e.g. f1_threshold,
       reach compute_score).
TRL:   GRPOTrainer(reward_funcs=[trl_reward], ...) on a dataset with a ``ground_truth``
       column, or the exported verl columns (``reward_model`` / ``extra_info``).

How an answer is found (``extract_answer``), first rule that applies wins:

0. The completion is NFKC-normalised first (full-width "Ａｎｓｗｅｒ：" is a marker too).
1. Reasoning inside ``<think>...</think>`` is ignored; a completion whose ``<think>``
   never closes (truncated) has no answer.
2. The LAST explicit answer marker: "Answer:", "Final answer:", "The final answer is:",
   with markdown around it ("**Answer:**", "### Final Answer:"). The answer is the rest of
   that line, or the next non-empty line when the marker ends its line.
3. The last ``<answer>...</answer>`` block.
4. The last LaTeX ``\\boxed{...}`` (or ``\\fbox``), nested braces allowed.
5. The last non-empty line: "... the answer is X" gives X; otherwise the whole line when
   it has at most ``MAX_FALLBACK_WORDS`` (12) words. A longer last line means no answer.

Normalisation (``normalize``): LaTeX wrappers dropped (``$..$``, ``\\text{}``,
``\\frac{a}{b}`` -> a/b), Unicode NFKC (full-width digits, non-breaking and thin spaces,
ligatures), other scripts' decimal digits to ASCII, casefold, accents stripped
("Zürich" == "Zurich" == "ZURICH"; decided because models transliterate names freely
and a reward must not punish that; the cost is that words differing only by accents
become equal), Unicode dashes and minus signs to "-", thousands separators removed
("1,864" and "1 864" with one space / NBSP / thin space -> 1864; a decimal comma such as
"3,5" is NOT read as 3.5), ordinal suffixes dropped ("21st" -> 21), "%" -> percent,
"°" -> degree, "&" -> and, currency signs -> words, every other punctuation mark -> space
except a decimal point, a leading minus, a fraction slash or an exponent sign inside a
number, apostrophes removed ("O'Brien" -> obrien), articles a/an/the dropped, whitespace
collapsed. A trailing period thereby disappears.

Matching (``is_match``), on normalised text:

* Equal strings match.
* Quantities. When the ground truth is a number with optional unit words ("1,864
  metres", "-3.5 °C", "$5 million", "45%", "3/4", "about 330 m") the prediction must be a
  number with optional unit words too; the numbers must agree within ``rel_tol``
  (relative, default 1e-6) or ``abs_tol`` (absolute, 1e-9, for values near zero); scale
  words are folded in ("1.2 million" == 1200000). Units: singularised and canonicalised
  (metres/meters/m, feet/ft, km/h/kilometres per hour, m²/square metres, per cent/%,
  °C/degrees centigrade, $/US dollars, ...) but never converted ("1.864 km" != "1864 m");
  when both sides name units, one side's set must contain the other's ("1864 m" ==
  "1,864 metres long", "1864 feet" != "1864 m"); when either side names none, only the
  number counts ("330" == "330 m").
  The exception is BC/BCE, which changes the year and must be on both sides or neither.
  A prediction with a second number, or with words like "or", "to", "and", "half",
  "more", "than" after the number is not a plain quantity and does not match ("12 or
  120", "12 and a half"). Percentages compare as written: "45%" == "45 percent" == "45",
  but "0.45" != "45%" (a bare 0.45 could just as well mean 0.45%).
  Number words ("three", "twenty five") are read as numbers in the prediction; in the
  ground truth only when it is nothing but the number, so "One Direction" stays a name.
* Dates (checked before quantities): "12 March 1887" == "March 12, 1887" == "1887-03-12";
  "Mar 1887" == "March 1887"; "May 12" == "12 May". Numeric dd/mm/yyyy forms are
  ambiguous and only match as strings.
* Anything else must be equal after normalisation ("Paris" != "Paris Hilton").
  Optionally (``f1_threshold``, off by default) token F1 >= threshold also matches, but
  only when both sides carry the same number tokens and the ground truth is not a
  quantity or a date.

LLM judge: not part of this module. ``compute_score`` marks the one place where a rule
miss could be handed to a judge; the rule reward itself stays 0.0/1.0.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

__all__ = ["compute_score", "extract_answer", "is_match", "normalize", "trl_reward"]

MAX_FALLBACK_WORDS = 12
DEFAULT_REL_TOL = 1e-6
DEFAULT_ABS_TOL = 1e-9
MAX_UNIT_TOKENS = 5
MAX_BOXED_CHARS = 2000  # a boxed answer longer than this is not looked for (bounds the work)

# ---------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>\n]{1,40}\|>")
# "Answer:", "Final answer:", "The final answer is:", "**Answer**:", "ANSWER："; not
# "counteranswer:" (the marker must not follow a letter or digit).
_ANSWER_MARK = re.compile(
    r"(?<![^\W_])(?:final[ \t]+)?answer(?:[ \t]+is)?[ \t*_]*[:：]", re.IGNORECASE
)
_ANSWER_IS = re.compile(r"(?<![^\W_])answer[ \t]+is[ \t]+(?P<rest>\S.*)$", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_BOXED = re.compile(r"\\(?:boxed|fbox)\b")
_HTML_ANSWER_TAG = re.compile(r"</?answer>", re.IGNORECASE)


def _strip_reasoning(text: str) -> str | None:
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        return text[closes[-1].end() :]
    if _THINK_OPEN.search(text):
        return None  # reasoning never finished: no final answer was given
    return text


def _brace_group(text: str, start: int) -> tuple[str, int] | None:
    """The content of the balanced {...} group opening at text[start], and its end."""
    depth = 0
    for i in range(start, min(len(text), start + MAX_BOXED_CHARS)):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            continue
        if ch == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif ch == "}" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def _last_boxed(text: str) -> str | None:
    for m in reversed(list(_BOXED.finditer(text))[-20:]):
        i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            group = _brace_group(text, i)
            if group is not None and group[0].strip():
                return group[0]
        else:  # "\boxed 5"
            token = text[i:].split(maxsplit=1)
            if token and not token[0].startswith("$"):
                return token[0].rstrip("$")
    return None


def _unwrap_boxed(text: str) -> str:
    stripped = text.strip()
    m = _BOXED.match(stripped)
    if m:
        i = m.end()
        while i < len(stripped) and stripped[i] in " \t":
            i += 1
        if i < len(stripped) and stripped[i] == "{":
            group = _brace_group(stripped, i)
            if group is not None and not stripped[group[1] :].strip(" \t$.\\])"):
                return group[0]
    return text


_WRAPPERS = (
    ("$$", "$$"),
    ("$", "$"),
    ("\\(", "\\)"),
    ("\\[", "\\]"),
    ("**", "**"),
    ("__", "__"),
    ("`", "`"),
    ('"', '"'),
    ("“", "”"),
    ("'", "'"),
    ("‘", "’"),
    ("«", "»"),
)


def _clean_answer(text: str) -> str | None:
    text = _HTML_ANSWER_TAG.sub(" ", _SPECIAL_TOKEN.sub(" ", text)).strip()
    previous = None
    for _ in range(8):  # peel a few layers of wrapping; never loop over a hostile string
        if not text or text == previous:
            break
        previous = text
        text = text.strip().strip("*_#>").strip().rstrip(".").rstrip()
        if text.startswith(("- ", "• ")):
            text = text[2:].strip()
        text = _unwrap_boxed(text).strip()
        for left, right in _WRAPPERS:
            if (
                len(text) > len(left) + len(right)
                and text.startswith(left)
                and text.endswith(right)
            ):
                text = text[len(left) : -len(right)].strip()
                break
    return text or None


def _last_nonempty_line(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        cleaned = _clean_answer(line)
        if cleaned:
            return cleaned
    return None


def extract_answer(completion: str) -> str | None:
    """The final answer in a completion, or None when it gives none (see module doc)."""
    if not isinstance(completion, str) or not completion.strip():
        return None
    # NFKC first so full-width markers ("Ａｎｓｗｅｒ：") are found too
    text = _strip_reasoning(_SPECIAL_TOKEN.sub(" ", unicodedata.normalize("NFKC", completion)))
    if text is None or not text.strip():
        return None

    marks = list(_ANSWER_MARK.finditer(text))
    if marks:
        rest = text[marks[-1].end() :]
        line, _, after = rest.partition("\n")
        answer = _clean_answer(line)
        if answer is None:  # "**Final Answer:**" alone on its line: the answer follows
            for nxt in after.splitlines():
                answer = _clean_answer(nxt)
                if answer is not None:
                    break
        return answer

    tags = _ANSWER_TAG.findall(text)
    if tags:
        return _clean_answer(tags[-1])

    boxed = _last_boxed(text)
    if boxed is not None:
        return _clean_answer(boxed)

    line = _last_nonempty_line(text)
    if line is None:
        return None
    m = _ANSWER_IS.search(line)
    if m:
        return _clean_answer(m.group("rest"))
    if len(line.split()) <= MAX_FALLBACK_WORDS:
        return line
    return None


# ---------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------

_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]*?)\s*\}\s*\{\s*([^{}]*?)\s*\}")
_LATEX_WRAPPER = r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|operatorname|mbox|boxed)"
_LATEX_TEXT = re.compile(_LATEX_WRAPPER + r"\s*\{([^{}]*)\}")
_LATEX_WRAPPER_LEFT = re.compile(_LATEX_WRAPPER + r"\b")
_LATEX_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree")
_LATEX_SPACE = re.compile(r"\\[,;:! ]|~|\\quad|\\qquad")
_LATEX_DROP = re.compile(r"\\(?:left|right|displaystyle)\b")

_SPECIAL_LETTERS = str.maketrans(
    {"ø": "o", "ł": "l", "đ": "d", "ð": "d", "ħ": "h", "ı": "i", "æ": "ae", "œ": "oe", "þ": "th"}
)
_DASHES = str.maketrans(
    dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043", "-")
    | {"\u2044": "/", "\u2215": "/"}
)  # fraction slashes: NFKC turns ½ into 1⁄2
_APOSTROPHES = str.maketrans(dict.fromkeys("'’‘`´ʼ", ""))
_ERAS = (
    (re.compile(r"\bb\.\s?c(?:\.\s?e)?\.?(?![^\W\d_])"), " bc "),
    (re.compile(r"\ba\.\s?d\.?(?![^\W\d_])"), " ad "),
)
_SYMBOL_WORDS = str.maketrans(
    {
        "%": " percent ",
        "‰": " permille ",
        "°": " degree ",
        "&": " and ",
        "$": " dollar ",
        "€": " euro ",
        "£": " pound ",
        "¥": " yen ",
        "₹": " rupee ",
        "₩": " won ",
        "₽": " ruble ",
        "₿": " bitcoin ",
    }
)
_COMMA_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?!\d|,\d)")
_SPACE_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?: \d{3})+(?![\d,])")
_ORDINAL = re.compile(r"(?<=\d)(?:st|nd|rd|th)\b")
_ARTICLES = frozenset({"a", "an", "the"})


def _delatex(text: str) -> str:
    s = text.strip()
    unescaped = s.replace("\\$", "")
    if len(s) > 2 and s.startswith("$") and s.endswith("$") and unescaped.count("$") in (2, 4):
        s = s.strip("$").strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right):
            s = s[len(left) : -len(right)].strip()
    if "\\" not in s and "{" not in s and "~" not in s:
        return s
    if unescaped.count("$") % 2 == 0:  # LaTeX present: unescaped "$" are math delimiters
        s = re.sub(r"(?<!\\)\$", " ", s)
    s = s.replace("{,}", ",")
    s = _LATEX_FRAC.sub(r"\1/\2", s)
    for _ in range(3):  # nested \text{\textbf{..}}
        s = _LATEX_TEXT.sub(r"\1", s)
    s = _LATEX_DEGREE.sub("°", s)
    s = _LATEX_SPACE.sub(" ", s)
    s = _LATEX_DROP.sub("", _LATEX_WRAPPER_LEFT.sub(" ", s))  # wrappers around nested braces
    s = s.replace("\\%", "%").replace("\\$", "$").replace("\\&", "&")
    return s.replace("{", " ").replace("}", " ")


def _fold(text: str) -> str:
    s = unicodedata.normalize("NFKC", text)
    s = "".join(
        str(unicodedata.decimal(ch)) if ch.isdecimal() and not ch.isascii() else ch for ch in s
    )
    s = s.casefold()
    s = "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", s).translate(_SPECIAL_LETTERS)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch)[0] == "M"


def _strip_punctuation(s: str) -> str:
    out = []
    n = len(s)
    for i, ch in enumerate(s):
        if _is_word_char(ch) or ch.isspace():
            out.append(ch)
            continue
        prev = s[i - 1] if i else " "
        nxt = s[i + 1] if i + 1 < n else " "
        keep = False
        if nxt.isdigit():
            if ch == ".":  # decimal point: 3.5, .5
                keep = prev.isdigit() or not _is_word_char(prev)
            elif ch in "-+":  # minus sign, or an exponent sign (1e-6, 1e+20)
                keep = (ch == "-" and not _is_word_char(prev)) or (
                    prev == "e" and i >= 2 and s[i - 2].isdigit()
                )
            elif ch == "/":  # fraction 3/4
                keep = prev.isdigit()
        out.append(ch if keep else " ")
    return "".join(out)


def _normalized_tokens(text: str) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        return []
    s = _fold(_delatex(text))
    s = s.translate(_DASHES).translate(_APOSTROPHES)
    for pattern, replacement in _ERAS:  # "B.C." / "A.D." before "a" is dropped as an article
        s = pattern.sub(replacement, s)
    s = _COMMA_THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), s)
    s = _SPACE_THOUSANDS.sub(lambda m: m.group(0).replace(" ", ""), s)
    s = _ORDINAL.sub("", s.translate(_SYMBOL_WORDS))
    tokens = _strip_punctuation(s).split()
    content = [t for t in tokens if t not in _ARTICLES]
    return content or tokens  # "The The" stays a name rather than vanishing


def normalize(text: str) -> str:
    """Canonical comparison form of an answer (rules in the module docstring)."""
    return " ".join(_normalized_tokens(text))


# ---------------------------------------------------------------------------------------
# Quantities and dates
# ---------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:e[+-]?\d+)?")
_FRACTION = re.compile(r"(-?\d+)/(\d+)")
_SCALES = {"hundred": 1e2, "thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_LEADING_WORDS = frozenset(
    {
        "about",
        "approximately",
        "approx",
        "around",
        "roughly",
        "circa",
        "ca",
        "nearly",
        "almost",
        "some",
        "exactly",
        "just",
    }
)
_NEGATORS = frozenset({"minus", "negative"})
_CURRENCIES = frozenset(
    {
        "dollar",
        "euro",
        "pound",
        "yen",
        "rupee",
        "won",
        "ruble",
        "bitcoin",
        "usd",
        "eur",
        "gbp",
        "jpy",
        "inr",
        "cny",
        "yuan",
        "franc",
        "chf",
    }
)
# Words after the number that make the answer something other than a plain quantity.
_NOT_UNITS = frozenset(
    {
        "or",
        "and",
        "to",
        "nor",
        "plus",
        "minus",
        "times",
        "point",
        "half",
        "halves",
        "quarter",
        "quarters",
        "third",
        "thirds",
        "dozen",
        "not",
        "no",
        "than",
        "less",
        "more",
        "fewer",
        "least",
        "most",
        "between",
        "either",
        "neither",
        "over",
        "under",
        "above",
        "below",
        "up",
        "upto",
        "till",
        "until",
        "through",
        "thru",
        "vs",
        "versus",
        "x",
        "by",
    }
)
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_TENS = {
    w: 10 * i
    for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)
}
_UNIT_ALIASES = {
    "metre": "m",
    "meter": "m",
    "kilometre": "km",
    "kilometer": "km",
    "centimetre": "cm",
    "centimeter": "cm",
    "millimetre": "mm",
    "millimeter": "mm",
    "mile": "mi",
    "foot": "ft",
    "feet": "ft",
    "inch": "in",
    "yard": "yd",
    "kilogram": "kg",
    "kilo": "kg",
    "kilogramme": "kg",
    "gram": "g",
    "gramme": "g",
    "milligram": "mg",
    "tonne": "t",
    "ton": "t",
    "lb": "pound",
    "second": "s",
    "sec": "s",
    "minute": "min",
    "hour": "h",
    "hr": "h",
    "yr": "year",
    "litre": "l",
    "liter": "l",
    "millilitre": "ml",
    "milliliter": "ml",
    "centigrade": "celsius",
    "hectare": "ha",
    "kilowatt": "kw",
    "megawatt": "mw",
    "watt": "w",
    "volt": "v",
    "hertz": "hz",
    "usd": "dollar",
    "buck": "dollar",
    "eur": "euro",
    "gbp": "pound",
    "jpy": "yen",
    "inr": "rupee",
    "pct": "percent",
    "bce": "bc",
    "ce": "ad",
}
# Applied after each token is singularised and aliased, so written in the aliased forms.
_UNIT_PHRASES = [
    (re.compile(rf"\b{a}\b"), b)
    for a, b in (
        ("square km", "km2"),
        ("sq km", "km2"),
        ("square m", "m2"),
        ("sq m", "m2"),
        ("square mi", "mi2"),
        ("sq mi", "mi2"),
        ("square ft", "ft2"),
        ("sq ft", "ft2"),
        ("cubic m", "m3"),
        ("cubic cm", "cm3"),
        ("km per h", "kmh"),
        ("km h", "kmh"),
        ("kph", "kmh"),
        ("mi per h", "mph"),
        ("mi h", "mph"),
        ("m per s", "mps"),
        ("m s", "mps"),
        ("per cent", "percent"),
        ("degree c", "degree celsius"),
        ("degree f", "degree fahrenheit"),
        ("degree k", "kelvin"),
        ("us dollar", "dollar"),
    )
]
_ERA_BC = "bc"


def _singular(token: str) -> str:
    if token in _UNIT_ALIASES:
        return token
    if len(token) > 4 and token.endswith(("ches", "shes", "sses", "xes")):
        return token[:-2]
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 2 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def _canonical_units(tokens: list[str]) -> frozenset[str]:
    joined = " ".join(_UNIT_ALIASES.get(t, t) for t in map(_singular, tokens))
    for pattern, replacement in _UNIT_PHRASES:
        joined = pattern.sub(replacement, joined)
    return frozenset(joined.split())


def _number_value(token: str) -> float | None:
    if _NUMBER.fullmatch(token):
        return float(token)
    m = _FRACTION.fullmatch(token)
    if m and int(m.group(2)) != 0:
        return int(m.group(1)) / int(m.group(2))
    return None


def _word_number(tokens: list[str], i: int) -> tuple[float, int] | None:
    if i < len(tokens) and tokens[i] in _TENS:
        value = _TENS[tokens[i]]
        if i + 1 < len(tokens) and 1 <= _NUMBER_WORDS.get(tokens[i + 1], 0) <= 9:
            return value + _NUMBER_WORDS[tokens[i + 1]], i + 2
        return value, i + 1
    if i < len(tokens) and tokens[i] in _NUMBER_WORDS:
        return _NUMBER_WORDS[tokens[i]], i + 1
    return None


def _parse_quantity(
    tokens: list[str], *, words_with_units: bool
) -> tuple[float, frozenset[str]] | None:
    """(value, unit set) when the tokens are a number with optional units, else None."""
    i, sign, units = 0, 1.0, []
    while i < len(tokens) and (
        tokens[i] in _LEADING_WORDS or tokens[i] in _CURRENCIES or tokens[i] in _NEGATORS
    ):
        if tokens[i] in _CURRENCIES:
            units.append(tokens[i])
        elif tokens[i] in _NEGATORS:
            sign = -sign
        i += 1
    if i >= len(tokens):
        return None
    value = _number_value(tokens[i])
    from_words = value is None
    if from_words:
        word = _word_number(tokens, i)
        if word is None:
            return None
        value, i = float(word[0]), word[1]
    else:
        i += 1
    while i < len(tokens) and tokens[i] in _SCALES:
        value *= _SCALES[tokens[i]]
        i += 1
    rest = tokens[i:]
    if from_words and rest and not words_with_units:
        return None
    if len(rest) > MAX_UNIT_TOKENS:
        return None
    for t in rest:
        if not any(ch.isalpha() for ch in t) or t in _NOT_UNITS or t in _SCALES:
            return None
    return sign * value, _canonical_units(units + rest)


def _units_agree(pred: frozenset[str], truth: frozenset[str]) -> bool:
    if (_ERA_BC in pred) != (_ERA_BC in truth):
        return False
    if not pred or not truth:
        return True
    return pred <= truth or truth <= pred


_MONTHS = {
    name: i
    for i, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        1,
    )
    for name in names
}


def _parse_date(tokens: list[str]) -> tuple[int | None, int, int | None] | None:
    def year(t: str) -> bool:
        return t.isdigit() and len(t) <= 4

    def day(t: str) -> bool:
        return t.isdigit() and 1 <= int(t) <= 31

    if len(tokens) == 3:
        a, b, c = tokens
        if day(a) and b in _MONTHS and year(c):
            return int(c), _MONTHS[b], int(a)
        if a in _MONTHS and day(b) and year(c):
            return int(c), _MONTHS[a], int(b)
        if len(a) == 4 and a.isdigit() and b.isdigit() and 1 <= int(b) <= 12 and day(c):
            return int(a), int(b), int(c)
    if len(tokens) == 2:
        a, b = tokens
        if a in _MONTHS and year(b) and len(b) >= 3:
            return int(b), _MONTHS[a], None
        if a in _MONTHS and day(b) and len(b) <= 2:
            return None, _MONTHS[a], int(b)
        if day(a) and len(a) <= 2 and b in _MONTHS:
            return None, _MONTHS[b], int(a)
    return None


def _token_f1(pred: list[str], truth: list[str]) -> float:
    common = sum((Counter(pred) & Counter(truth)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def _digit_tokens(tokens: list[str]) -> list[str]:
    return sorted(t for t in tokens if any(ch.isdigit() for ch in t))


def is_match(
    prediction: str,
    ground_truth: str,
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    f1_threshold: float | None = None,
    abs_tol: float = DEFAULT_ABS_TOL,
) -> bool:
    """Whether an extracted answer is the ground truth (rules in the module docstring)."""
    pred, truth = _normalized_tokens(prediction), _normalized_tokens(ground_truth)
    if not pred or not truth:
        return False
    if pred == truth:
        return True

    truth_date = _parse_date(truth)  # before quantities: "12 May" is not 12 of a unit "may"
    if truth_date is not None:
        return _parse_date(pred) == truth_date

    truth_qty = _parse_quantity(truth, words_with_units=False)
    if truth_qty is not None:
        pred_qty = _parse_quantity(pred, words_with_units=True)
        return (
            pred_qty is not None
            and math.isclose(pred_qty[0], truth_qty[0], rel_tol=rel_tol, abs_tol=abs_tol)
            and _units_agree(pred_qty[1], truth_qty[1])
        )

    if f1_threshold is not None and _digit_tokens(pred) == _digit_tokens(truth):
        return _token_f1(pred, truth) >= f1_threshold
    return False


# ---------------------------------------------------------------------------------------
# Entry points for verl and TRL
# ---------------------------------------------------------------------------------------


def _truth_candidates(ground_truth) -> list[str]:
    if ground_truth is None or isinstance(ground_truth, bool):
        return []
    if hasattr(ground_truth, "tolist") and not isinstance(ground_truth, str):
        ground_truth = ground_truth.tolist()  # numpy array / scalar from a parquet column
    if isinstance(ground_truth, str):
        return [ground_truth]
    if isinstance(ground_truth, int | float):
        return [repr(ground_truth)] if isinstance(ground_truth, float) else [str(ground_truth)]
    if isinstance(ground_truth, Iterable):  # several acceptable answers
        return [c for item in ground_truth for c in _truth_candidates(item)]
    return []


def compute_score(
    data_source,
    solution_str,
    ground_truth,
    extra_info=None,
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    f1_threshold: float | None = None,
    **kwargs,
) -> float:
    """verl custom reward: 1.0 when the completion's final answer matches, else 0.0.

    ``data_source`` and ``extra_info`` are accepted for verl and not used (one data source);
    ``ground_truth`` may also be a list of acceptable answers. Extra keyword arguments that
    newer verl versions pass are ignored.
    """
    answer = extract_answer(solution_str)
    if answer is None:
        return 0.0
    for truth in _truth_candidates(ground_truth):
        if is_match(answer, truth, rel_tol=rel_tol, f1_threshold=f1_threshold):
            return 1.0
    # LLM-judge hook: a rule miss could be sent to a judge model here (wired elsewhere);
    # the rule reward itself stays 0.0.
    return 0.0


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": ...}, ...]
        return "\n".join(
            part.get("text") or ""
            for part in content
            if isinstance(part, dict) and part.get("type", "text") == "text"
        )
    return ""


def _completion_text(completion) -> str:
    """Standard format (str) or conversational (messages): the last assistant turn."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, list | tuple):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
                return _content_text(message.get("content"))
    return ""


def _truths_for(n: int, ground_truth, kwargs: dict) -> list:
    if ground_truth is None:
        if kwargs.get("reward_model") is not None:  # the verl export's column
            ground_truth = [
                rm.get("ground_truth") if isinstance(rm, dict) else None
                for rm in kwargs["reward_model"]
            ]
        elif kwargs.get("answer") is not None:
            ground_truth = kwargs["answer"]
        elif kwargs.get("extra_info") is not None:
            ground_truth = [
                info.get("answer") if isinstance(info, dict) else None
                for info in kwargs["extra_info"]
            ]
        else:
            raise ValueError("trl_reward needs a ground_truth (or reward_model / answer) column")
    if isinstance(ground_truth, str):
        return [ground_truth] * n
    truths = list(ground_truth)
    if len(truths) != n:
        raise ValueError(f"trl_reward got {n} completions but {len(truths)} ground truths")
    return truths


def trl_reward(completions, ground_truth=None, **kwargs) -> list[float]:
    """TRL GRPOTrainer reward function: one 0.0/1.0 per completion.

    TRL passes ``completions`` (strings, or lists of chat messages whose last assistant
    message is scored) and each dataset column as a keyword list aligned with them;
    the truth comes from ``ground_truth``, else ``reward_model[i]["ground_truth"]`` (the
    verl export), else ``answer``, else ``extra_info[i]["answer"]``.
    """
    completions = list(completions)
    truths = _truths_for(len(completions), ground_truth, kwargs)
    return [
        compute_score(None, _completion_text(c), t)
        for c, t in zip(completions, truths, strict=True)
    ]
