"""Draw the landing page's diagram, docs/diagram/formats.svg, from formats.dot with Graphviz.

The SVG is committed, so the docs build needs no Graphviz. It records the SHA-256
of the DOT source it was drawn from; ``tools/build_docs.py`` redraws it when the
source changed and ``dot`` is on PATH, and stops with a clear message when it
changed and ``dot`` is missing.

Usage:
    python tools/draw_diagram.py          # redraw if formats.dot changed (needs dot)
    python tools/draw_diagram.py --check  # exit 1 if formats.svg is not current
    python tools/draw_diagram.py --force  # redraw anyway

Example:
    >>> is_current(DOT, SVG)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOT = ROOT / "docs" / "diagram" / "formats.dot"
SVG = DOT.with_suffix(".svg")

#: Font settings for every label (DejaVu Sans ships with most Linux systems).
DOT_ARGS = ["-Gfontname=DejaVu Sans", "-Nfontname=DejaVu Sans", "-Efontname=DejaVu Sans"]

_MARK = "<!-- drawn by tools/draw_diagram.py from {name}, sha256 {digest} -->"
_MARK_RE = re.compile(
    r"<!-- drawn by (?:tools|scripts)/draw_diagram\.py from \S+, sha256 ([0-9a-f]{64}) -->"
)


def source_hash(dot: Path) -> str:
    """SHA-256 of the DOT source (line endings as LF), as recorded in the SVG drawn from it."""
    return hashlib.sha256(dot.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def recorded_hash(svg: Path) -> str | None:
    """The source hash an SVG records, or None (no SVG, or not drawn by this script)."""
    if not svg.is_file():
        return None
    found = _MARK_RE.search(svg.read_text(encoding="utf-8"))
    return found.group(1) if found else None


def is_current(dot: Path, svg: Path) -> bool:
    """Whether ``svg`` was drawn from the DOT source as it is now."""
    return recorded_hash(svg) == source_hash(dot)


def render(dot: Path, dot_program: str = "dot") -> str:
    """The SVG text Graphviz draws from ``dot``, with the source hash recorded in it."""
    result = subprocess.run(
        [dot_program, "-Tsvg", *DOT_ARGS, str(dot)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dot failed on {dot} (exit {result.returncode}):\n{result.stderr}")
    mark = _MARK.format(name=dot.name, digest=source_hash(dot))
    svg = result.stdout
    start = svg.find("<svg")
    if start < 0:
        raise RuntimeError(f"dot wrote no <svg> element for {dot}")
    return svg[:start] + mark + "\n" + svg[start:]


def ensure_current(dot: Path = DOT, svg: Path = SVG, force: bool = False) -> str:
    """Redraw ``svg`` if ``dot`` changed (or if ``force``); return what was done.

    Raises ``RuntimeError`` if it must be redrawn and Graphviz's ``dot`` is not on PATH.
    """
    if is_current(dot, svg) and not force:
        return f"{svg.name} is current"
    program = shutil.which("dot")
    if program is None:
        raise RuntimeError(
            f"{svg.relative_to(ROOT) if svg.is_relative_to(ROOT) else svg} is not drawn from "
            f"the current {dot.name}, and Graphviz's `dot` is not on PATH to redraw it: "
            "install Graphviz (Debian/Ubuntu: apt-get install graphviz), then run "
            "python tools/draw_diagram.py and commit the SVG"
        )
    svg.write_text(render(dot, program), encoding="utf-8")
    return f"redrew {svg.name} from {dot.name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    parser.add_argument("--force", action="store_true", help="redraw even if current")
    args = parser.parse_args(argv)
    if args.check:
        if is_current(DOT, SVG):
            print(f"{SVG.name} is current")
            return 0
        print(f"{SVG.name} is stale: run python tools/draw_diagram.py", file=sys.stderr)
        return 1
    try:
        print(ensure_current(force=args.force))
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
