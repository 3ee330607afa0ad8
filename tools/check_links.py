"""Check every internal link of a built HTML site, offline.

Every ``href``, ``src`` and ``data`` attribute that points inside the site must name
an existing file, and its ``#fragment`` an ``id`` (or ``name``) on the target page.
External links (``http:``, ``mailto:``...) are not fetched; but a page that *loads*
a remote asset (a script, a stylesheet, an image, an iframe) fails the check, since
the site must work offline.

Usage:
    python tools/check_links.py docs/_build/html
"""

from __future__ import annotations

import argparse
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LINK_ATTRS = {"href", "src", "data"}
# Tags whose URL is loaded with the page (not merely linked to).
ASSET_TAGS = {"script", "img", "iframe", "object", "embed", "source", "audio", "video"}


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str, int]] = []  # (tag, url, line)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key):
                self.ids.add(values[key] or "")
        rel = (values.get("rel") or "").lower()
        for key in LINK_ATTRS & values.keys():
            url = values[key]
            if url is None:
                continue
            loaded = "stylesheet" in rel or rel in {"preload", "modulepreload", "icon"}
            kind = "stylesheet" if tag == "link" and key == "href" and loaded else tag
            self.links.append((kind, url, self.getpos()[0]))


def _parse(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


def _pages(root: Path) -> list[Path]:
    # _static/ and _sources/ hold the theme's template fragments and page sources, not pages.
    return sorted(
        path
        for path in root.rglob("*.html")
        if path.relative_to(root).parts[0] not in {"_static", "_sources"}
    )


def check_site(root: Path) -> tuple[list[str], int]:
    """Return (problems, number of internal links checked) for the site under ``root``."""
    root = root.resolve()
    pages = _pages(root)
    parsed: dict[Path, _PageParser] = {}

    def page(path: Path) -> _PageParser:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    problems: list[str] = []
    checked = 0
    for source in pages:
        where = source.relative_to(root)
        for tag, url, line in page(source).links:
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//"):
                remote = parts.scheme in {"http", "https", "ftp"} or url.startswith("//")
                if remote and (tag in ASSET_TAGS or tag == "stylesheet"):
                    problems.append(f"{where}:{line}: loads a remote asset <{tag}> {url}")
                continue
            if not parts.path and not parts.fragment:
                continue  # href="" or href="?q"
            checked += 1
            if parts.path:
                target = (source.parent / unquote(parts.path)).resolve()
                if not target.is_relative_to(root):
                    problems.append(f"{where}:{line}: {url} points outside the site")
                    continue
                if target.is_dir():
                    target = target / "index.html"
                if not target.is_file():
                    problems.append(
                        f"{where}:{line}: {url}: no such file {target.relative_to(root)}"
                    )
                    continue
            else:
                target = source
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html" and fragment not in page(target).ids:
                problems.append(
                    f"{where}:{line}: {url}: no id {fragment!r} in {target.relative_to(root)}"
                )
    return problems, checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="folder of the built HTML (docs/_build/html)")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        parser.error(f"{args.site} has no index.html: build the site first")
    problems, checked = check_site(args.site)
    pages = len(_pages(args.site.resolve()))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} broken links or remote assets in {pages} pages", file=sys.stderr)
        return 1
    print(f"links ok: {checked} internal links in {pages} pages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
