#!/usr/bin/env python3
"""Build the fresh held-out set for the heuristic filter: ``holdout.jsonl``.

``tests/data/heuristic_devset/documents.jsonl`` (dev + eval) was looked at while
the heuristic filter was tuned.  This script builds a *new*, untouched set of
real documents from the same machine, labelled by a person against
``docs/heuristic-labelling-guide.md``, with no package in common with
``documents.jsonl``.

Sub-commands::

    collect   gather candidates (fixed seed, sources/shape only) ->
              /tmp/heuristic_holdout_candidates.jsonl
    show      print beginning + middle of candidates, for reading
    finalize  merge the DECISIONS table below with the candidates and write
              tests/data/heuristic_devset/holdout.jsonl (split = "holdout")
    validate  check holdout.jsonl (parsing, unique ids disjoint from
              documents.jsonl, fields, vocabularies, label follows kind,
              no package overlap with documents.jsonl, <= 2 per package,
              counts table)

Rules followed while gathering:

* Candidates are chosen only by where they come from and by their shape
  (length, file type), with per-pool random generators seeded from ``SEED``.
  Nothing here imports the project's heuristic filter (``include/…``) or any
  other quality filter: the set exists to measure that filter.
* Every package key used in ``documents.jsonl`` (computed with
  ``build_heuristic_devset.package_of_source``) is excluded, and so is the
  top-level distribution of every PyPI key used there (``pypi:numpy.linspace``
  excludes all of ``numpy``).  At most 2 candidates per package.
* Texts are capped with ``cap_text`` (12,000 characters, paragraph boundary).
  Texts under 100 characters occur only in the deliberate ``fragment`` pools.
* The guessed kind is only a pre-sort.  The final kind of every document is
  the one in ``DECISIONS`` (decided by reading the text: beginning and a
  middle part, all of it when short or unclear).

Only the standard library is used (plus ``build_heuristic_devset`` helpers).
Re-running ``collect`` on a different package set gives different candidates;
the JSONL is the source of truth.
"""

from __future__ import annotations

import argparse
import collections
import glob
import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_heuristic_devset as b  # noqa: E402

REPO = b.REPO
DOCS_JSONL = b.DEFAULT_JSONL
HOLDOUT_JSONL = REPO / "tests" / "data" / "heuristic_devset" / "holdout.jsonl"
CANDIDATES = Path("/tmp/heuristic_holdout_candidates.jsonl")
SEED = 20250301
PER_PACKAGE_CAP = 2
FIELDS = b.FIELDS
VENV_SITE = b.VENV_SITE
PYENV_SITE = b.PYENV_SITE
RUST_DOC = b.RUST_DOC
SYSTEM_PY = b.SYSTEM_PY
VENV_PY = str(b.VENV_PY)

RUST_DROP = [
    ("nav", None, None),
    ("div", "id", "mdbook-menu-bar"),
    ("div", "id", "menu-bar"),
    ("div", "class", "nav-chapters"),
    ("nav", "class", "nav-wrapper"),
    ("nav", "class", "sidebar"),
    ("rustdoc-topbar", None, None),
    ("div", "id", "mdbook-help-container"),
    ("ul", "id", "mdbook-theme-list"),
    ("div", "id", "mdbook-search-wrapper"),
]


# --------------------------------------------------------------------------
# exclusion: packages and ids already in documents.jsonl


def strict_key(source: str) -> str:
    """Package key, with pydoc names of PyPI packages reduced to the top module
    (``pypi:numpy.linspace`` -> ``pypi:numpy``) so that one distribution is one
    package."""
    key = b.package_of_source(source)
    if key.startswith("pypi:") and "(pydoc" in source:
        key = key.split(".")[0]
    return key


def used_packages() -> tuple[set[str], set[str]]:
    docs = b.load_jsonl(DOCS_JSONL)
    keys = {b.package_of_source(d["source"]) for d in docs}
    keys |= {strict_key(d["source"]) for d in docs}
    # also the top-level name of every pypi key (pypi:numpy.linspace -> pypi:numpy)
    keys |= {k.split(".")[0] for k in keys if k.startswith("pypi:")}
    return keys, {d["id"] for d in docs}


def norm_dist(name: str) -> str:
    return name.lower().replace("_", "-")


class HPools(b.Pools):
    """Pools that refuse used packages, existing ids and a 3rd doc per package."""

    def __init__(self, seed: int):
        super().__init__(seed)
        self.used, self.old_ids = used_packages()
        self.per_pkg: collections.Counter = collections.Counter()
        self.heads = {re.sub(r"\s+", " ", d["text"])[:300] for d in b.load_jsonl(DOCS_JSONL)}

    def pkg_ok(self, source: str, package: str | None = None) -> bool:
        keys = {b.package_of_source(source), strict_key(source)}
        if package:
            keys.add(package)
        if keys & self.used:
            return False
        return all(self.per_pkg[k] < PER_PACKAGE_CAP for k in keys)

    def add(self, cid, source, package, guess, text, min_chars=b.MIN_CHARS, limit=b.MAX_CHARS):
        if cid in self.old_ids or package.endswith(":unknown") or not self.pkg_ok(source, package):
            return False
        head = re.sub(r"\s+", " ", b.cap_text(text, limit))[:300]
        if len(head) >= 100 and head in self.heads:  # exact or near duplicate (same opening)
            return False
        if not super().add(cid, source, package, guess, text, min_chars, limit):
            return False
        self.heads.add(head)
        for k in {b.package_of_source(source), strict_key(source), package}:
            self.per_pkg[k] += 1
        return True


def shuffled(items, rng: random.Random):
    items = sorted(items)
    rng.shuffle(items)
    return items


def is_text_file(path: str, limit: int = 4096) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(limit)
    except OSError:
        return False
    if path.endswith(".gz"):
        return True
    return b"\x00" not in head


# --------------------------------------------------------------------------
# pydoc helpers: pick names by seeded draw, not by content


PICK_HELPER = r"""
import importlib, inspect, json, random, sys, warnings
warnings.simplefilter("ignore")
seed, mode = sys.argv[1], sys.argv[2]
out = {}
for mod in sys.argv[3:]:
    try:
        m = importlib.import_module(mod)
    except BaseException:
        continue
    names = sorted(n for n in dir(m) if not n.startswith("_"))
    objs = []
    for n in names:
        try:
            o = getattr(m, n)
        except BaseException:
            continue
        if getattr(o, "__module__", None) is None:
            continue
        if not str(getattr(o, "__module__", "")).startswith(mod.split(".")[0]):
            continue
        if mode == "callable" and (inspect.isfunction(o) or inspect.isclass(o) or inspect.isbuiltin(o)):
            objs.append(f"{mod}.{n}")
    if objs:
        out[mod] = random.Random(f"{seed}:{mod}").choice(objs)
print(json.dumps(out))
"""


