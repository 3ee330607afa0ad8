"""The documentation site: its generators, its link check, and the built pages in Chromium.

The slow tests build the whole site once (``tools/build_docs.py``: the notebooks
are executed with papermill unless ``build/notebooks/`` holds fresh copies), then
open pages in headless Chromium, at a 1280 px window to check their layout and at a
390 px one for the landing diagram. Without Chromium those are skipped, with the
reason, before the site is built; where the ``CI`` environment variable is ``true``
(as CI services set it) a missing Chromium, Graphviz or docs tool fails instead.
Nothing else needs Graphviz: the diagram is committed, and only its redraw test wants
``dot``. The checks of what the pages claim (speed numbers, ``--`` in commands, the
tiny models' description) are in ``test_doc_claims.py``; they parse text, fast.
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

import vlm_tutorial
import vlm_tutorial.errors

ON_CI = os.environ.get("CI") == "true"  # CI services set CI=true: never skip there

if not ON_CI:
    for _module in ("sphinx", "myst_nb", "sphinx_book_theme"):
        pytest.importorskip(_module, reason="docs tools missing: pip install -e '.[docs]'")

ROOT = Path(__file__).resolve().parents[2]
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
vlm_api = _load(DOCS / "_ext" / "vlm_api.py")
check_links = _load(ROOT / "tools" / "check_links.py")
build_docs = _load(ROOT / "tools" / "build_docs.py")
draw_diagram = _load(ROOT / "tools" / "draw_diagram.py")
doc_claims = _load(Path(__file__).with_name("test_doc_claims.py"))

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


def test_gpu_copy_from_an_older_notebook_is_listed_not_rendered(tmp_path: Path) -> None:
    current = _nb([{"cell_type": "code", "source": "x = 2", "outputs": []}])
    injected = {
        "cell_type": "code",
        "metadata": {"tags": ["injected-parameters"]},
        "source": "max_new_tokens = 8",
        "outputs": [],
    }
    same = _nb([injected, {"cell_type": "code", "source": "x = 2\n", "outputs": []}])
    older = _nb(
        [{"cell_type": "code", "source": "x = 1", "outputs": []}],
        {"papermill": {"start_time": "2026-12-01T20:56:45+00:00"}},
    )
    # Papermill's parameters and trailing blank lines aside, the code must be the same.
    assert vlm_notebooks.code_cells(same) == vlm_notebooks.code_cells(current)
    assert vlm_notebooks.code_cells(older) != vlm_notebooks.code_cells(current)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"environment": {"gpu_names": ["NVIDIA H200"]}}))
    assert vlm_notebooks.recorded_on(older, results) == "NVIDIA H200, 2026-12-01"
    assert vlm_notebooks.recorded_on(current, tmp_path / "none.json").startswith("a GPU, date")
    cpu = tmp_path / "a.ipynb"
    cpu.write_text(json.dumps(_nb([], {"vlm_tutorial": {"engine": "e", "model": "m"}})))
    page = vlm_notebooks.notebooks_index([cpu], [], "gpu", {"a": "NVIDIA H200, 2026-12-01"})
    assert "on NVIDIA H200, 2026-12-01, from an older version of this notebook" in page
    assert "/gpu/a" not in page  # listed, not linked
    assert "No copy executed with SGLang on a GPU is committed yet" not in page


def test_api_reference_documents_the_root_names_and_the_reference_engine() -> None:
    names = vlm_api.documented()
    short = {name.rsplit(".", 1)[1] for name in names}
    assert short == set(vlm_tutorial.__all__) | {"ReferenceEngine"}
    assert all(name.startswith("vlm_tutorial.") for name in names)
    assert not any(module.startswith("vlm_bench") for module in vlm_api.public_modules())
    # A public member of a documented class is documented; a module helper is not.
    assert vlm_api.is_documented("vlm_tutorial.families.ModelFamily.engine_args_for")
    assert not vlm_api.is_documented("vlm_tutorial.families.is_hub_id")
    # An undocumented name that exists renders as code; one that does not exist fails.
    assert vlm_api.exists("families.is_hub_id") and vlm_api.exists("ImageDecodeError")
    assert not vlm_api.exists("vlm_tutorial.families.no_such_name")


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
        if ON_CI:
            pytest.fail("Graphviz's dot is required on CI (CI=true): apt-get install graphviz")
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
    if ON_CI:
        pytest.fail("chromium is required on CI (CI=true): apt-get install chromium")
    pytest.skip(
        "chromium not installed, so the built pages are not opened in a browser "
        "(apt-get install chromium; with CI=true, as on CI, this fails instead)"
    )


def _dump_dom(
    chromium: str, page: Path, profile: Path, window: str = "1280,900", *flags: str
) -> str:
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            *flags,
            f"--user-data-dir={profile}",
            f"--window-size={window}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=600,
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
    for gpu_page in sorted((site / "gpu").glob("*.html")):
        if (DOCS / "gpu" / f"{gpu_page.stem}.ipynb").is_file():
            assert "Outputs on this page" in gpu_page.read_text(), gpu_page.name


@pytest.mark.slow
def test_sidebar_lists_each_notebook_once(site: Path) -> None:
    page = (site / "index.html").read_text()
    nav = re.search(r'<nav class="bd-links bd-docs-nav".*?</nav>', page, re.S)
    assert nav, "no sidebar on the landing page"
    links = re.findall(r'<a class="reference internal" href="([^"#]+)"', nav.group(0))
    assert len(links) == len(set(links)), sorted(x for x in links if links.count(x) > 1)
    for name in _notebook_names():
        assert links.count(f"notebooks/{name}.html") == 1, name
    gpu_copies = [
        f"gpu/{path.stem}.html"
        for path in sorted((DOCS / "gpu").glob("*.ipynb"))
        if (site / "gpu" / f"{path.stem}.html").is_file()  # rendered: recorded from this code
    ]
    assert all(links.count(link) == 1 for link in gpu_copies), gpu_copies
    # The GPU copies are listed under the GPU page, after it, not among this build's notebooks.
    assert all(links.index(link) > links.index("gpu.html") for link in gpu_copies)


@pytest.mark.slow
def test_troubleshooting_page_lists_every_error_class(site: Path) -> None:
    page = (site / "troubleshooting.html").read_text()
    for cls in ERROR_CLASSES:
        assert f'id="{cls.__name__.lower()}"' in page, cls
        assert f'id="vlm_tutorial.errors.{cls.__name__}"' not in page  # linked, not redefined
        link = f'href="api/generated/vlm_tutorial.errors.html#vlm_tutorial.errors.{cls.__name__}"'
        # Linked to the API pages exactly when the class is one of the root's names.
        assert (link in page) == (cls.__name__ in vlm_tutorial.__all__), cls


@pytest.mark.slow
def test_api_reference_has_a_page_per_module_of_the_documented_names(site: Path) -> None:
    api = (site / "api.html").read_text()
    generated = site / "api" / "generated"
    pages = sorted(path.stem for path in generated.glob("*.html"))
    assert pages == sorted(vlm_api.public_modules())
    for module in pages:
        assert f'href="api/generated/{module}.html' in api, module
    text = "\n".join((generated / f"{module}.html").read_text() for module in pages)
    for full in vlm_api.documented():
        assert f'id="{full}"' in text, full
    assert 'id="vlm_tutorial.families.is_hub_id"' not in text  # not a root name
    assert "vlm_bench" not in " ".join(pages)


@pytest.mark.slow
def test_built_pages_keep_the_double_dashes_of_commands(site: Path) -> None:
    lost = {
        str(page.relative_to(site)): found
        for page in sorted(site.rglob("*.html"))
        if (found := doc_claims.lost_double_dashes(page.read_text(errors="replace")))
    }
    assert not lost, f"commands whose -- became an en dash: {lost}"
    assert "--kit" in (site / "gpu" / "README.html").read_text()  # the record's commands


MACHINE_PATH = re.compile(r"(?<![\w.])(/root/|/home/\w|/tmp/\w|/work/|/Users/)")


@pytest.mark.slow
def test_notebook_pages_show_error_messages_without_tracebacks_or_machine_paths(
    site: Path,
) -> None:
    for name in _notebook_names():
        page = (site / "notebooks" / f"{name}.html").read_text()
        outputs = " ".join(re.findall(r'<div class="cell_output.*?</div>\s*</div>', page, re.S))
        text = html.unescape(re.sub(r"<[^>]+>", "", outputs))
        assert "Traceback (most recent call last)" not in text, name
        assert not re.search(r"^\s*File \S+\.py:\d+", text, re.M), f"{name}: traceback frames"
        found = MACHINE_PATH.findall(text) + ([str(ROOT)] if str(ROOT) in text else [])
        assert not found, f"{name}: machine paths in outputs: {sorted(set(found))}"


@pytest.mark.slow
def test_gpu_copies_are_rendered_only_while_their_code_is_current(site: Path) -> None:
    index = (site / "notebooks" / "index.html").read_text()
    for recorded in sorted((DOCS / "gpu").glob("*.ipynb")):
        current = ROOT / "notebooks" / recorded.name
        is_current = current.is_file() and vlm_notebooks.code_cells(
            json.loads(recorded.read_text())
        ) == vlm_notebooks.code_cells(json.loads(current.read_text()))
        assert (site / "gpu" / f"{recorded.stem}.html").is_file() == is_current, recorded.name
        if not is_current:
            assert "from an older version of this notebook" in index, recorded.name


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
  // Notebook code and outputs: every line fits the code box or wraps inside it.
  let codeChars = null;
  for (const pre of article.querySelectorAll("div.cell_input pre, div.cell_output pre")) {
    if (pre.scrollWidth > pre.clientWidth + 1) {
      problems.push(`${name(pre)} runs ${pre.scrollWidth - pre.clientWidth} px past its code box`);
    }
    if (codeChars === null && pre.closest("div.cell_input")) {
      const ruler = document.createElement("span");
      ruler.style.cssText = "position:absolute;visibility:hidden;white-space:pre";
      ruler.textContent = "0".repeat(100);
      pre.appendChild(ruler);
      const style = getComputedStyle(pre);
      const room = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      codeChars = Math.floor(room / (ruler.getBoundingClientRect().width / 100));
      ruler.remove();
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
      {problems, blocks: blocks.length, cells: cells.length, window: root.clientWidth,
       codeChars}));
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
    if layout["codeChars"] is not None:
        print(f"{page}: a notebook code line of {layout['codeChars']} characters fits unwrapped")
    assert layout["problems"] == [], f"{page} at 1280 px:\n" + "\n".join(layout["problems"])


# Headless Chromium will not open a window narrower than about 500 px: the landing page
# is measured in a 390 px wide iframe (media queries see the iframe's width), and the
# probe inside it reports to the wrapper page, which --dump-dom returns.
DIAGRAM_PROBE = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const root = document.documentElement;
  const img = document.querySelector("figure.vlm-diagram img");
  const figure = img ? img.closest("figure") : null;
  const found = {window: root.clientWidth, pageWidth: root.scrollWidth,
                 width: img ? img.getBoundingClientRect().width : null,
                 figureRight: figure ? figure.getBoundingClientRect().right : null};
  parent.document.documentElement.setAttribute("data-vlm-diagram", JSON.stringify(found));
}, 100));
</script>
"""


