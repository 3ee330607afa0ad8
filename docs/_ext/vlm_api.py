"""Sphinx extension: the API reference of whatever modules exist, and toctrees of optional pages.

* ``<!-- api-modules -->`` in the ``api`` page becomes an autosummary table of the
  public modules of ``vlm_tutorial`` found at build time (in :data:`MODULE_ORDER`
  first, then any others), with a hidden toctree of one generated page per module
  (``docs/api/generated/<module>.rst``, ignored by git) that runs ``automodule``.
* ``optional-toctree`` is a ``toctree`` that keeps only the entries (or glob
  patterns) that match a document, and renders nothing when none does: for pages
  that other work adds later (``gpu/README``, ``gpu/results``, ``upstream/*``).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

PACKAGE = "vlm_tutorial"
MARKER = "<!-- api-modules -->"
GENERATED = "api/generated"
# The order a reader meets the modules in; modules not listed follow alphabetically.
MODULE_ORDER = [
    "families",
    "images",
    "prompts",
    "validation",
    "requests",
    "vision",
    "reference",
    "engines",
    "notebook",
    "report",
    "tiny",
    "run_notebooks",
    "errors",
]


def public_modules() -> list[str]:
    """Importable public modules of the package (no ``_private`` ones, no ``__main__``)."""
    package = importlib.import_module(PACKAGE)
    found = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{PACKAGE}."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # a module that cannot import cannot be documented
            logger.warning(f"cannot import {info.name} for the API reference: {exc}")
            continue
        found.append(info.name)

    def key(name: str) -> tuple[int, str]:
        if name == PACKAGE:
            return -1, name
        top = name.split(".")[1]
        rank = MODULE_ORDER.index(top) if top in MODULE_ORDER else len(MODULE_ORDER)
        return rank, name

    return sorted(found, key=key)


def _stub(module: str) -> str:
    # The package root re-exports every public name: its docstring only, no duplicates.
    members = "   :members:\n   :show-inheritance:\n"
    options = "   :no-members:\n" if module == PACKAGE else members
    return f"{module}\n{'=' * len(module)}\n\n.. automodule:: {module}\n{options}"


def write_stubs(app: Sphinx) -> None:
    """``builder-inited``: one page per module under ``docs/api/generated/``."""
    folder = Path(app.srcdir) / GENERATED
    folder.mkdir(parents=True, exist_ok=True)
    modules = public_modules()
    wanted = {f"{module}.rst" for module in modules}
    for old in folder.glob("*.rst"):
        if old.name not in wanted:
            old.unlink()
    for module in modules:
        path = folder / f"{module}.rst"
        text = _stub(module)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    app.env.vlm_api_modules = modules  # type: ignore[attr-defined]


def api_index(modules: list[str]) -> str:
    """The Markdown that replaces the ``<!-- api-modules -->`` marker."""
    # autosummary writes reStructuredText into its table: run it through eval-rst.
    table = "\n".join(f"   {module}" for module in modules)
    pages = "\n".join(f"{GENERATED}/{module}" for module in modules)
    return (
        f"```{{eval-rst}}\n.. autosummary::\n\n{table}\n```\n\n"
        f":::{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{pages}\n:::\n"
    )


def replace_marker(app: Sphinx, docname: str, source: list[str]) -> None:
    if MARKER in source[0]:
        modules = getattr(app.env, "vlm_api_modules", None) or public_modules()
        source[0] = source[0].replace(MARKER, api_index(modules))


class OptionalTocTree(TocTree):
    """A ``toctree`` of the documents that exist: entries matching none are dropped.

    Glob patterns are expanded here, in name order, leaving out documents already
    listed. With no entry left it renders nothing. (The copies of the notebooks
    executed on a GPU, ``gpu/*.ipynb``, are listed here, under the GPU page; the
    notebooks page lists only this build's copies, so the sidebar shows each once.)
    """

    def run(self) -> list[nodes.Node]:
        found = self.env.found_docs
        here = self.env.docname
        kept: list[str] = []
        for line in self.content:
            entry = line.strip()
            if not entry:
                continue
            target = re.sub(r"^.*<(.*)>$", r"\1", entry)
            docname = target.lstrip("/") if target.startswith("/") else _join(here, target)
            docname = re.sub(r"\.(md|ipynb|rst)$", "", docname)
            if any(ch in docname for ch in "*?["):
                matches = [
                    doc
                    for doc in sorted(found)
                    if fnmatchcase(doc, docname) and doc != here
                ]
            else:
                matches = [docname] if docname in found else []
            kept += [f"/{doc}" for doc in matches if f"/{doc}" not in kept]
        if not kept:
            return []
        self.content = StringList(kept, self.content.source(0))
        return super().run()


def _join(base_doc: str, target: str) -> str:
    folder = base_doc.rsplit("/", 1)[0] if "/" in base_doc else ""
    return f"{folder}/{target}" if folder else target


class PageExists(SphinxDirective):
    """``{page-exists} docname``: render the content only if that document exists."""

    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        docname = self.arguments[0].lstrip("/")
        if docname not in self.env.found_docs:
            return []
        return self.parse_content_to_nodes()


def resolve_short_names(
    app: Sphinx, env: Any, node: nodes.Element, contnode: nodes.Element
) -> nodes.Element | None:
    """``missing-reference``: resolve names as the package's docstrings write them.

    ``vlm_tutorial.load_image`` (a re-export of the package root) resolves to the
    module that defines it; a bare ``ImageLoadError`` or ``families.get_family`` to
    the one documented object of the package whose full name ends with it.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    domain = env.get_domain("py")
    exports = getattr(importlib.import_module(PACKAGE), "_EXPORTS", {})
    name = target.removeprefix(f"{PACKAGE}.")
    candidates: list[str] = []
    if target.startswith(f"{PACKAGE}.") and name in exports:
        candidates = [f"{PACKAGE}.{exports[name]}.{name}"]
    elif not target.startswith(f"{PACKAGE}."):
        suffix = f".{target}"
        candidates = [
            full
            for full in domain.objects
            if full.startswith(f"{PACKAGE}.") and full.endswith(suffix)
        ]
    if len(candidates) != 1:
        return None
    new = node.deepcopy()
    new["reftarget"] = candidates[0]
    new["refspecific"] = False
    return domain.resolve_xref(
        env, node.get("refdoc", ""), app.builder, node["reftype"], candidates[0], new, contnode
    )


def napoleon_except_attributes(app: Sphinx) -> None:
    """Let napoleon parse functions and classes, but not attribute or property docstrings.

    On an attribute napoleon reads ``text before a colon: more text`` on the first
    line as the attribute's type; this package's one-line docstrings read naturally
    with a colon in them.
    """
    from sphinx.ext import napoleon

    listeners = app.events.listeners.get("autodoc-process-docstring", [])
    for listener in list(listeners):
        if listener.handler is napoleon._process_docstring:
            app.disconnect(listener.id)

    def process(
        app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
    ) -> None:
        if what not in {"attribute", "property", "data"}:
            napoleon._process_docstring(app, what, name, obj, options, lines)

    app.connect("autodoc-process-docstring", process)


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.autodoc")
    app.setup_extension("sphinx.ext.napoleon")
    napoleon_except_attributes(app)
    app.connect("missing-reference", resolve_short_names)
    app.connect("builder-inited", write_stubs)
    app.connect("source-read", replace_marker)
    app.add_directive("optional-toctree", OptionalTocTree)
    app.add_directive("if-page-exists", PageExists)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
