"""Generate the troubleshooting catalogue from the code, so that it cannot drift.

For every exception class in :mod:`vlm_tutorial.errors` the page shows its
docstring (what went wrong, how to fix it), the built-in exception to catch it
as, and every place in the package that constructs it, with the message
template read from the source (``{...}`` marks a value filled in at run time).
A second part lists the built-in exceptions (``ValueError``, ``TypeError``, ...)
raised for bad arguments.

As a Sphinx extension it replaces the line ``<!-- error-catalogue -->`` in the
``troubleshooting`` page. As a script it prints the generated Markdown:

    python docs/_ext/vlm_errors.py
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import importlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MARKER = "<!-- error-catalogue -->"
PACKAGE = "vlm_tutorial"


@dataclasses.dataclass(frozen=True)
class Site:
    """One place in the package that constructs an exception."""

    exception: str
    module: str
    qualname: str
    message: str | None
    line: int
    public: bool
    entry_points: tuple[str, ...] = ()


def error_classes() -> list[type[BaseException]]:
    """The exception classes of ``vlm_tutorial.errors``, in ``__all__`` order."""
    errors = importlib.import_module(f"{PACKAGE}.errors")
    names = getattr(errors, "__all__", None) or [
        name for name, obj in vars(errors).items() if inspect.isclass(obj)
    ]
    return [
        obj
        for name in names
        if inspect.isclass(obj := getattr(errors, name))
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    ]


def _module_files() -> Iterator[tuple[str, Path]]:
    package = importlib.import_module(PACKAGE)
    root = Path(inspect.getfile(package)).parent
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join((PACKAGE, *parts)), path


def _template(node: ast.expr | None, helpers: dict[str, ast.FunctionDef]) -> str | None:
    """The message as written in the source, ``{expr}`` for run-time values."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                expr = ast.unparse(value.value)
                expr = expr if len(expr) <= 40 else "..."
                conversion = f"!{chr(value.conversion)}" if value.conversion > 0 else ""
                parts.append("{" + expr + conversion + "}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left, helpers), _template(node.right, helpers)
        if left is not None and right is not None:
            return left + right
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers:
        # A message built by a small helper in the same module: use what it returns.
        for sub in ast.walk(helpers[node.func.id]):
            if isinstance(sub, ast.Return):
                found = _template(sub.value, helpers)
                if found is not None:
                    return found
    return None


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


class _Finder(ast.NodeVisitor):
    def __init__(self, module: str, names: set[str], raised_only: bool, helpers: dict) -> None:
        self.module = module
        self.names = names
        self.raised_only = raised_only
        self.helpers = helpers
        self.stack: list[str] = []
        self.sites: list[Site] = []

    def _scoped(self, node: ast.AST, name: str) -> None:
        self.stack.append(name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def _record(self, call: ast.Call) -> None:
        name = _called_name(call)
        if name not in self.names:
            return
        message = call.args[0] if call.args else None
        qualname = ".".join(self.stack) or "<module>"
        public = not any(part.startswith("_") for part in (*self.module.split("."), *self.stack))
        self.sites.append(
            Site(name, self.module, qualname, _template(message, self.helpers), call.lineno, public)
        )

    def visit_Raise(self, node: ast.Raise) -> None:
        if self.raised_only and isinstance(node.exc, ast.Call):
            self._record(node.exc)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if not self.raised_only:
            self._record(node)
        self.generic_visit(node)


class _CallGraph(ast.NodeVisitor):
    """Which simple names each function (by qualname) calls, within one module."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.calls: dict[str, set[str]] = {}

    def _scoped(self, node: ast.AST, name: str) -> None:
        self.stack.append(name)
        self.calls.setdefault(".".join(self.stack), set())
        self.generic_visit(node)
        self.stack.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_Call(self, node: ast.Call) -> None:
        name = _called_name(node)
        if self.stack and name:
            self.calls[".".join(self.stack)].add(name)
        self.generic_visit(node)


def _is_public(qualname: str) -> bool:
    return not any(part.startswith("_") and not _is_dunder(part) for part in qualname.split("."))


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def entry_points(qualname: str, calls: dict[str, set[str]]) -> tuple[str, ...]:
    """The public functions and methods of a module that reach ``qualname`` through calls.

    A public function is its own entry point; a private helper's are the public
    functions that call it, directly or through other helpers of the same module.
    """
    if qualname == "<module>":
        return ()
    if _is_public(qualname):
        return (qualname,)
    found: set[str] = set()
    seen = {qualname}
    todo = [qualname]
    while todo:
        short = todo.pop().split(".")[-1]
        for caller, called in calls.items():
            if short in called and caller not in seen:
                seen.add(caller)
                (found.add if _is_public(caller) else todo.append)(caller)
    # Methods reached through a public method of a private class are not entry points.
    return tuple(sorted(found))


def find_sites(names: set[str], raised_only: bool = False) -> list[Site]:
    """Every construction (or, with ``raised_only``, every ``raise``) of the named exceptions."""
    sites: list[Site] = []
    for module, path in _module_files():
        if module == f"{PACKAGE}.errors":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        helpers = {
            node.name: node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("_")
        }
        finder = _Finder(module, names, raised_only, helpers)
        finder.visit(tree)
        graph = _CallGraph()
        graph.visit(tree)
        for site in finder.sites:
            points = entry_points(site.qualname, graph.calls)
            sites.append(dataclasses.replace(site, entry_points=points))
    return sites


def _documented(module: str, qualname: str) -> bool:
    """Whether ``module.qualname`` has an entry on the API pages (``vlm_api`` decides)."""
    try:
        from vlm_api import is_documented  # the names the API reference documents
    except ImportError:  # run as a script outside docs/_ext
        return False
    try:
        return bool(is_documented(f"{module}.{qualname}"))
    except Exception:  # the package is being changed: fall back to plain code
        return False


def _link(module: str, qualname: str) -> str:
    if "." in qualname and _is_dunder(qualname.rsplit(".", 1)[1]):
        # Calling or constructing an instance: point at the class.
        owner = qualname.rsplit(".", 1)[0]
        if _documented(module, owner):
            return f"{{py:class}}`~{module}.{owner}`"
    if _documented(module, qualname):
        role = "py:meth" if "." in qualname else "py:func"
        return f"{{{role}}}`~{module}.{qualname}`"
    return _code(f"{module}.{qualname}")


def _where(site: Site) -> str:
    if site.entry_points:
        return ", ".join(_link(site.module, name) for name in site.entry_points)
    return f"{_code(site.module)} (internal)"


def _code(text: str) -> str:
    text = " ".join(text.split())
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _builtin_base(cls: type[BaseException]) -> str:
    names = [
        base.__name__
        for base in cls.__mro__[1:]
        if base.__module__ == "builtins" and base not in (Exception, BaseException, object)
    ]
    return names[0] if names else "Exception"


def _docstring(cls: type) -> str:
    return inspect.cleandoc(cls.__doc__ or "").strip()


def _site_lines(sites: list[Site]) -> list[str]:
    """A bullet per entry point (or group of them), its messages nested under it."""
    grouped: dict[str, list[str]] = {}
    for site in sites:
        message = _code(site.message) if site.message else "(message built at run time)"
        messages = grouped.setdefault(_where(site), [])
        if message not in messages:  # the same message raised twice in one function
            messages.append(message)
    lines = []
    for where, messages in grouped.items():
        lines.append(f"- {where}")
        lines += [f"  - {message}" for message in messages]
    return lines


def render_catalogue() -> str:
    """The Markdown that replaces the ``<!-- error-catalogue -->`` marker."""
    classes = error_classes()
    names = {cls.__name__ for cls in classes}
    sites = find_sites(names)
    out: list[str] = []
    for cls in classes:
        qual = f"{cls.__module__}.{cls.__name__}"
        out += [f"({cls.__name__.lower()})=", f"### {cls.__name__}", ""]
        parents = [b.__name__ for b in cls.__bases__ if b is not object]
        base = _builtin_base(cls)
        named = (
            f"{{py:class}}`{qual}`" if _documented(cls.__module__, cls.__name__) else _code(qual)
        )
        out.append(
            f"{named} (subclass of {', '.join(f'`{p}`' for p in parents)}): "
            f"catch it as `{cls.__name__}`, or as the built-in `{base}`."
        )
        out += ["", _docstring(cls), ""]
        own = [site for site in sites if site.exception == cls.__name__]
        if own:
            out += ["Raised with these messages:", "", *_site_lines(own), ""]
        else:
            out += (
                ["Not raised directly; its subclasses are.", ""]
                if any(issubclass(other, cls) and other is not cls for other in classes)
                else ["Not raised by the package at the moment.", ""]
            )
    builtin_names = {
        name
        for name, obj in vars(builtins).items()
        if inspect.isclass(obj) and issubclass(obj, Exception)
    }
    plain = find_sites(builtin_names, raised_only=True)
    out += [
        "(argument-errors)=",
        "## Bad arguments (built-in exceptions)",
        "",
        "These are raised for a wrong type or value of an argument, before anything",
        "expensive runs. The message names the argument, the value given and a valid one.",
        "",
    ]
    for exception in sorted({site.exception for site in plain}):
        own = [site for site in plain if site.exception == exception]
        out += [f"### {exception}", "", *_site_lines(own), ""]
    return "\n".join(out).rstrip() + "\n"


def replace_marker(app: Any, docname: str, source: list[str]) -> None:
    """``source-read`` handler: fill in the catalogue."""
    if MARKER in source[0]:
        source[0] = source[0].replace(MARKER, render_catalogue())


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", replace_marker)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(render_catalogue())
