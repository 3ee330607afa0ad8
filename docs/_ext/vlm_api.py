"""Sphinx extension: the API reference of the package's public names, and optional toctrees.

* ``<!-- api-modules -->`` in the ``api`` page becomes a table of the documented
  names: the package root's ``__all__`` (read at build time) plus the names of
  :data:`EXTRA` (the CPU stand-in's ``ReferenceEngine``). Each name is documented
  once, on a generated page of the module that defines it
  (``docs/api/generated/<module>.rst``, ignored by git), which also shows the
  module's docstring. Other module-level names of the package are not on the site.
* A cross-reference to a name of the package that exists but is not documented
  renders as plain code; one to a name that does not exist at all stays an
  unresolved reference (an error under ``-n -W``), so a stale docstring still
  fails the build.
* ``optional-toctree`` is a ``toctree`` that keeps only the entries (or glob
  patterns) that match a document, and renders nothing when none does: for pages
  that other work adds later (``gpu/README``, ``gpu/results``, ``upstream/*``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

PACKAGE = "vlm_tutorial"
MARKER = "<!-- api-modules -->"
GENERATED = "api/generated"
# Public names documented beside the root's __all__: {package to import from: [names]}.
EXTRA = {f"{PACKAGE}.offline": ["ReferenceEngine"]}
# The order a reader meets the modules in; modules not listed follow alphabetically.
MODULE_ORDER = [
    "families",
    "images",
    "prompts",
    "validation",
    "vision",
    "settings",
    "report",
    "errors",
    "offline",
]


def _find(package: str, name: str) -> Any:
    """``package.name``, or the object of that name in one of the package's submodules."""
    module = importlib.import_module(package)
    if hasattr(module, name):
        return getattr(module, name)
    for info in pkgutil.iter_modules(getattr(module, "__path__", []), prefix=f"{package}."):
        try:
            sub = importlib.import_module(info.name)
        except Exception:  # a broken submodule cannot hold the name
            continue
        if hasattr(sub, name):
            return getattr(sub, name)
    raise AttributeError(f"{package} has no public name {name}")


def documented() -> dict[str, Any]:
    """``{full name where it is defined: object}`` of every name the reference documents.

    Example:
        >>> "vlm_tutorial.images.load_image" in documented()  # doctest: +SKIP
        True
    """
    root = importlib.import_module(PACKAGE)
    wanted = [(PACKAGE, name) for name in getattr(root, "__all__", [])]
    wanted += [(package, name) for package, names in EXTRA.items() for name in names]
    found: dict[str, Any] = {}
    for package, name in wanted:
        try:
            obj = _find(package, name)
        except Exception as exc:  # the package is being changed: say so, keep building
            logger.warning(f"cannot document {package}.{name}: {exc}")
            continue
        found[f"{_defining_module(package, name, obj)}.{name}"] = obj
    return found


def _defining_module(package: str, name: str, obj: Any) -> str:
    """The module that defines ``obj``: its ``__module__``, or for data (``FAMILIES``) the
    module of the package whose source assigns the name."""
    if _has_own_module(obj):
        return str(obj.__module__)
    for module in _package_modules():
        if not module.startswith(package):
            continue
        try:
            source = inspect.getsource(importlib.import_module(module))
        except (OSError, TypeError, ImportError):
            continue
        if re.search(rf"^{re.escape(name)}\s*[:=]", source, re.M):
            return module
    return package


def _has_own_module(obj: Any) -> bool:
    module = getattr(obj, "__module__", None)
    return (inspect.isclass(obj) or inspect.isfunction(obj)) and bool(
        module and module.startswith(PACKAGE)
    )


def is_documented(full_name: str) -> bool:
    """Whether ``full_name`` (a documented name, or a public member of a documented class) has
    an entry on the API pages."""
    names = _documented_cached()
    if full_name in names:
        return True
    owner, _, member = full_name.rpartition(".")
    cls = names.get(owner)
    if not inspect.isclass(cls) or member.startswith("_"):
        return False
    value = inspect.getattr_static(cls, member, None)
    return value is not None and bool(getattr(getattr(cls, member, None), "__doc__", None))