def pick_callables(python: str, modules: list[str], seed: str) -> dict[str, str]:
    if not os.path.exists(python):
        return {}
    res = subprocess.run(
        [python, "-c", PICK_HELPER, seed, "callable", *modules],
        capture_output=True,
        timeout=900,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    try:
        return json.loads(res.stdout.decode() or "{}")
    except json.JSONDecodeError:
        return {}


STDLIB_HELPER = r"""
import sys, json
print(json.dumps(sorted(n for n in sys.stdlib_module_names if not n.startswith("_"))))
"""

SHORT_DOC_HELPER = r"""
import json, pydoc, random, sys
seed, n = sys.argv[1], int(sys.argv[2])
types = [str, bytes, int, float, list, dict, set, tuple, bytearray, complex, frozenset]
names = []
for t in types:
    for a in sorted(vars(t)):
        names.append(f"{t.__name__}.{a}")
rng = random.Random(seed)
rng.shuffle(names)
print(json.dumps(names))
"""


# --------------------------------------------------------------------------
# candidate gathering


def collect(seed: int = SEED) -> list[dict]:
    P = HPools(seed)
    R = P.rng_for
    scarce_kinds_first(P, seed)

    # ===== man pages: 1/8 manual, 3/5 reference, 7 prose =====
    ex = tuple(k[4:] for k in P.used if k.startswith("deb:"))
    P.man_pages("1", 30, "manual", exclude_pkgs=ex)
    P.man_pages("8", 8, "manual", exclude_pkgs=ex)
    P.man_pages("3", 16, "reference", exclude_pkgs=ex, min_chars=600)
    P.man_pages("5", 12, "reference", exclude_pkgs=ex, min_chars=600)
    P.man_pages("7", 8, "prose", exclude_pkgs=ex, min_chars=600)

    # ===== pydoc: stdlib modules not used before =====
    stdlib = json.loads(
        subprocess.run([SYSTEM_PY, "-c", STDLIB_HELPER], capture_output=True).stdout or b"[]"
    )
    stdlib = [m for m in stdlib if f"python-stdlib:{m}" not in P.used]
    skip = {
        "antigravity",
        "this",
        "idlelib",
        "tkinter",
        "turtle",
        "turtledemo",
        "lib2to3",
        "ensurepip",
    }
    stdlib = [m for m in shuffled(stdlib, R("stdlib")) if m not in skip]
    # 18 modules -> one seeded callable each (reference); the next 6 modules as whole pages (prose)
    picks = pick_callables(SYSTEM_PY, stdlib[:30], f"{seed}:stdlib-callable")
    names = [picks[m] for m in stdlib[:30] if m in picks][:18]
    P.pydoc(SYSTEM_PY, names, "reference", "python-stdlib")
    P.pydoc(SYSTEM_PY, stdlib[30:38], "prose", "python-stdlib")

    # ===== pydoc: .venv packages not used before, one seeded callable each =====
    tops = []
    for d in sorted(glob.glob(str(VENV_SITE / "*.dist-info"))):
        tl = os.path.join(d, "top_level.txt")
        dist = norm_dist(re.sub(r"-[0-9].*$", "", os.path.basename(d)))
        if f"pypi:{dist}" in P.used or not os.path.exists(tl):
            continue
        for t in b.read_any(tl).split():
            if t and not t.startswith("_") and f"pypi:{norm_dist(t)}" not in P.used:
                tops.append(t)
                break
    tops = shuffled(set(tops), R("venv-pydoc"))[:30]
    picks = pick_callables(VENV_PY, tops, f"{seed}:venv-callable")
    names = [picks[m] for m in tops if m in picks][:16]
    P.pydoc(VENV_PY, names, "reference", "pypi")

    # ===== rust-docs books not used before (each book its own package) =====
    def rust_pages(book: str, n: int, guess: str, patterns=("*.html", "*/*.html"), min_chars=600):
        pages = []
        for pat in patterns:
            pages += glob.glob(str(RUST_DOC / book / pat))
        pages = [
            p
            for p in pages
            if os.path.basename(p) not in ("print.html", "toc.html", "404.html", "index.html")
            and "/src/" not in p
        ]
        got = 0
        for p in shuffled(pages, R(f"rust-{book}-{guess}")):
            if got >= n:
                break
            rel = os.path.relpath(p, RUST_DOC)
            if P.html(
                f"rust-{slug_path(rel)}",
                p,
                guess,
                drop=RUST_DROP,
                pkg_label=f"rust-docs:{book}",
                min_chars=min_chars,
            ):
                got += 1

    rust_pages("nomicon", 2, "prose")
    rust_pages("edition-guide", 1, "prose", patterns=("*/*.html",))
    rust_pages("rustdoc", 1, "manual")
    rust_pages("style-guide", 1, "prose")
    rust_pages("unstable-book", 1, "reference", patterns=("*/*.html",))
    rust_pages("clippy", 1, "manual")
    for book, pat in [
        ("core", "*/fn.*.html"),
        ("alloc", "*/struct.*.html"),
        ("proc_macro", "struct.*.html"),
    ]:
        rust_pages(book, 1, "reference", patterns=(pat,), min_chars=300)
    for book in ("edition-guide", "style-guide"):
        p = RUST_DOC / book / "toc.html"
        if p.exists():
            P.html(f"rust-{book}-toc", p, "toc_index", pkg_label=f"rust-docs:{book}", min_chars=1)
    for book, rel, only, note in [
        (
            "rustdoc",
            "rustdoc/how-to-write-documentation.html",
            ("div", "id", "mdbook-menu-bar"),
            " [div#mdbook-menu-bar]",
        ),
        ("test", "test/index.html", ("nav", "class", "sidebar"), " [nav.sidebar]"),
        ("std_detect", "std_detect/index.html", None, ""),
        ("core", "core/index.html", ("nav", "class", "sidebar"), " [nav.sidebar]"),
        ("unstable-book", "unstable-book/library-features.html", None, ""),
    ]:
        p = RUST_DOC / rel
        if p.exists():
            P.html(
                f"rust-{slug_path(rel)}{'-nav' if only else ''}",
                p,
                "navigation",
                only=only,
                note=note,
                pkg_label=f"rust-docs:{book}",
                min_chars=100,
                drop=() if only else RUST_DROP,
            )

    # ===== readme: /usr/share/doc/*/README* (not README.Debian), PyPI METADATA =====
    readmes = [
        p
        for p in glob.glob("/usr/share/doc/*/README*")
        if not p.endswith(".html")
        and os.path.isfile(p)
        and "Debian" not in os.path.basename(p)
        and is_text_file(p)
    ]
    n = 0
    for p in shuffled(readmes, R("readme")):
        if n >= 24:
            break
        if P.add_file(f"doc-{b.slug(p.split('/')[4])}-{b.slug(os.path.basename(p))}", p, "readme"):
            n += 1
    dists = sorted(glob.glob(str(VENV_SITE / "*.dist-info"))) + sorted(
        glob.glob(str(PYENV_SITE / "*.dist-info"))
    )
    n = 0
    for d in shuffled(dists, R("metadata")):
        if n >= 18:
            break
        meta = os.path.join(d, "METADATA")
        if not os.path.exists(meta):
            continue
        name = re.sub(r"-[0-9].*$", "", os.path.basename(d))
        where = ".venv" if str(d).startswith(str(VENV_SITE)) else "pyenv 3.11.7"
        if P.add(
            f"pypi-{b.slug(name)}-readme",
            f"pypi:{name} METADATA long description ({where})",
            f"pypi:{norm_dist(name)}",
            "readme",
            b.metadata_description(meta),
            min_chars=1,
        ):
            n += 1

    # ===== faq: the few FAQ-like files of unused packages =====
    faqs = []
    for pat in [
        "/usr/share/doc/*/*FAQ*",
        "/usr/share/doc/*/*faq*",
        "/usr/share/perl/5.36.0/**/*FAQ*.pod",
    ]:
        faqs += [p for p in glob.glob(pat, recursive=True) if os.path.isfile(p) and is_text_file(p)]
    for p in shuffled(set(faqs), R("faq")):
        P.add_file(f"faq-{b.slug(p.split('/')[4])}-{b.slug(os.path.basename(p))}", p, "faq")
    # (the rust complement-*-faq pages belong to rust-docs:rust, used in documents.jsonl)
    for d in dists:
        for doc in glob.glob(os.path.join(os.path.dirname(d), "*", "docs", "*faq*.rst")):
            top = doc.split("/")[-3]
            P.add(
                f"faq-pypi-{b.slug(top)}",
                f"pypi:{top} {os.path.basename(doc)}",
                f"pypi:{norm_dist(top)}",
                "faq",
                b.read_any(doc),
            )

    # ===== prose: README.Debian notes, other doc notes =====
    debs = glob.glob("/usr/share/doc/*/README.Debian*")
    n = 0
    for p in shuffled(debs, R("readme-debian")):
        if n >= 12:
            break
        if P.add_file(f"doc-{b.slug(p.split('/')[4])}-readme-debian", p, "prose"):
            n += 1
    notes = [
        p
        for pat in (
            "NOTES*",
            "DESIGN*",
            "HACKING*",
            "CONTRIBUTING*",
            "SECURITY*",
            "*.txt",
            "*.txt.gz",
            "*.md",
            "*.rst",
        )
        for p in glob.glob(f"/usr/share/doc/*/{pat}")
        if os.path.isfile(p)
        and not re.search(
            r"(?i)readme|faq|changelog|news|copyright|licen[cs]e|authors", os.path.basename(p)
        )
    ]
    n = 0
    for p in shuffled(notes, R("doc-notes")):
        if n >= 12:
            break
        if P.add_file(f"doc-{b.slug(p.split('/')[4])}-{b.slug(os.path.basename(p))}", p, "prose"):
            n += 1

    # ===== tutorial: examples directories, tutorial-named docs =====
    tuts = [
        p
        for pat in (
            "/usr/share/doc/*/*tutorial*",
            "/usr/share/doc/*/*/*tutorial*",
            "/usr/share/doc/*/*HOWTO*",
            "/usr/share/doc/*/*howto*",
            "/usr/share/doc/*/examples/README*",
            "/usr/share/perl/5.36.0/**/*Tutorial*.pod",
            str(PYENV_SITE / "*/docs/*.rst"),
            str(PYENV_SITE / "*/docs/*/*.rst"),
        )
        for p in glob.glob(pat, recursive=True)
        if os.path.isfile(p) and is_text_file(p)
    ]
    n = 0
    for p in shuffled(set(tuts), R("tutorial")):
        if n >= 10:
            break
        if p.startswith(str(PYENV_SITE)):
            top = os.path.relpath(p, PYENV_SITE).split("/")[0]
            ok = P.add(
                f"pyenv-{b.slug(os.path.relpath(p, PYENV_SITE))}",
                f"pypi:{top} {os.path.relpath(p, PYENV_SITE)} (pyenv 3.11.7)",
                f"pypi:{norm_dist(top)}",
                "tutorial",
                b.read_any(p),
            )
        else:
            ok = P.add_file(
                f"doc-{b.slug(p.split('/')[4])}-{b.slug(os.path.basename(p))}", p, "tutorial"
            )
        n += bool(ok)
    rust_pages("nomicon", 1, "tutorial")
    rust_pages("rustdoc", 1, "tutorial")

    # ===== licence =====
    n = 0
    for p in shuffled(glob.glob("/usr/share/doc/*/copyright"), R("copyright")):
        if n >= 9:
            break
        n += bool(P.add_file(f"copyright-{b.slug(p.split('/')[4])}", p, "licence"))
    lics = glob.glob(str(VENV_SITE / "*.dist-info" / "LICENSE*")) + glob.glob(
        str(VENV_SITE / "*.dist-info" / "licenses" / "*")
    )
    n = 0
    for p in shuffled(lics, R("licence-files")):
        if n >= 4:
            break
        if not os.path.isfile(p):
            continue
        dist = re.sub(
            r"-[0-9].*$", "", p.split("/")[-2] if "/licenses/" not in p else p.split("/")[-3]
        )
        n += bool(
            P.add(
                f"pypi-{b.slug(dist)}-{b.slug(os.path.basename(p))}",
                f"pypi:{dist} {os.path.basename(p)} (.venv dist-info)",
                f"pypi:{norm_dist(dist)}",
                "licence",
                b.read_any(p),
            )
        )

    # ===== changelog =====
    n = 0
    for p in shuffled(glob.glob("/usr/share/doc/*/changelog.Debian.gz"), R("changelog-debian")):
        if n >= 6:
            break
        n += bool(P.add_file(f"changelog-debian-{b.slug(p.split('/')[4])}", p, "changelog"))
    ups = (
        glob.glob("/usr/share/doc/*/changelog.gz")
        + glob.glob("/usr/share/doc/*/NEWS*")
        + glob.glob("/usr/share/doc/*/CHANGES*")
        + glob.glob("/usr/share/doc/*/HISTORY*")
    )
    n = 0
    for p in shuffled(ups, R("upstream-changelog")):
        if n >= 7:
            break
        if is_text_file(p):
            n += bool(
                P.add_file(
                    f"doc-{b.slug(p.split('/')[4])}-{b.slug(os.path.basename(p))}", p, "changelog"
                )
            )

    # ===== toc_index: index pages and tables of contents =====
    idx = [
        p
        for pat in (
            "/usr/share/doc/*/index.*",
            "/usr/share/doc/*/*/index.html",
            "/usr/share/doc/*/*/index.rst",
            "/usr/share/doc/*/*/index.txt",
            "/usr/share/doc/*/*/*/index.html",
            "/usr/share/doc/*/contents*",
            str(PYENV_SITE / "*/docs/index.rst"),
        )
        for p in glob.glob(pat)
        if os.path.isfile(p)
    ]
    n = 0
    for p in shuffled(idx, R("toc-index")):
        if n >= 8:
            break
        if p.startswith(str(PYENV_SITE)):
            top = os.path.relpath(p, PYENV_SITE).split("/")[0]
            ok = P.add(
                f"pyenv-{b.slug(os.path.relpath(p, PYENV_SITE))}",
                f"pypi:{top} {os.path.relpath(p, PYENV_SITE)} (pyenv 3.11.7)",
                f"pypi:{norm_dist(top)}",
                "toc_index",
                b.read_any(p),
                min_chars=1,
            )
        elif p.endswith(".html"):
            ok = P.html(f"html-{slug_path(p[15:])}", p, "toc_index", min_chars=1)
        else:
            ok = P.add_file(f"doc-{slug_path(p[15:])}", p, "toc_index", min_chars=1)
        n += bool(ok)

    # ===== navigation: nav blocks of HTML pages of unused packages =====
    htmls = [p for p in glob.glob("/usr/share/doc/**/*.html", recursive=True) if os.path.isfile(p)]
    n = 0
    for p in shuffled(htmls, R("nav-html")):
        if n >= 4:
            break
        src = b.read_any(p)
        for only in (
            ("div", "class", "navheader"),
            ("div", "class", "header"),
            ("table", "class", "navigation"),
            ("div", "class", "navfooter"),
            ("nav", None, None),
        ):
            tag, key, val = only
            if re.search(
                rf"<{tag}\b[^>]*{key}=[\"'][^\"']*\b{val}\b" if key else rf"<{tag}\b", src
            ):
                note = f" [{tag}{'.' + val if key else ''}]"
                if P.html(
                    f"html-{slug_path(p[15:])}-nav",
                    p,
                    "navigation",
                    only=only,
                    note=note,
                    min_chars=1,
                ):
                    n += 1
                break

    # ===== code: headers, scripts, python sources =====
    heads = [p for p in glob.glob("/usr/include/**/*.h", recursive=True) if os.path.isfile(p)]
    n = 0
    for p in shuffled(heads, R("headers")):
        if n >= 5:
            break
        n += bool(
            P.add_file(
                f"code-{b.slug(os.path.relpath(p, '/usr/include'))}", p, "code", min_chars=300
            )
        )
    scripts = []
    for p in glob.glob("/usr/bin/*") + glob.glob("/usr/sbin/*"):
        if os.path.isfile(p) and not os.path.islink(p):
            try:
                with open(p, "rb") as fh:
                    if fh.read(2) == b"#!":
                        scripts.append(p)
            except OSError:
                pass
    n = 0
    for p in shuffled(scripts, R("scripts")):
        if n >= 5:
            break
        n += bool(P.add_file(f"code-bin-{b.slug(os.path.basename(p))}", p, "code", min_chars=300))
    pys = [
        p
        for p in glob.glob(str(VENV_SITE / "*" / "*.py"))
        if "/tests/" not in p and os.path.getsize(p) > 1500
    ]
    n = 0
    for p in shuffled(pys, R("venv-src")):
        if n >= 4:
            break
        rel = os.path.relpath(p, VENV_SITE)
        top = rel.split("/")[0]
        n += bool(
            P.add(
                f"code-pypi-{b.slug(rel)}",
                f"pypi:{top} {rel} (.venv)",
                f"pypi:{norm_dist(top)}",
                "code",
                b.read_any(p),
            )
        )

    # ===== fragment: short files, tiny docstrings, deliberate truncations =====
    small = [
        p
        for p in glob.glob("/usr/share/doc/*/*")
        if os.path.isfile(p)
        and not p.endswith(".gz")
        and 20 <= os.path.getsize(p) <= 400
        and is_text_file(p)
        and not re.search(r"(?i)copyright|changelog", p)
    ]
    n = 0
    for p in shuffled(small, R("small")):
        if n >= 4:
            break
        n += bool(
            P.add_file(
                f"small-{b.slug(p.split('/')[4])}-{b.slug(os.path.basename(p))}",
                p,
                "fragment",
                min_chars=1,
            )
        )
    short_names = json.loads(
        subprocess.run(
            [SYSTEM_PY, "-c", SHORT_DOC_HELPER, f"{seed}:short", "0"], capture_output=True
        ).stdout
        or b"[]"
    )
    short_names = [x for x in short_names if f"python-stdlib:{x.split('.')[0]}" not in P.used][:40]
    got = 0
    for name, txt in b.pydoc_render(SYSTEM_PY, short_names).items():
        if got >= 4:
            break
        if txt and len(txt) < 300:  # shape only: the short ones
            got += bool(
                P.add(
                    f"pydoc-stdlib-{b.slug(name)}",
                    f"python-stdlib:{name} (pydoc)",
                    f"python-stdlib:{name.split('.')[0]}",
                    "fragment",
                    txt,
                    min_chars=1,
                )
            )
    rng = R("trunc")
    trunc = [
        p for p in glob.glob("/usr/share/doc/*/README*") if os.path.isfile(p) and is_text_file(p)
    ]
    n = 0
    for p in shuffled(trunc, rng):
        if n >= 5:
            break
        k = rng.randrange(120, 270)
        src, pkg = b.deb_source(p)
        txt = b.read_any(p).lstrip()[:k]
        n += bool(
            P.add(
                f"trunc-{b.slug(p.split('/')[4])}-{b.slug(os.path.basename(p))}",
                src.replace(" (deb:", f" [first {k} characters] (deb:"),
                pkg,
                "fragment",
                txt,
                min_chars=1,
            )
        )

    # ===== listing: dpkg database files, dist-info RECORD/entry_points, data files =====
    dp = [
        p
        for ext in ("list", "md5sums", "symbols", "shlibs", "triggers", "conffiles", "templates")
        for p in glob.glob(f"/var/lib/dpkg/info/*.{ext}")
    ]
    n = 0
    for p in shuffled(dp, R("dpkg-info")):
        if n >= 5:
            break
        base = os.path.basename(p)
        pkg = "deb:" + base.split(":")[0].rsplit(".", 1)[0]
        n += bool(
            P.add(
                f"listing-{b.slug(base)}",
                f"{p} ({pkg})",
                pkg,
                "listing",
                b.read_any(p),
                min_chars=200,
            )
        )
    recs = [
        p
        for f in ("RECORD", "entry_points.txt", "top_level.txt")
        for p in glob.glob(str(VENV_SITE / "*.dist-info" / f))
    ]
    n = 0
    for p in shuffled(recs, R("dist-info-listing")):
        if n >= 4:
            break
        dist = re.sub(r"-[0-9].*$", "", p.split("/")[-2])
        n += bool(
            P.add(
                f"listing-pypi-{b.slug(dist)}-{b.slug(os.path.basename(p))}",
                f"pypi:{dist} {os.path.basename(p)} (.venv dist-info)",
                f"pypi:{norm_dist(dist)}",
                "listing",
                b.read_any(p),
                min_chars=200,
            )
        )
    auth = [
        p
        for pat in ("AUTHORS*", "THANKS*", "CREDITS*", "CONTRIBUTORS*")
        for p in glob.glob(f"/usr/share/doc/*/{pat}")
    ]
    n = 0
    for p in shuffled(auth, R("authors")):
        if n >= 3:
            break
        if os.path.isfile(p):
            n += bool(
                P.add_file(
                    f"listing-{b.slug(p.split('/')[4])}-{b.slug(os.path.basename(p))}",
                    p,
                    "listing",
                    min_chars=200,
                )
            )
    return P.cands


def rust_page(P, book, guess, patterns, name, min_chars=300, only=None, note="", drop=None):
    """Add one seeded page of a rust-docs book matching ``patterns``."""
    pages = []
    for pat in patterns:
        pages += glob.glob(str(RUST_DOC / book / pat))
    pages = [p for p in pages if "/src/" not in p]
    for p in shuffled(pages, P.rng_for(f"rust-{book}-{name}")):
        rel = os.path.relpath(p, RUST_DOC)
        if P.html(
            f"rust-{slug_path(rel)}{'-nav' if only else ''}",
            p,
            guess,
            only=only,
            note=note,
            drop=RUST_DROP if drop is None else drop,
            pkg_label=f"rust-docs:{book}",
            min_chars=min_chars,
        ):
            return True
    return False


def is_redirect(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return 'http-equiv="refresh"' in fh.read(2000)
    except OSError:
        return False


def scarce_kinds_first(P: HPools, seed: int) -> None:
    """Pools for the kinds with little material on this machine (definition,
    tutorial, faq, toc_index, navigation).  They run first so that the
    per-package cap does not hand their packages to the big pools."""
    R = P.rng_for
    books = ["nomicon", "rustdoc", "clippy", "unstable-book", "edition-guide", "style-guide"]
    # --- navigation: redirect stubs of unused rust books (seeded, 2)
    stubs = [
        p
        for bk in books
        for p in glob.glob(str(RUST_DOC / bk / "**" / "*.html"), recursive=True)
        if is_redirect(p)
    ]
    n = 0
    for p in shuffled(stubs, R("rust-redirects")):
        if n >= 2:
            break
        bk = os.path.relpath(p, RUST_DOC).split("/")[0]
        if P.per_pkg[f"rust-docs:{bk}"] >= 1:
            continue  # one stub per book
        n += bool(
            P.html(
                f"rust-{slug_path(os.path.relpath(p, RUST_DOC))}-redirect",
                p,
                "navigation",
                pkg_label=f"rust-docs:{bk}",
                min_chars=100,
            )
        )
    # --- definition: lint lists, diagnostic messages
    for bk, rel in [("rustdoc", "rustdoc/lints.html"), ("clippy", "clippy/lints.html")]:
        p = RUST_DOC / rel
        if p.exists():
            P.html(
                f"rust-{slug_path(rel)}",
                p,
                "definition",
                drop=RUST_DROP,
                pkg_label=f"rust-docs:{bk}",
            )
    msg = "/usr/share/vim/vim90/doc/message.txt"
    if os.path.exists(msg):
        chunks = b.group_chunks(b.split_entries(b.read_any(msg), r"^\t+\*E\d+\*"), 3500)
        i = R("vim-message").randrange(2, max(3, len(chunks) - 1))
        src, pkg = b.deb_source(msg)
        P.add(
            f"vim-message-txt-part{i}",
            src.replace(" (deb:", f" [entries chunk {i}] (deb:"),
            pkg,
            "definition",
            chunks[i],
        )
    # --- tutorial
    for path in [
        "/usr/share/man/man3/Net::DBus::Tutorial::UsingObjects.3pm.gz",
        "/usr/share/man/man3/lwptut.3pm.gz",
        "/usr/share/man/man3/File::MimeInfo::Cookbook.3pm.gz",
    ]:
        if os.path.exists(path):
            P.man_named(path, "tutorial")
    usr = sorted(glob.glob("/usr/share/vim/vim90/doc/usr_[0-9]*.txt"))
    if usr:
        p = R("vim-usr").choice(usr)
        P.add_file(f"vim-{b.slug(os.path.basename(p))}", p, "tutorial")
    for p in [
        "/usr/lib/python3/dist-packages/wadllib/docs/index.rst",
        "/usr/lib/python3/dist-packages/lazr/uri/docs/index.rst",
    ]:
        if os.path.exists(p):
            P.add_file(f"doc-{b.slug(p.split('/')[5])}-docs-index-rst", p, "tutorial")
    rust_page(
        P, "nomicon", "tutorial", ("vec/*.html", "arc-mutex/*.html"), "tutorial", min_chars=1500
    )
    rust_page(P, "clippy", "tutorial", ("development/adding_lints.html",), "tutorial")
    rust_page(P, "rustdoc", "tutorial", ("how-to-write-documentation.html",), "tutorial")
    # --- faq: FAQ sections of PyPI long descriptions (found by heading shape)
    metas = sorted(
        glob.glob(str(VENV_SITE / "*.dist-info" / "METADATA"))
        + glob.glob(str(PYENV_SITE / "*.dist-info" / "METADATA"))
    )
    n = 0
    for meta in shuffled(metas, R("faq-sections")):
        if n >= 6:
            break
        body = b.metadata_description(meta)
        m = re.search(
            r"^(#+) *(FAQ|Frequently Asked Questions)\b.*$|^(FAQ|Frequently Asked Questions)\b.*\n([-=~^]{3,})$",
            body,
            re.M | re.I,
        )
        if not m:
            continue
        start = m.start()
        if m.group(1):
            nxt = re.search(rf"^#{{1,{len(m.group(1))}}} ", body[m.end() :], re.M)
        else:
            nxt = re.search(rf"^.+\n{re.escape(m.group(4)[0])}{{3,}}$", body[m.end() :], re.M)
        sec = body[start : m.end() + (nxt.start() if nxt else len(body))]
        name = re.sub(r"-[0-9].*$", "", meta.split("/")[-2])
        where = ".venv" if meta.startswith(str(VENV_SITE)) else "pyenv 3.11.7"
        n += bool(
            P.add(
                f"pypi-{b.slug(name)}-faq-section",
                f"pypi:{name} METADATA long description [section '{m.group(0).strip()}'] ({where})",
                f"pypi:{norm_dist(name)}",
                "faq",
                sec,
            )
        )
    # --- toc_index: book tables of contents, package pages of the stdlib
    for bk in ("clippy", "unstable-book", "edition-guide", "style-guide"):
        p = RUST_DOC / bk / "toc.html"
        if p.exists():
            P.html(f"rust-{bk}-toc", p, "toc_index", pkg_label=f"rust-docs:{bk}", min_chars=1)
    pk = subprocess.run(
        [
            SYSTEM_PY,
            "-c",
            "import sys,json,importlib.util as u;print(json.dumps(sorted("
            "n for n in sys.stdlib_module_names if not n.startswith('_') and (s:=u.find_spec(n)) and s.submodule_search_locations)))",
        ],
        capture_output=True,
    ).stdout
    pkgs = [
        m
        for m in json.loads(pk or b"[]")
        if f"python-stdlib:{m}" not in P.used
        and m not in ("idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip")
    ]
    P.pydoc(SYSTEM_PY, shuffled(pkgs, R("stdlib-packages"))[:5], "toc_index", "python-stdlib")
    # --- navigation: sidebars of rust API pages
    for bk, pat in [
        ("core", "*/index.html"),
        ("alloc", "*/index.html"),
        ("proc_macro", "index.html"),
        ("test", "index.html"),
    ]:
        rust_page(
            P,
            bk,
            "navigation",
            (pat,),
            "nav",
            min_chars=100,
            only=("nav", "class", "sidebar"),
            note=" [nav.sidebar]",
            drop=(),
        )
    p = "/usr/share/chromium/initial_bookmarks.html"
    if os.path.exists(p):
        P.html("chromium-initial-bookmarks-html", p, "navigation", min_chars=100)
    # --- reference: SQL command pages (postgresql-client)
    sql = [
        p
        for p in glob.glob("/usr/share/man/man7/*.7.gz")
        if re.match(r"[A-Z_]+\.7\.gz$", os.path.basename(p))
    ]
    for p in shuffled(sql, R("sql"))[:2]:
        P.man_named(p, "reference")


def slug_path(rel: str) -> str:
    return b.slug(re.sub(r"\.html?$", "", rel))


# --------------------------------------------------------------------------
# decisions: id -> kind (or DROP) -> note.  Written after reading each text
# (beginning and a middle part; all of it when short or unclear).  "as guessed"
# means the reading confirmed the pool's guess; "was X: ..." records a correction.

DECISIONS = """
rust-edition-guide-rust-next-alternative-cargo-registries-redirect	navigation	as guessed
rust-rustdoc-lints	definition	as guessed
rust-clippy-lints	definition	as guessed
vim-message-txt-part6	definition	as guessed
man-net-dbus-tutorial-usingobjects-3pm	fragment	was tutorial: stub: "Sadly it is not yet written"
man-lwptut-3pm	tutorial	as guessed
man-file-mimeinfo-cookbook-3pm	tutorial	as guessed
vim-usr-24-txt	tutorial	as guessed
doc-wadllib-docs-index-rst	tutorial	as guessed
doc-lazr-docs-index-rst	tutorial	as guessed
rust-nomicon-vec-vec-layout	tutorial	as guessed
rust-clippy-development-adding-lints	tutorial	as guessed
rust-rustdoc-how-to-write-documentation	tutorial	as guessed
pypi-greenback-faq-section	faq	as guessed
pypi-tqdm-faq-section	faq	as guessed
pypi-llama-cpp-python-faq-section	faq	as guessed
pypi-h11-faq-section	faq	as guessed
rust-unstable-book-toc	toc_index	as guessed
rust-edition-guide-toc	toc_index	as guessed
rust-style-guide-toc	toc_index	as guessed
pydoc-stdlib-encodings	reference	was toc_index: package page whose description explains codec naming; contents list is the smaller part
pydoc-stdlib-http	reference	was toc_index: HTTPMethod has a real docstring; rest is inherited str docs (borderline)
pydoc-stdlib-multiprocessing	listing	was toc_index: source comment + package contents + bare exception class dumps
pydoc-stdlib-email	reference	was toc_index: package contents + 4 documented functions
pydoc-stdlib-importlib	reference	was toc_index: package contents + documented functions
rust-core-simd-index-nav	navigation	as guessed
rust-alloc-collections-index-nav	navigation	as guessed
rust-proc-macro-index-nav	navigation	as guessed
rust-test-index-nav	navigation	as guessed
man-comment-7	reference	as guessed
man-create-access-method-7	reference	as guessed
man1-mimeopen-1p	manual	as guessed
man1-dbus-monitor-1	manual	as guessed
man1-gpg-wks-server-1	manual	as guessed
man1-dh-perl-openssl-1	manual	as guessed
man1-pkgdata-1	manual	as guessed
man1-tcltk-depends-1	manual	as guessed
man1-expiry-1	manual	as guessed
man1-gpgv-1	manual	as guessed
man1-enc2xs-1	manual	as guessed
man1-xdg-email-1	manual	as guessed
man1-less-1	manual	as guessed
man1-zutty-1	manual	as guessed
man1-tmux-1	manual	as guessed
man1-heaptrack-print-1	manual	as guessed
man1-mawk-1	manual	as guessed
man1-strace-log-merge-1	manual	as guessed
man1-lsb-release-1	manual	as guessed
man1-gtk-update-icon-cache-1	manual	as guessed
man1-dconf-service-1	manual	as guessed
man1-cpan5-36-x86-64-linux-gnu-1	manual	as guessed
man1-upower-1	manual	as guessed
man1-x86-64-linux-gnu-python3-11-config-1	manual	as guessed
man1-perf-annotate-1	manual	as guessed
man1-hostname-1	manual	as guessed
man1-gtk-query-immodules-2-0-1	manual	as guessed
man1-vim-1	manual	as guessed
man1-xxd-1	manual	as guessed
man1-redis-server-1	manual	as guessed
man1-file-1	manual	as guessed
man1-lwp-download-1p	manual	as guessed
man8-systemd-timesyncd-service-8	manual	as guessed
man8-pam-cap-8	manual	as guessed
man8-gencmn-8	manual	as guessed
man8-userdel-8	manual	as guessed
man8-isosize-8	manual	as guessed
man8-update-java-alternatives-8	manual	as guessed
man8-update-ca-certificates-8	manual	as guessed
man8-logsave-8	manual	as guessed
man3-file-desktopentry-3pm	reference	as guessed
man3-html-tagset-3pm	reference	as guessed
man3-html-form-3pm	reference	as guessed
man3-html-formatps-3pm	reference	as guessed
man3-ipc-system-simple-3pm	reference	as guessed
man3-authen-sasl-perl-cram-md5-3pm	reference	as guessed
man3-json-3pm	reference	as guessed
man3-http-request-3pm	reference	as guessed
man3-file-listing-3pm	reference	as guessed
man3-xss-3	reference	as guessed
man3-xml-twig-3pm	reference	as guessed
man3-http-negotiate-3pm	reference	as guessed
man3-xml-xpathengine-literal-3pm	reference	as guessed
man3-data-dump-filtered-3pm	reference	as guessed
man3-html-element-3pm	reference	as guessed
man3-regexp-ipv6-3pm	reference	as guessed
man5-capability-conf-5	reference	as guessed
man5-fstab-5	reference	as guessed
man5-semanage-conf-5	reference	as guessed
man5-libsasl-5	reference	as guessed
man5-xsession-5	reference	as guessed
man5-adjtime-config-5	reference	as guessed
man5-fonts-conf-5	reference	as guessed
man5-avahi-service-5	reference	as guessed
man5-udev-conf-5	reference	as guessed
man5-timesyncd-conf-5	reference	as guessed
man5-libaudit-conf-5	reference	as guessed
man5-compose-5	reference	as guessed
man7-udev-7	prose	as guessed
man7-xkeyboard-config-7	listing	was prose: one sentence + model/layout tables
man7-upower-7	prose	as guessed
man7-tc-hfsc-7	prose	as guessed
man7-libsmbclient-7	prose	as guessed
man7-gtk-options-7	manual	was prose: command-line options common to GTK programs
pydoc-stdlib-ipaddress-ip-address	reference	as guessed
pydoc-stdlib-aifc-error	listing	was reference: bare exception class dump
pydoc-stdlib-fileinput-input	reference	as guessed
pydoc-stdlib-smtpd-debuggingserver	reference	as guessed
pydoc-stdlib-signal-signals	listing	was reference: "An enumeration." + members + inherited int boilerplate
pydoc-stdlib-encodings-normalize-encoding	reference	as guessed
pydoc-stdlib-zipimport-zipimporterror	listing	was reference: bare exception class dump
pydoc-stdlib-pyexpat-xmlparsertype	reference	as guessed
pydoc-stdlib-random-random	reference	as guessed
pydoc-stdlib-poplib-pop3-ssl	reference	as guessed
pydoc-stdlib-syslog-closelog	fragment	was reference: signature only
pydoc-stdlib-shlex-quote	fragment	was reference: single short sentence
pydoc-stdlib-shelve-bsddbshelf	reference	as guessed
pydoc-stdlib-dis-findlinestarts	fragment	was reference: one sentence + a phrase
pydoc-stdlib-zlib-crc32	fragment	was reference: under ~150 chars of content
pydoc-stdlib-resource-getrusage	fragment	was reference: signature only
pydoc-stdlib-selectors-selectselector	reference	as guessed
pydoc-stdlib-trace-coverageresults	reference	as guessed
pydoc-stdlib-fcntl	reference	was prose: module page (as pydoc module pages in documents.jsonl)
pydoc-stdlib-bz2	reference	was prose: module page
pydoc-stdlib-argparse	reference	was prose: module page
pydoc-stdlib-mailbox	reference	was prose: module page
pydoc-stdlib-marshal	reference	was prose: module page
pydoc-stdlib-chunk	reference	was prose: module page
pydoc-multiprocess-license	fragment	was reference: "print license"
pydoc-colorlog-levelformatter	reference	as guessed
pydoc-deprecated-deprecated	reference	as guessed
pydoc-socks-socks5autherror	listing	was reference: bare exception class dump
pydoc-fire-fire	reference	as guessed
pydoc-dotenv-get-cli-string	reference	as guessed
pydoc-isoduration-format-duration	fragment	was reference: signature only
pydoc-uuid6-uuid1-to-uuid6	fragment	was reference: single sentence
pydoc-diskcache-throttle	reference	as guessed
pydoc-libcst-baseslice	reference	as guessed
pydoc-pycparser-preprocess-file	reference	as guessed
pydoc-cron-descriptor-options	listing	was reference: one-line docstring + bare signatures and descriptors
pydoc-setproctitle-getthreadtitle	fragment	was reference: single short sentence
pydoc-aiohttp-asynciterablepayload	reference	as guessed
pydoc-sqlalchemy-intersect	reference	as guessed
pydoc-wsproto-connectiontype	listing	was reference: bare enum dump
rust-nomicon-ownership	prose	as guessed
rust-style-guide-cargo	prose	as guessed
rust-unstable-book-language-features-doc-masked	reference	as guessed
rust-core-intrinsics-fn-atomic-load	reference	as guessed
rust-alloc-vec-struct-vec	reference	as guessed
rust-proc-macro-struct-diagnostic	reference	as guessed
rust-std-detect-index	toc_index	was navigation: module index page: 2 sentences + list of macros with identical one-line glosses
doc-hicolor-icon-theme-readme	readme	as guessed
doc-libgnutlsxx30-readme-md-gz	readme	as guessed
doc-tmux-readme	readme	as guessed
doc-libjpeg-dev-readme-md-gz	readme	as guessed
doc-python3-wadllib-readme-rst	licence	was readme: two short sentences + LGPL notice
doc-libidn2-0-readme-md-gz	readme	as guessed
doc-patch-readme	readme	as guessed
doc-tcl8-6-dev-readme-tcl-inc	prose	was readme: Debian packaging note, not a project overview
doc-avahi-daemon-readme	navigation	was readme: one sentence + contact links + requirement list (borderline)
doc-pkgconf-bin-readme-md-gz	readme	as guessed
doc-cups-pk-helper-readme	readme	as guessed
doc-python3-dbus-readme	readme	as guessed
doc-libgcrypt20-readme-gz	readme	as guessed
doc-libjpeg62-turbo-dev-readme-ijg-gz	readme	as guessed
doc-libksba8-readme	readme	as guessed
doc-libxcb-render-util0-readme	readme	as guessed
doc-libpfm4-readme-gz	readme	as guessed
doc-libdconf1-readme	readme	as guessed
doc-libpthread-stubs0-dev-readme	readme	as guessed
doc-zutty-readme-org-gz	readme	as guessed
doc-libgdk-pixbuf-2-0-0-readme-md	readme	as guessed
doc-at-spi2-core-readme-md-gz	readme	as guessed
doc-libipt2-readme	readme	as guessed
doc-python3-oauthlib-readme-rst-gz	readme	as guessed
pypi-s3transfer-readme	readme	as guessed
pypi-watchfiles-readme	readme	as guessed
pypi-py-partiql-parser-readme	readme	as guessed
pypi-attrs-readme	readme	as guessed
pypi-aiosmtplib-readme	navigation	was readme: tagline + quickstart code; badge definitions dominate
pypi-rpds-py-readme	readme	as guessed
pypi-python-dotenv-readme	readme	as guessed
pypi-altair-readme	readme	as guessed
pypi-xmltodict-readme	readme	as guessed
pypi-referencing-readme	navigation	was readme: badges + one sentence + docs link
pypi-greenback-readme	readme	as guessed
pypi-jsonschema-specifications-readme	navigation	was readme: badges + one sentence
pypi-typing-inspection-readme	navigation	was readme: badges + one sentence + pip command
pypi-libcst-readme	readme	as guessed
pypi-flask-cors-readme	readme	as guessed
pypi-matplotlib-inline-readme	readme	as guessed
pypi-urllib3-readme	readme	as guessed
pypi-websockets-readme	readme	as guessed
doc-chromium-readme-debian	prose	as guessed
doc-libsasl2-2-readme-debian	prose	as guessed
doc-vim-common-readme-debian	prose	as guessed
doc-distro-info-data-readme-debian	prose	as guessed
doc-liblzma-dev-readme-debian	prose	as guessed
doc-libatk-wrapper-java-readme-debian	prose	as guessed
doc-javascript-common-readme-debian	fragment	was prose: one sentence + 2-line HTML snippet + signature (borderline)
doc-libldap-2-5-0-readme-debian	prose	as guessed
doc-perl-readme-debian	prose	as guessed
doc-pinentry-curses-readme-debian	prose	as guessed
doc-libpcre2-8-0-readme-debian	prose	as guessed
doc-dbus-readme-debian	prose	as guessed
doc-libnss-mdns-acknowledgements-md	listing	was prose: name list
doc-libcommons-parent-java-notice-txt	licence	was prose: copyright NOTICE
doc-xextproto-multibuf-txt-gz	prose	as guessed
doc-libpng16-16-libpng-manual-txt-gz	reference	was prose: libpng API manual
doc-fontsproto-fsproto-txt-gz	prose	as guessed
doc-libtry-tiny-perl-contributing	prose	as guessed
doc-xtrans-dev-xtrans-txt-gz	prose	as guessed
doc-fonts-dejavu-core-status-txt-gz	listing	was prose: glyph status table
doc-libjpeg62-turbo-dev-wizard-txt-gz	manual	was prose: cjpeg advanced switches, explained
doc-fonts-dejavu-core-unicover-txt-gz	listing	was prose: coverage table
doc-linux-perf-tips-txt	manual	was prose: one-line perf usage tips, each a phrase + command (borderline vs listing)
doc-libauthen-sasl-perl-api-txt	prose	as guessed
copyright-libnet-ssleay-perl	licence	as guessed
copyright-libpixman-1-0	licence	as guessed
copyright-libnss3-dev	licence	as guessed
copyright-adwaita-icon-theme	licence	as guessed
copyright-system-config-printer	licence	as guessed
copyright-java-common	licence	as guessed
copyright-libgav1-1	licence	as guessed
copyright-osslsigncode	licence	as guessed
copyright-libssl3	licence	as guessed
pypi-greenlet-license-psf	licence	as guessed
pypi-setproctitle-license	licence	as guessed
pypi-anyio-license	licence	as guessed
pypi-apache-airflow-task-sdk-notice	licence	copyright NOTICE
changelog-debian-libxi6	changelog	as guessed
changelog-debian-libsensors5	changelog	as guessed
changelog-debian-libpcre2-8-0	changelog	as guessed
changelog-debian-libfontconfig1-dev	changelog	as guessed
changelog-debian-libabsl20220623	changelog	as guessed
changelog-debian-libice-dev	changelog	as guessed
doc-mawk-changelog-gz	changelog	as guessed
doc-build-essential-changelog-gz	changelog	as guessed
doc-libssl3-changelog-gz	changelog	as guessed
doc-libjson-perl-changelog-gz	changelog	as guessed
doc-libxcb-render-util0-news-gz	changelog	as guessed
doc-libblkid1-changelog-gz	navigation	was changelog: "See version control history." + URL
doc-libwww-robotrules-perl-changelog-gz	changelog	as guessed
code-nss-nss-h	code	as guessed
code-llvm-14-llvm-transforms-scalar-reassociate-h	code	as guessed
code-llvm-14-llvm-debuginfo-msf-msferror-h	code	as guessed
code-linux-chio-h	code	as guessed
code-linux-vsockmon-h	code	as guessed
code-bin-dh-perl-openssl	code	as guessed
code-bin-python-argcomplete-check-easy-install-script	code	as guessed
code-bin-xq-python	code	as guessed
code-bin-register-python-argcomplete	code	as guessed
code-bin-xdg-screensaver	code	as guessed
code-pypi-referencing-retrieval-py	code	as guessed
code-pypi-python-multipart-decoders-py	code	as guessed
code-pypi-pil-tiffimageplugin-py	code	as guessed
code-pypi-pydantic-mypy-py	code	as guessed
small-iproute2-readme-debian	prose	was fragment: two complete informative sentences (short but complete)
small-build-essential-essential-packages-list	listing	was fragment: generated package name list
small-libmaven3-core-java-notice	licence	was fragment: copyright NOTICE
small-libidn2-0-authors	listing	was fragment: author list
pydoc-stdlib-complex-ge	fragment	as guessed
pydoc-stdlib-set-sizeof	fragment	as guessed
pydoc-stdlib-bytes-mod	fragment	as guessed
pydoc-stdlib-complex-mul	fragment	as guessed
trunc-at-spi2-core-readme-md-gz	fragment	as guessed
trunc-libreadline8-readme-debian	fragment	as guessed
trunc-libxmlsec1-readme-debian	fragment	as guessed
trunc-libjpeg-dev-readme-ijg-gz	fragment	as guessed
trunc-dbus-readme-gz	fragment	as guessed
listing-libyaml-dev-amd64-list	listing	as guessed
listing-libreadline8-amd64-list	listing	as guessed
listing-librhash0-amd64-symbols	listing	as guessed
listing-libp11-kit0-amd64-md5sums	listing	as guessed
listing-python-apt-common-md5sums	listing	as guessed
listing-pypi-apache-airflow-record	listing	as guessed
listing-pypi-typing-inspection-record	listing	as guessed
listing-pypi-wirerope-record	listing	as guessed
listing-pypi-duckdb-record	listing	as guessed
listing-adwaita-icon-theme-authors	listing	as guessed
listing-libtasn1-6-thanks	listing	as guessed
listing-libgmp-dev-authors	listing	as guessed
"""

# Kind quotas, so that the kind mix stays close to documents.jsonl (about 64 %
# keep).  Kinds with too little material on this machine (definition, faq,
# toc_index, tutorial) fall short; manual/reference/readme/prose and
# fragment/listing are raised a little to keep the keep/reject balance.  When a
# kind has more decided documents than its quota, the documents are ordered by
# sha256(id) (as in the dev/eval split rule) and the first QUOTA[kind] are kept,
# so the choice does not depend on content.
QUOTA = {
    "manual": 32,
    "reference": 45,
    "definition": 10,
    "tutorial": 10,
    "readme": 20,
    "faq": 8,
    "prose": 12,
    "licence": 10,
    "changelog": 10,
    "toc_index": 10,
    "navigation": 10,
    "code": 12,
    "fragment": 15,
    "listing": 13,
}


def parse_decisions() -> dict[str, tuple[str, str]]:
    out = {}
    for line in DECISIONS.strip("\n").split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        cid, kind = parts[0].strip(), parts[1].strip()
        note = parts[2].strip() if len(parts) > 2 else ""
        if kind != "DROP" and kind not in b.KINDS:
            sys.exit(f"bad decision line: {line!r}")
        out[cid] = (kind, note)
    return out


def finalize(cand_path: Path, out: Path) -> None:
    cands = {c["id"]: c for c in b.load_jsonl(cand_path)}
    dec = parse_decisions()
    missing = [cid for cid in dec if cid not in cands]
    if missing:
        sys.exit(f"decisions for unknown candidates: {missing}")
    docs = []
    for cid, (kind, _note) in dec.items():
        if kind == "DROP":
            continue
        c = cands[cid]
        label = "keep" if kind in b.KEEP_KINDS else "reject"
        docs.append(
            {
                "id": cid,
                "source": c["source"],
                "kind": kind,
                "label": label,
                "split": "holdout",
                "text": c["text"],
            }
        )
    by_kind = collections.defaultdict(list)
    for d in docs:
        by_kind[d["kind"]].append(d)
    kept, over = [], collections.Counter()
    for kind, items in by_kind.items():
        items.sort(key=lambda d: hashlib.sha256(d["id"].encode()).hexdigest())
        kept += items[: QUOTA[kind]]
        over[kind] = max(0, len(items) - QUOTA[kind])
    docs = kept
    print("dropped over kind quota:", {k: v for k, v in over.items() if v})
    undecided = sorted(set(cands) - set(dec))
    if undecided:
        print(
            f"{len(undecided)} candidates without a decision (not included): {' '.join(undecided)}"
        )
    corrected = [
        (cid, cands[cid]["guess_kind"], k)
        for cid, (k, _) in dec.items()
        if k != "DROP" and k != cands[cid]["guess_kind"]
    ]
    print(
        f"{len(corrected)} guesses corrected; {sum(k == 'DROP' for k, _ in dec.values())} dropped"
    )
    docs.sort(key=lambda d: (b.KINDS.index(d["kind"]), d["id"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps({k: d[k] for k in FIELDS}, ensure_ascii=False) + "\n")
    print(f"wrote {len(docs)} documents to {out}")


def counts_table(docs: list[dict]) -> str:
    c = collections.Counter(d.get("kind") for d in docs)
    rows = ["| kind | label | holdout |", "|---|---|---:|"]
    for k in b.KINDS:
        rows.append(f"| {k} | {'keep' if k in b.KEEP_KINDS else 'reject'} | {c[k]} |")
    lab = collections.Counter(d.get("label") for d in docs)
    rows.append(f"| **all keep** | keep | {lab['keep']} |")
    rows.append(f"| **all reject** | reject | {lab['reject']} |")
    rows.append(f"| **all** | | {len(docs)} |")
    return "\n".join(rows)


def validate(path: Path) -> int:
    errors: list[str] = []
    docs = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"line {n}: does not parse: {e}")
                continue
            if not isinstance(d, dict) or set(d) != set(FIELDS):
                errors.append(f"line {n}: fields {sorted(d) if isinstance(d, dict) else type(d)}")
                continue
            for k in FIELDS:
                if not isinstance(d.get(k), str) or not d.get(k):
                    errors.append(f"line {n}: field {k!r} missing/empty/not a string")
            docs.append(d)
    ids = collections.Counter(d["id"] for d in docs)
    errors += [f"duplicate id {i!r}" for i, c in ids.items() if c > 1]
    old = b.load_jsonl(DOCS_JSONL)
    old_ids = {d["id"] for d in old}
    errors += [f"{i}: id also in documents.jsonl" for i in ids if i in old_ids]
    old_text = {d["text"] for d in old}
    for d in docs:
        if d["kind"] not in b.KINDS:
            errors.append(f"{d['id']}: unknown kind {d['kind']!r}")
        elif d["label"] != ("keep" if d["kind"] in b.KEEP_KINDS else "reject"):
            errors.append(f"{d['id']}: label {d['label']!r} does not follow kind {d['kind']!r}")
        if d["split"] != "holdout":
            errors.append(f"{d['id']}: split {d['split']!r} != 'holdout'")
        if len(d["text"]) > b.MAX_CHARS:
            errors.append(f"{d['id']}: text longer than {b.MAX_CHARS}")
        if len(d["text"]) < b.MIN_CHARS and d["kind"] != "fragment":
            errors.append(f"{d['id']}: text under {b.MIN_CHARS} chars but kind {d['kind']!r}")
        if d["text"] in old_text:
            errors.append(f"{d['id']}: same text as a documents.jsonl record")
    used = {b.package_of_source(d["source"]) for d in old} | {strict_key(d["source"]) for d in old}
    used |= {k.split(".")[0] for k in used if k.startswith("pypi:")}
    pk = collections.Counter()
    for d in docs:
        keys = {b.package_of_source(d["source"]), strict_key(d["source"])}
        if keys & used:
            errors.append(
                f"{d['id']}: package {sorted(keys & used)} already used in documents.jsonl"
            )
        for k in keys:
            pk[k] += 1
    over = {p: c for p, c in pk.items() if c > PER_PACKAGE_CAP}
    errors += [f"package {p} has {c} documents (> {PER_PACKAGE_CAP})" for p, c in over.items()]
    texts = collections.Counter(d["text"] for d in docs)
    errors += [f"duplicate text in {c} records" for t, c in texts.items() if c > 1]
    labels = collections.Counter(d["label"] for d in docs)
    lens = [len(d["text"]) for d in docs]
    print(counts_table(docs))
    print(
        f"\n{len(docs)} documents, {os.path.getsize(path)} bytes; keep {labels['keep']} "
        f"({100 * labels['keep'] / max(1, len(docs)):.1f} %), reject {labels['reject']}; "
        f"{len(set(strict_key(d['source']) for d in docs))} distinct packages; "
        f"max per package {max(pk.values()) if pk else 0}; "
        f"text lengths {min(lens) if lens else 0}..{max(lens) if lens else 0}"
    )
    if not 150 <= len(docs) <= 220:
        errors.append(f"{len(docs)} documents (expected 150..220)")
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else f"{len(errors)} problems")
    return 1 if errors else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("collect")
    a.add_argument("--out", type=Path, default=CANDIDATES)
    a.add_argument("--seed", type=int, default=SEED)
    a = sub.add_parser("show")
    a.add_argument("ids", nargs="*")
    a.add_argument("--candidates", type=Path, default=CANDIDATES)
    a.add_argument("--head", type=int, default=900)
    a.add_argument("--mid", type=int, default=500)
    a = sub.add_parser("finalize")
    a.add_argument("--candidates", type=Path, default=CANDIDATES)
    a.add_argument("--out", type=Path, default=HOLDOUT_JSONL)
    a = sub.add_parser("validate")
    a.add_argument("path", type=Path, nargs="?", default=HOLDOUT_JSONL)
    args = ap.parse_args(argv)
    if args.cmd == "collect":
        cands = collect(args.seed)
        with open(args.out, "w", encoding="utf-8") as fh:
            for c in cands:
                fh.write(json.dumps(c, ensure_ascii=False) + "\n")
        cnt = collections.Counter(c["guess_kind"] for c in cands)
        print(f"wrote {len(cands)} candidates to {args.out}: {dict(cnt)}")
    elif args.cmd == "show":
        b.show(args.candidates, args.ids, args.head, args.mid)
    elif args.cmd == "finalize":
        finalize(args.candidates, args.out)
    elif args.cmd == "validate":
        return validate(args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
