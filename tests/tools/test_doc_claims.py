"""What the pages claim, checked against the repository: fast, text only, no site build.

* A speed number a page quotes ("0.87x raw", "470 ms") must be in a committed results
  file under ``docs/benchmarks/`` or ``docs/gpu/`` (at the precision quoted).
* A command must keep its ``--``: Sphinx's smartquotes turns ``--kit`` into an en dash
  (``–kit``) unless ``conf.py`` turns it off. The built site is checked by
  ``test_docs.py`` (which builds it) with :func:`lost_double_dashes`; here, the sources,
  ``conf.py`` and, if one exists, a site already built in ``docs/_build/html``.
* The tiny models are trained on toy pictures: no page, notebook or README sentence
  calls a tiny model "random", and none calls its answers "meaningless" (an untrained
  preset is called untrained).
* A memory fraction a page gives a family is the family registry's.

Each check has a test that feeds it a bad input and sees it fail.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RESULTS_DIRS = [DOCS / "benchmarks", DOCS / "gpu"]
# Pages whose prose is written by hand (results files and generated pages are the data).
PROSE_PAGES = [
    DOCS / "index.md",
    DOCS / "install.md",
    DOCS / "gpu.md",
    DOCS / "api.md",
    DOCS / "troubleshooting.md",
    DOCS / "benchmarks" / "index.md",
    DOCS / "gpu" / "README.md",
]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


# --- speed numbers ----------------------------------------------------------------

NUMBER = r"(\d+(?:\.\d+)?)"
RATIO = re.compile(NUMBER + r"x(?![\w])")
DURATION = re.compile(NUMBER + r"\s?(ms|s)\b")
SPEED_WORDS = re.compile(
    r"\b(time|times|faster|slower|speed|latency|TTFT|end to end|end-to-end|raw|took|"
    r"costs?|request)\b",
    re.I,
)
SIZE_WORDS = re.compile(r"\b(KB|MB|GB|KiB|MiB|GiB|bytes|memory|width|wide)\b")
# "calls of at most 600 s": a limit someone set, not a measurement.
LIMIT = re.compile(r"(?:at most|under|limit of|timeout|--timeout)\s+$", re.I)


@dataclass(frozen=True)
class Claim:
    """A number a page quotes, with its unit ("x", "ms" or "s") and where it stands."""

    value: str
    unit: str
    where: str


def sentences(text: str) -> list[str]:
    """Sentences of Markdown prose: paragraphs joined, table rows and list items apart."""
    pieces = re.split(r"\n\s*\n|\n(?=\s*(?:\||[-*] |#|\d+\. ))", text)
    out: list[str] = []
    for piece in pieces:
        out += re.split(r"(?<=[.!?])\s+(?=[A-Z(`*])", " ".join(piece.split()))
    return [sentence for sentence in out if sentence]


def speed_claims(text: str, where: str) -> list[Claim]:
    """Ratios of speed ("0.87x raw") and durations ("470 ms", "1.6 s") quoted in ``text``.

    A ratio counts as a speed claim in a sentence about time, not in one about sizes
    ("a 4.6x smaller payload" is a size).
    """
    claims = []
    for sentence in sentences(text):
        if SPEED_WORDS.search(sentence) and not SIZE_WORDS.search(sentence):
            claims += [Claim(m.group(1), "x", where) for m in RATIO.finditer(sentence)]
        claims += [
            Claim(m.group(1), m.group(2), where)
            for m in DURATION.finditer(sentence)
            if not LIMIT.search(sentence[: m.start()])
        ]
    return claims


def _numbers_in(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)] if math.isfinite(value) else []
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers_in(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers_in(item)]
    if isinstance(value, str):
        return [float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", value)]
    return []


def results_numbers(folders: list[Path]) -> dict[str, set[str]]:
    """Every number the results files hold, as text at every precision a page might quote.

    Returns ``{"x": ..., "ms": ..., "s": ...}``: the ratios, then the durations in ms and
    in s (a JSON value is in seconds or already in ms; both readings are kept).
    """
    found: dict[str, set[str]] = {"x": set(), "ms": set(), "s": set()}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix not in {".json", ".md", ".log"} or path.name == "README.md":
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            try:
                numbers = _numbers_in(json.loads(text)) if path.suffix == ".json" else []
            except ValueError:
                numbers = []
            numbers += [float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", text)]
            for number in numbers:
                for unit, scaled in (
                    ("x", [number]),
                    ("ms", [number, number * 1000]),
                    ("s", [number, number / 1000]),
                ):
                    for value in scaled:
                        found[unit].update(_spellings(value))
    return found


def _spellings(value: float) -> set[str]:
    """``value`` written with 0 to 3 decimals ("160.6" gives "161", "160.6", "160.60"...)."""
    return {f"{value:.{digits}f}" for digits in range(4)}


def unsupported(claims: list[Claim], numbers: dict[str, set[str]]) -> list[Claim]:
    """The claims whose number no results file holds."""
    return [claim for claim in claims if claim.value not in numbers[claim.unit]]


def page_texts() -> dict[str, str]:
    """The hand-written prose of the docs pages and of the notebooks' Markdown cells."""
    texts = {str(path.relative_to(ROOT)): path.read_text() for path in PROSE_PAGES}
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        markdown = [_source(cell) for cell in cells if cell["cell_type"] == "markdown"]
        texts[str(path.relative_to(ROOT))] = "\n\n".join(markdown)
    return texts


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