@functools.cache
def _documented_cached() -> dict[str, Any]:
    return documented()


def public_modules() -> list[str]:
    """The modules with a page in the reference: those that define a documented name."""
    modules = {name.rsplit(".", 1)[0] for name in _documented_cached()}

    def key(name: str) -> tuple[int, str]:
        top = name.split(".")[1] if "." in name else ""
        rank = MODULE_ORDER.index(top) if top in MODULE_ORDER else len(MODULE_ORDER)
        return rank, name

    return sorted(modules, key=key)


def _directive(full_name: str, obj: Any) -> str:
    if inspect.isclass(obj):
        return f".. autoclass:: {full_name}\n   :members:\n   :show-inheritance:\n"
    if callable(obj):
        return f".. autofunction:: {full_name}\n"
    module, name = full_name.rsplit(".", 1)
    try:
        has_doc = ("", name) in ModuleAnalyzer.for_module(module).find_attr_docs()
    except Exception:  # no source to read
        has_doc = False
    if has_doc:  # a "#:" comment or a docstring under the assignment
        return f".. autodata:: {full_name}\n   :no-value:\n"
    # Without one, autodoc would show the docstring of the value's type (dict's).
    kind = type(obj).__name__
    keys = ", ".join(f"``{key!r}``" for key in list(obj)[:8]) if isinstance(obj, dict) else ""
    about = f"A ``{kind}``" + (f" with the keys {keys}." if keys else ".")
    return f".. py:data:: {name}\n   :module: {module}\n\n   {about}\n"


def _stub(module: str, names: dict[str, Any]) -> str:
    """A module's page: its docstring, then each documented name it defines, in source order."""
    own = [(full, obj) for full, obj in names.items() if full.rsplit(".", 1)[0] == module]
    own.sort(key=lambda item: _source_line(module, item[0].rsplit(".", 1)[1]))
    body = "\n".join(_directive(full, obj) for full, obj in own)
    return f"{module}\n{'=' * len(module)}\n\n.. automodule:: {module}\n   :no-members:\n\n{body}"


def _source_line(module: str, name: str) -> int:
    try:
        source = inspect.getsource(importlib.import_module(module))
    except (OSError, TypeError):
        return 0
    found = re.search(rf"^(?:class |def |){re.escape(name)}\b", source, re.M)
    return found.start() if found else len(source)


def write_stubs(app: Sphinx) -> None:
    """``builder-inited``: one page per module under ``docs/api/generated/``."""
    folder = Path(app.srcdir) / GENERATED
    folder.mkdir(parents=True, exist_ok=True)
    names = _documented_cached()
    modules = public_modules()
    wanted = {f"{module}.rst" for module in modules}
    for old in folder.glob("*.rst"):
        if old.name not in wanted:
            old.unlink()
    for module in modules:
        path = folder / f"{module}.rst"
        text = _stub(module, names)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    app.env.vlm_api_modules = modules  # type: ignore[attr-defined]


def api_index(modules: list[str], names: dict[str, Any]) -> str:
    """The Markdown that replaces the ``<!-- api-modules -->`` marker: a table per module.

    Functions and classes go into an autosummary table (their first docstring line);
    data, whose docstring autosummary would take from its type, into a list.
    """
    parts = []
    for module in modules:
        own = sorted(
            (name for name in names if name.rsplit(".", 1)[0] == module),
            key=lambda full: _source_line(module, full.rsplit(".", 1)[1]),
        )
        code = [name for name in own if callable(names[name])]
        data = [name for name in own if not callable(names[name])]
        part = f"## `{module}`\n\n"
        if code:
            table = "\n".join(f"   ~{name}" for name in code)
            part += f"```{{eval-rst}}\n.. autosummary::\n\n{table}\n```\n\n"
        part += "".join(f"- {{py:data}}`~{name}`\n" for name in data)
        parts.append(part)
    pages = "\n".join(f"{GENERATED}/{module}" for module in modules)
    return "\n".join(parts) + f"\n:::{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{pages}\n:::\n"


