"""The documentation site: its generators, its link check, and the built pages in Chromium.

The slow tests build the whole site once (``tools/build_docs.py``: the notebooks
are executed with papermill unless ``build/notebooks/`` holds fresh copies), then
open pages in headless Chromium, some at a 1280 px window to check their layout.
Without Chromium those are skipped before the site is built, unless
``VLM_TUTORIAL_REQUIRE_CHROMIUM=1`` (CI) makes that a failure. Nothing here needs
Graphviz: the diagram is committed, and only its redraw test wants ``dot``.
"""

from __future__ import annotations

import html
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import vlm_tutorial.errors

if os.environ.get("VLM_TUTORIAL_REQUIRE_CHROMIUM") != "1":  # CI has the docs tools: never skip
    for _module in ("sphinx", "myst_nb", "sphinx_book_theme"):
        pytest.importorskip(_module, reason="docs tools missing: pip install -e '.[docs]'")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


sys.path.insert(0, str(DOCS / "_ext"))  # the extensions import each other


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


vlm_errors = _load(DOCS / "_ext" / "vlm_errors.py")
vlm_notebooks = _load(DOCS / "_ext" / "vlm_notebooks.py")
check_links = _load(ROOT / "scripts" / "check_links.py")
build_docs = _load(ROOT / "scripts" / "build_docs.py")
draw_diagram = _load(ROOT / "scripts" / "draw_diagram.py")

ERROR_CLASSES = [
    obj
    for _, obj in inspect.getmembers(vlm_tutorial.errors, inspect.isclass)
    if issubclass(obj, BaseException) and obj.__module__ == "vlm_tutorial.errors"
]


# --- fast tests of the generators and the link check -------------------------------


def test_error_catalogue_covers_every_class_with_its_docstring() -> None:
    text = vlm_errors.render_catalogue()
    assert ERROR_CLASSES, "vlm_tutorial.errors defines no exception class"
    for cls in ERROR_CLASSES:
        assert f"### {cls.__name__}\n" in text, cls
        first_line = inspect.cleandoc(cls.__doc__).splitlines()[0]
        assert first_line in text, cls


def test_error_catalogue_quotes_the_raise_sites_from_the_source() -> None:
    sites = vlm_errors.find_sites({"UnknownModelFamilyError"})
    assert sites, "no raise of UnknownModelFamilyError found"
    assert all(site.module.startswith("vlm_tutorial.") for site in sites)
    # A real message template, with the run-time value shown as {...}.
    assert any(site.message and "{" in site.message for site in sites)
    assert "get_family" in {site.qualname for site in sites}
    # A name that is never raised has no sites (the finder can say no).
    assert vlm_errors.find_sites({"NoSuchErrorAnywhere"}) == []


def test_message_template_reads_fstrings_and_helpers() -> None:
    import ast

    tree = ast.parse(
        "def _msg(n):\n    return f'got {n} rows'\n"
        "raise RequestFormatError(f'bad {value!r}: ' 'fix it')\n"
        "raise RequestFormatError(_msg(3))\n"
    )
    helpers = {"_msg": tree.body[0]}
    first, second = (node.exc.args[0] for node in tree.body[1:])
    assert vlm_errors._template(first, helpers) == "bad {value!r}: fix it"
    assert vlm_errors._template(second, helpers) == "got {n} rows"
    assert vlm_errors._template(ast.parse("x", mode="eval").body, helpers) is None


def _nb(cells: list[dict], metadata: dict | None = None) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {}, "cells": cells}


def _stream(text: str) -> dict:
    return {
        "cell_type": "code",
        "source": "print()",
        "outputs": [{"output_type": "stream", "name": "stdout", "text": text}],
    }


def test_provenance_reads_the_runner_metadata() -> None:
    nb = _nb(
        [],
        {
            "vlm_tutorial": {
                "engine": "sglang",
                "model": "Qwen/Qwen2.5-VL-3B-Instruct",
                "seconds": 41.6,
            }
        },
    )
    assert vlm_notebooks.provenance(nb) == {
        "engine": "sglang",
        "model": "Qwen/Qwen2.5-VL-3B-Instruct",
        "seconds": "42",
    }


def test_provenance_falls_back_to_printed_lines_and_else_is_unknown() -> None:
    printed = _nb([_stream("Engine: transformers reference engine\nModel: tiny llama4\n")])
    assert vlm_notebooks.provenance(printed) == {
        "engine": "transformers reference engine",
        "model": "tiny llama4",
    }
    assert vlm_notebooks.provenance(_nb([_stream("Engine: x\n")])) is None
    assert vlm_notebooks.provenance(_nb([], {"vlm_tutorial": {"engine": None}})) is None