@pytest.fixture(scope="module")
def numbers() -> dict[str, set[str]]:
    return results_numbers(RESULTS_DIRS)


def test_speed_numbers_on_the_pages_are_in_committed_results(numbers) -> None:
    claims = [claim for where, text in page_texts().items() for claim in speed_claims(text, where)]
    assert any(claim.unit == "x" for claim in claims), "no speed ratio found on any page"
    missing = unsupported(claims, numbers)
    assert not missing, "speed numbers that no file under docs/benchmarks or docs/gpu holds:\n" + (
        "\n".join(f"{c.where}: {c.value}{' ' if c.unit != 'x' else ''}{c.unit}" for c in missing)
    )


def test_speed_check_fails_on_a_number_the_results_do_not_hold(tmp_path: Path) -> None:
    (tmp_path / "results.md").write_text("| raw | 1.00x |\n| precomputed | 0.87x | 63.9 ms |\n")
    (tmp_path / "results.json").write_text(json.dumps({"ttft_s": [0.4703]}))
    numbers = results_numbers([tmp_path])
    good = "Precomputed took 0.87x the raw time (63.9 ms to first token; the tower 470 ms)."
    assert unsupported(speed_claims(good, "good"), numbers) == []
    bad = "Precomputed is 0.93x raw end to end, and the tower takes 471 ms."
    assert unsupported(speed_claims(bad, "bad"), numbers) == [
        Claim("0.93", "x", "bad"),
        Claim("471", "ms", "bad"),
    ]
    # A size ratio is not a speed claim, nor is a limit.
    assert speed_claims("The embedding is 4.6x smaller than the pixels (786 KB).", "size") == []
    assert speed_claims("Each call stays under 600 s, at most 600 s.", "limit") == []


# --- commands keep their "--" ---------------------------------------------------------

LOST_DASH = re.compile(r"(?:^|[\s>`(\"'])(\u2013[A-Za-z][\w-]*)")