def _dump_dom_in_frame(chromium: str, page: Path, profile: Path, width: int) -> str:
    wrapper = page.with_name(f"_frame_{width}_{page.name}")
    wrapper.write_text(
        f'<!DOCTYPE html><html><body style="margin:0"><iframe src="{page.name}" '
        f'style="width:{width}px;height:844px;border:0"></iframe></body></html>'
    )
    try:
        return _dump_dom(chromium, wrapper, profile, "800,900", "--allow-file-access-from-files")
    finally:
        wrapper.unlink()


@pytest.mark.slow
def test_landing_diagram_text_is_readable_on_a_phone(
    chromium: str, site: Path, tmp_path: Path
) -> None:
    """On a 390 px screen the diagram's smallest text is at least 10 px high (it scrolls)."""
    source = site / "index.html"
    probe = source.with_name("_diagram_probe_index.html")
    probe.write_text(source.read_text().replace("</body>", DIAGRAM_PROBE + "</body>", 1))
    try:
        dom = _dump_dom_in_frame(chromium, probe, tmp_path, width=390)
    finally:
        probe.unlink()
    found = re.search(r'data-vlm-diagram="([^"]*)"', dom)
    assert found, "the diagram probe did not run"
    measured = json.loads(html.unescape(found.group(1)))
    assert measured["window"] <= 390, measured  # measured at a phone's width
    assert measured["width"], "no diagram (figure.vlm-diagram img) on the landing page"
    # The figure scrolls inside the column: the picture does not widen the page.
    assert measured["figureRight"] <= measured["window"] + 1, measured
    svg = draw_diagram.SVG.read_text()
    view_width = float(re.search(r'viewBox="[\d.]+ [\d.]+ ([\d.]+)', svg).group(1))
    smallest = min(float(size) for size in re.findall(r'font-size="([\d.]+)"', svg))
    text_px = smallest * measured["width"] / view_width
    assert text_px >= 10, f"the diagram's smallest text is {text_px:.1f} px at 390 px: {measured}"