def test_provenance_note_goes_under_the_title() -> None:
    nb = _nb(
        [
            {"cell_type": "code", "source": "x = 1", "outputs": []},
            {"cell_type": "markdown", "source": ["# Title\n", "Intro."]},
            {"cell_type": "markdown", "source": "## More"},
        ]
    )
    vlm_notebooks.add_provenance_cell(nb, "NOTE")
    assert [cell["source"] for cell in nb["cells"]][2] == "NOTE"
    assert nb["cells"][2]["id"]  # nbformat 4.5 cells need an id


def test_retitle_and_widget_outputs() -> None:
    widget = {
        "output_type": "display_data",
        "data": {
            "application/vnd.jupyter.widget-view+json": {"model_id": "x"},
            "text/plain": "0%|",
        },
    }
    text = {"output_type": "stream", "name": "stdout", "text": "kept"}
    nb = _nb(
        [
            {"cell_type": "markdown", "source": ["Intro\n", "# Llama 4\n", "more"]},
            {"cell_type": "code", "source": "", "outputs": [widget, text]},
        ],
        {"widgets": {}},
    )
    vlm_notebooks.retitle(nb, "{} (recorded on a GPU)")
    assert nb["cells"][0]["source"] == "Intro\n# Llama 4 (recorded on a GPU)\nmore"
    assert vlm_notebooks.drop_widget_outputs(nb) == 1
    assert nb["cells"][1]["outputs"] == [text] and "widgets" not in nb["metadata"]


def test_notebooks_index_puts_gpu_copies_beside_cpu_ones(tmp_path: Path) -> None:
    def write(path: Path, engine: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                _nb(
                    [{"cell_type": "markdown", "source": "# The title"}],
                    {"vlm_tutorial": {"engine": engine, "model": "m"}},
                )
            )
        )
        return path

    cpu = [
        write(tmp_path / "cpu" / "a.ipynb", "cpu-engine"),
        write(tmp_path / "cpu" / "b.ipynb", "e"),
    ]
    gpu = [write(tmp_path / "gpu" / "a.ipynb", "sglang")]
    page = vlm_notebooks.notebooks_index(cpu, gpu, "gpu")
    entry_a = page.split("`a.ipynb`")[1].split("`b.ipynb`")[0]
    assert "{doc}`outputs of this build </notebooks/a>`: engine cpu-engine; model m" in entry_a
    assert "{doc}`recorded on a GPU with SGLang </gpu/a>`: engine sglang; model m" in entry_a
    entry_b = page.split("`b.ipynb`")[1].split(":::")[0]
    assert "recorded on a GPU with SGLang: not yet" in entry_b
    assert page.split(":::{toctree}")[1].split() == [
        ":hidden:",
        ":maxdepth:",
        "1",
        "/notebooks/a",
        "/notebooks/b",
        ":::",
    ]


def _write_site(root: Path, page_b: str) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text(
        '<a href="sub/b.html#here">b</a> <a href="#top">top</a> <h1 id="top">t</h1>'
        '<a href="https://example.org/">external link, not fetched</a>'
        '<link rel="stylesheet" href="_static/s.css"><a href="sub/">folder</a>'
    )
    (root / "_static").mkdir()
    (root / "_static" / "s.css").write_text("")
    (root / "sub" / "index.html").write_text("")
    (root / "sub" / "b.html").write_text(page_b)


def test_link_check_accepts_a_sound_site(tmp_path: Path) -> None:
    _write_site(tmp_path, '<p id="here">x</p>')
    problems, checked = check_links.check_site(tmp_path)
    assert problems == []
    assert checked == 4


def test_link_check_reports_missing_files_anchors_and_remote_assets(tmp_path: Path) -> None:
    _write_site(
        tmp_path,
        '<p id="elsewhere">x</p><a href="../gone.html">gone</a>'
        '<script src="https://cdn.example.org/x.js"></script>',
    )
    problems, _ = check_links.check_site(tmp_path)
    text = "\n".join(problems)
    assert "no id 'here' in sub/b.html" in text
    assert "no such file gone.html" in text
    assert "loads a remote asset <script> https://cdn.example.org/x.js" in text
    assert len(problems) == 3