def replace_marker(app: Sphinx, docname: str, source: list[str]) -> None:
    if MARKER in source[0]:
        modules = getattr(app.env, "vlm_api_modules", None) or public_modules()
        # The module pages, linked from the table above each module's names.
        source[0] = source[0].replace(MARKER, api_index(modules, _documented_cached()))


class OptionalTocTree(TocTree):
    """A ``toctree`` of the documents that exist: entries matching none are dropped.

    Glob patterns are expanded here, in name order, leaving out documents already
    listed. With no entry left it renders nothing.
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
                    doc for doc in sorted(found) if fnmatchcase(doc, docname) and doc != here
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
    """``{if-page-exists} docname``: render the content only if that document exists."""

    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        docname = self.arguments[0].lstrip("/")
        if docname not in self.env.found_docs:
            return []
        return self.parse_content_to_nodes()


@functools.cache
def _package_modules() -> tuple[str, ...]:
    package = importlib.import_module(PACKAGE)
    found = [PACKAGE]
    # A subpackage that fails to import (the package is being changed) is skipped.
    infos = pkgutil.walk_packages(package.__path__, f"{PACKAGE}.", onerror=lambda name: None)
    for info in infos:
        if info.name.rsplit(".", 1)[-1] != "__main__":
            found.append(info.name)
    return tuple(found)


def exists(target: str) -> bool:
    """Whether ``target`` names something in the package: a full dotted name, or a name
    relative to one of its modules (``ImageDecodeError``, ``families.is_hub_id``)."""
    bases = [""] if target.startswith(f"{PACKAGE}.") or target == PACKAGE else []
    bases += [f"{module}." for module in _package_modules()]
    for base in bases:
        full = base + target
        parts = full.split(".")
        for cut in range(len(parts), 0, -1):
            module_name = ".".join(parts[:cut])
            if module_name not in _package_modules():
                continue
            try:
                obj: Any = importlib.import_module(module_name)
            except Exception:
                break
            for part in parts[cut:]:
                owner, obj = obj, getattr(obj, part, None)
                if obj is None and part in getattr(owner, "__annotations__", {}):
                    obj = owner  # a dataclass field without a default: declared, not set
                if obj is None:
                    break
            if obj is not None:
                return True
            break
    return False


def resolve_short_names(
    app: Sphinx, env: Any, node: nodes.Element, contnode: nodes.Element
) -> nodes.Element | None:
    """``missing-reference``: resolve names as the package's docstrings write them.

    ``vlm_tutorial.load_image`` (a re-export of the package root) resolves to the
    module that defines it; a bare ``ImageLoadError`` or ``families.get_family`` to
    the one documented object whose full name ends with it. A name of the package
    that exists but is not documented becomes plain code; an unknown one stays
    unresolved (a warning).
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    domain = env.get_domain("py")
    name = target.removeprefix(f"{PACKAGE}.")
    root = importlib.import_module(PACKAGE)
    candidates: list[str] = []
    if target.startswith(f"{PACKAGE}.") and name in getattr(root, "__all__", []):
        obj = getattr(root, name, None)
        module = getattr(obj, "__module__", None) if _has_own_module(obj) else None
        candidates = [f"{module}.{name}"] if module else []
    elif not target.startswith(f"{PACKAGE}."):
        suffix = f".{target}"
        candidates = [
            full
            for full in domain.objects
            if full.startswith(f"{PACKAGE}.") and full.endswith(suffix)
        ]
    if len(candidates) == 1 and candidates[0] in domain.objects:
        new = node.deepcopy()
        new["reftarget"] = candidates[0]
        new["refspecific"] = False
        return domain.resolve_xref(
            env, node.get("refdoc", ""), app.builder, node["reftype"], candidates[0], new, contnode
        )
    context = ".".join(part for part in (node.get("py:module"), node.get("py:class")) if part)
    if exists(target) or (context and exists(f"{context}.{target}")):
        return contnode  # a real name the reference leaves out: plain code, no link
    return None


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