def lost_double_dashes(page_html: str) -> list[str]:
    """Options whose ``--`` became an en dash (``–kit``) in a page's text."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", page_html))
    return LOST_DASH.findall(text)


def test_sphinx_keeps_double_dashes() -> None:
    conf = (DOCS / "conf.py").read_text()
    assert re.search(r"^smartquotes\s*=\s*False\b", conf, re.M), (
        "docs/conf.py must set smartquotes = False: Sphinx renders --kit as an en dash"
    )
    for path in PROSE_PAGES:
        assert lost_double_dashes(path.read_text()) == [], path


def test_lost_dash_check_fails_on_an_en_dash_before_an_option() -> None:
    bad = "<pre>python tools/gpu_check.py \u2013kit .gpu-kit</pre><p>run <code>\u2013\u2013stage</code></p>"
    assert lost_double_dashes(bad) == ["\u2013kit"]
    good = "<pre>python tools/gpu_check.py --kit .gpu-kit</pre><td>\u2013</td><p>pages 5\u20137</p>"
    assert lost_double_dashes(good) == []


# --- the tiny models are trained, not random --------------------------------------------

RANDOM_TINY = re.compile(r"\btiny\b.*\brandom|\brandom\b.*\btiny\b", re.I)
MEANINGLESS = re.compile(r"\bmeaningless\b", re.I)


def random_tiny_claims(text: str) -> list[str]:
    """Sentences that call a tiny model random, or its answers meaningless."""
    return [
        sentence
        for sentence in sentences(text)
        if RANDOM_TINY.search(sentence) or MEANINGLESS.search(sentence)
    ]


def _described_texts() -> dict[str, str]:
    texts = {str(path.relative_to(ROOT)): path.read_text() for path in PROSE_PAGES}
    texts["README.md"] = (ROOT / "README.md").read_text()
    for path in sorted((DOCS / "_ext").glob("*.py")):
        texts[str(path.relative_to(ROOT))] = path.read_text()
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        texts[str(path.relative_to(ROOT))] = "\n\n".join(_source(cell) for cell in cells)
    return texts


def test_no_page_or_notebook_calls_the_tiny_models_random() -> None:
    found = {
        where: hits
        for where, text in _described_texts().items()
        if (hits := random_tiny_claims(text))
    }
    assert not found, "the tiny models are trained on toy pictures (an untrained preset is "
    "'untrained'):\n" + "\n".join(f"{where}: {hits}" for where, hits in found.items())


def test_random_tiny_check_fails_on_the_old_wording() -> None:
    old = (
        "Each notebook builds a tiny random-weight model of the real architecture.\n"
        "The tiny models' answers are meaningless text."
    )
    assert len(random_tiny_claims(old)) == 2
    fine = (
        "Each notebook uses a tiny model trained on toy pictures. Real-scale runs use "
        "random weights with the published configurations. The `text-heavy` preset is untrained."
    )
    assert random_tiny_claims(fine) == []


# --- the tutorial's memory fractions are the family registry's ------------------------

FAMILY_NAMES = {"qwen2_5_vl": "Qwen2.5-VL", "llama4": "Llama 4"}


def stated_fractions(text: str) -> dict[str, set[float]]:
    """Memory fractions a page gives per family, as ``mem_fraction_static=X`` beside its name.

    The name is the one right after the value ("0.6 for Qwen2.5-VL"), else the last one before
    it ("for Llama 4, ..., mem_fraction_static=0.7"); "..., and `0.7` for Llama 4" counts too.
    """
    names = "|".join(re.escape(name) for name in FAMILY_NAMES.values())
    after = re.compile(rf"`?\s(?:for|of)\s({names})")
    family_of = {name: family for family, name in FAMILY_NAMES.items()}
    found: dict[str, set[float]] = {}
    for m in re.finditer(r"mem_fraction_static=(\d\.\d+)`?", text):
        if following := after.match(text, m.end()):
            name = following.group(1)
        elif before := re.findall(names, text[max(0, m.start() - 150) : m.start()]):
            name = before[-1]
        else:
            continue
        found.setdefault(family_of[name], set()).add(float(m.group(1)))
        if also := re.match(rf"[^;\n]{{0,60}}? and `(\d\.\d+)` for ({names})", text[m.end() :]):
            found.setdefault(family_of[also.group(2)], set()).add(float(also.group(1)))
    return found


def test_pages_give_the_registrys_memory_fractions() -> None:
    from vlm_tutorial import get_family

    pages = [ROOT / "README.md", DOCS / "gpu.md", DOCS / "index.md", DOCS / "install.md"]
    for path in pages:
        for family, values in stated_fractions(path.read_text()).items():
            expected = get_family(family).engine_args["mem_fraction_static"]
            assert values == {expected}, f"{path.name} gives {family} {values}, not {expected}"
    assert stated_fractions((ROOT / "README.md").read_text()).keys() == FAMILY_NAMES.keys()


def test_fraction_check_finds_a_stale_value() -> None:
    stale = "for Qwen2.5-VL `mem_fraction_static=0.6`, for Llama 4 `tp_size=4`, `mem_fraction_static=0.8`"
    assert stated_fractions(stale) == {"qwen2_5_vl": {0.6}, "llama4": {0.8}}
    both = "`mem_fraction_static=0.6` for Qwen2.5-VL-3B and `0.8` for Llama 4 Scout, chosen"
    assert stated_fractions(both) == {"qwen2_5_vl": {0.6}, "llama4": {0.8}}