def test_stale_notebooks(tmp_path: Path) -> None:
    source, executed, package = tmp_path / "nb", tmp_path / "out", tmp_path / "pkg"
    for folder in (source, executed, package):
        folder.mkdir()
    (package / "m.py").write_text("")
    a, b = source / "a.ipynb", source / "b.ipynb"
    for path in (a, b, executed / "a.ipynb"):
        path.write_text("{}")
    os.utime(package / "m.py", (1000, 1000))
    os.utime(a, (1000, 1000))
    os.utime(executed / "a.ipynb", (2000, 2000))
    (package / "__pycache__").mkdir()  # compiled files do not count
    (package / "__pycache__" / "m.cpython-311.pyc").write_text("")
    assert build_docs.stale_notebooks([a, b], executed, package) == ["b.ipynb"]
    os.utime(package / "m.py", (3000, 3000))  # the package changed after the run
    assert build_docs.stale_notebooks([a], executed, package) == ["a.ipynb"]


def _svg_labels(svg: str) -> list[str]:
    """The texts and node/edge titles of an SVG drawn by Graphviz, in document order."""
    return [
        html.unescape(text)
        for text in re.findall(r"<(?:text|title)\b[^>]*>([^<]*)</(?:text|title)>", svg)
    ]


def test_committed_diagram_is_drawn_from_the_current_dot_source() -> None:
    svg = draw_diagram.SVG.read_text()
    assert draw_diagram.recorded_hash(draw_diagram.SVG) == draw_diagram.source_hash(
        draw_diagram.DOT
    ), "docs/diagram/formats.dot changed: run python tools/draw_diagram.py and commit the SVG"
    labels = _svg_labels(svg)
    for label in ("SGLang's processor", "vision tower", "LLM", "generated text"):
        assert label in labels, label


def test_stale_diagram_without_dot_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    dot, svg = tmp_path / "d.dot", tmp_path / "d.svg"
    dot.write_text("digraph { a -> b }\n")
    monkeypatch.setattr(draw_diagram.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        draw_diagram.ensure_current(dot, svg)  # no SVG at all
    mark = f"<!-- drawn by tools/draw_diagram.py from d.dot, sha256 {'0' * 64} -->"
    svg.write_text(f"{mark}\n<svg></svg>\n")
    with pytest.raises(RuntimeError, match="not drawn from the current d.dot"):
        draw_diagram.ensure_current(dot, svg)  # drawn from another source
    svg.write_text(mark.replace("0" * 64, draw_diagram.source_hash(dot)) + "\n<svg></svg>\n")
    assert draw_diagram.ensure_current(dot, svg) == "d.svg is current"  # no dot needed


def test_diagram_redrawn_where_dot_exists_matches_the_committed_one(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot not installed: the committed diagram is used as it is")
    dot, svg = tmp_path / "formats.dot", tmp_path / "formats.svg"
    dot.write_bytes(draw_diagram.DOT.read_bytes())
    assert draw_diagram.ensure_current(dot, svg) == "redrew formats.svg from formats.dot"
    assert draw_diagram.is_current(dot, svg)
    assert _svg_labels(svg.read_text()) == _svg_labels(draw_diagram.SVG.read_text())
    assert draw_diagram.ensure_current(dot, svg) == "formats.svg is current"


# --- the built site -----------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "html"
    result = subprocess.run(
        [sys.executable, "tools/build_docs.py", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert result.returncode == 0, (
        f"docs build failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    )
    assert "links ok" in result.stdout
    return out


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of headless Chromium; skips (outside CI) before the site is built without it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("VLM_TUTORIAL_REQUIRE_CHROMIUM") == "1":
        pytest.fail(
            "chromium is required (VLM_TUTORIAL_REQUIRE_CHROMIUM=1): apt-get install chromium"
        )
    pytest.skip(
        "chromium not installed, so the built pages are not opened in a browser "
        "(apt-get install chromium; CI sets VLM_TUTORIAL_REQUIRE_CHROMIUM=1 to fail instead)"
    )


def _dump_dom(chromium: str, page: Path, profile: Path, window: str = "1280,900") -> str:
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={window}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "<html" in result.stdout, result.stderr[-3000:]
    return result.stdout


def _notebook_names() -> list[str]:
    return sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
def test_landing_page_in_chromium(chromium: str, site: Path, tmp_path: Path) -> None:
    dom = _dump_dom(chromium, site / "index.html", tmp_path)
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title and "Vision-language models with SGLang" in title.group(1)
    diagram = re.search(r'<img [^>]*src="(_images/formats[^"]*\.svg)"', dom)
    assert diagram, "the formats diagram is not on the landing page"
    svg = (site / diagram.group(1)).read_text()
    for label in (
        "SGLang&#39;s processor",
        "vision tower",
        "LLM",
        "processor_output",
        "precomputed_embedding",
    ):
        assert label.replace("&#39;", "'") in svg.replace("&#39;", "'"), label
    for page in (
        "install.html",
        "notebooks/index.html",
        "gpu.html",
        "troubleshooting.html",
        "api.html",
    ):
        assert f'href="{page}"' in dom, page


@pytest.mark.slow
def test_notebook_page_in_chromium_shows_outputs_and_provenance(
    chromium: str, site: Path, tmp_path: Path
) -> None:
    names = _notebook_names()
    assert names, "no notebooks in notebooks/"
    dom = _dump_dom(chromium, site / "notebooks" / f"{names[0]}.html", tmp_path)
    assert "Outputs on this page" in dom
    assert re.search(r"Engine: <strong>[^<]+</strong>", dom)
    assert re.search(r"Model: <strong>[^<]+</strong>", dom)
    assert dom.count('class="cell_output') >= 1, "no rendered cell output"
    executed = json.loads((ROOT / "build" / "notebooks" / f"{names[0]}.ipynb").read_text())
    title = vlm_notebooks.notebook_title(executed, names[0]).replace("`", "")
    shown = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert shown and html.unescape(shown.group(1)).replace("\u2019", "'").startswith(title)


@pytest.mark.slow
def test_every_notebook_is_rendered_with_its_engine_and_model(site: Path) -> None:
    index = (site / "notebooks" / "index.html").read_text()
    for name in _notebook_names():
        page = site / "notebooks" / f"{name}.html"
        assert page.is_file(), name
        assert f"{name}.html" in index, name
        assert "Outputs on this page" in page.read_text(), name
    for gpu_copy in sorted((DOCS / "gpu").glob("*.ipynb")):
        assert "Outputs on this page" in (site / "gpu" / f"{gpu_copy.stem}.html").read_text()


@pytest.mark.slow
def test_sidebar_lists_each_notebook_once(site: Path) -> None:
    page = (site / "index.html").read_text()
    nav = re.search(r'<nav class="bd-links bd-docs-nav".*?</nav>', page, re.S)
    assert nav, "no sidebar on the landing page"
    links = re.findall(r'<a class="reference internal" href="([^"#]+)"', nav.group(0))
    assert len(links) == len(set(links)), sorted(x for x in links if links.count(x) > 1)
    for name in _notebook_names():
        assert links.count(f"notebooks/{name}.html") == 1, name
    gpu_copies = [f"gpu/{path.stem}.html" for path in sorted((DOCS / "gpu").glob("*.ipynb"))]
    assert all(links.count(link) == 1 for link in gpu_copies), gpu_copies
    # The GPU copies are listed under the GPU page, after it, not among this build's notebooks.
    assert all(links.index(link) > links.index("gpu.html") for link in gpu_copies)


@pytest.mark.slow
def test_troubleshooting_page_lists_every_error_class(site: Path) -> None:
    page = (site / "troubleshooting.html").read_text()
    for cls in ERROR_CLASSES:
        assert f'id="{cls.__name__.lower()}"' in page, cls
        assert f'id="vlm_tutorial.errors.{cls.__name__}"' not in page  # linked, not redefined
        assert (
            f'href="api/generated/vlm_tutorial.errors.html#vlm_tutorial.errors.{cls.__name__}"'
            in page
        )


@pytest.mark.slow
def test_api_reference_has_a_page_per_module(site: Path) -> None:
    api = (site / "api.html").read_text()
    for module in ("vlm_tutorial.errors", "vlm_tutorial.families", "vlm_bench.requests"):
        assert (site / "api" / "generated" / f"{module}.html").is_file(), module
        assert f'href="api/generated/{module}.html' in api, module
    errors_page = (site / "api" / "generated" / "vlm_tutorial.errors.html").read_text()
    for cls in ERROR_CLASSES:
        assert f'id="vlm_tutorial.errors.{cls.__name__}"' in errors_page, cls


# Measures the laid-out page in Chromium: runs after the page's own scripts, and writes
# what it found into an attribute of <html> for --dump-dom to return.
LAYOUT_PROBE = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const problems = [];
  const root = document.documentElement;
  const article = document.querySelector("article.bd-article");
  const name = (el) => {
    const text = el.textContent.trim().replace(/\\s+/g, " ").slice(0, 50);
    return `<${el.tagName.toLowerCase()}> "${text}"`;
  };
  const inner = (el) => {
    const box = el.getBoundingClientRect(), style = getComputedStyle(el);
    return {left: box.left + parseFloat(style.paddingLeft),
            right: box.right - parseFloat(style.paddingRight)};
  };
  if (root.scrollWidth > root.clientWidth + 1) {
    problems.push(`the page is ${root.scrollWidth} px wide in a ${root.clientWidth} px window`);
  }
  const column = inner(article);
  const blocks = article.querySelectorAll("table, pre");
  for (const el of blocks) {
    let scroller = null;
    for (let node = el; node && node !== article; node = node.parentElement) {
      if (["auto", "scroll"].includes(getComputedStyle(node).overflowX)) { scroller = node; break; }
    }
    const outer = scroller || el;
    const box = outer.getBoundingClientRect();
    const parent = inner(outer.parentElement);
    const room = {left: Math.max(column.left, parent.left), right: Math.min(column.right, parent.right)};
    if (box.right > room.right + 1 || box.left < room.left - 1) {
      problems.push(`${name(el)} spans ${Math.round(box.left)}-${Math.round(box.right)} px, ` +
                    `its column ${Math.round(room.left)}-${Math.round(room.right)} px` +
                    (scroller ? " (its scrolling wrapper is too wide)" : ", and nothing scrolls it"));
    }
    if (!scroller && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${name(el)} clips ${el.scrollWidth - el.clientWidth} px of its content`);
    }
  }
  // The sidebar's entries wrap inside it.
  const sidebar = document.querySelector(".bd-sidebar-primary");
  if (sidebar && sidebar.getBoundingClientRect().width > 0) {
    // Its entries may use its padding, not more: up to the edge of its visible area.
    const edge = sidebar.getBoundingClientRect().left + sidebar.clientLeft + sidebar.clientWidth;
    for (const el of sidebar.querySelectorAll("a, code")) {
      if (el.getBoundingClientRect().right > edge + 1) {
        problems.push(`sidebar entry ${name(el)} runs past the sidebar`);
      }
    }
  }
  // A table column squeezed until its prose runs one word per line: a cell of six
  // words or more, wrapped to fewer than two words per line on average.
  const cells = article.querySelectorAll("td, th");
  for (const cell of cells) {
    const words = cell.textContent.trim().split(/\\s+/).filter(Boolean).length;
    if (words < 6) continue;
    const style = getComputedStyle(cell);
    const lineHeight = parseFloat(style.lineHeight) || 1.2 * parseFloat(style.fontSize);
    const range = document.createRange();
    range.selectNodeContents(cell);
    const lines = Math.round(range.getBoundingClientRect().height / lineHeight);
    if (2 * lines > words) {
      problems.push(`${name(cell)}: ${words} words on ${lines} lines ` +
                    `(its column is ${Math.round(cell.getBoundingClientRect().width)} px)`);
    }
  }
  root.setAttribute("data-vlm-layout", JSON.stringify(
      {problems, blocks: blocks.length, cells: cells.length, window: root.clientWidth}));
}, 100));
</script>
"""


def _layout_pages() -> list[str]:
    """The landing page, each tutorial notebook, and the benchmark pages."""
    benchmarks = sorted(
        str(path.relative_to(DOCS).with_suffix(".html"))
        for path in (DOCS / "benchmarks").rglob("*.md")
    )
    return [
        "index.html",
        *(f"notebooks/{name}.html" for name in _notebook_names()),
        *benchmarks,
    ]


@pytest.mark.slow
@pytest.mark.parametrize("page", _layout_pages())
def test_page_layout_at_1280px(chromium: str, site: Path, tmp_path: Path, page: str) -> None:
    """At a 1280 px window, wide tables and code scroll inside their wrapper, nothing else."""
    source = site / page
    # A copy beside the page, so that its relative links to the theme's CSS still resolve.
    probe = source.with_name(f"_layout_probe_{source.name}")
    text = source.read_text()
    assert "</body>" in text, page
    probe.write_text(text.replace("</body>", LAYOUT_PROBE + "</body>", 1))
    try:
        dom = _dump_dom(chromium, probe, tmp_path, window="1280,900")
    finally:
        probe.unlink()
    found = re.search(r'data-vlm-layout="([^"]*)"', dom)
    assert found, f"the layout probe did not run on {page}"
    layout = json.loads(html.unescape(found.group(1)))
    assert layout["window"] >= 1200, layout  # the two-sidebar layout was measured
    assert layout["problems"] == [], f"{page} at 1280 px:\n" + "\n".join(layout["problems"])
