"""Build the documentation site into docs/_build/html (``make docs``), offline.

1. Execute the notebooks with the main job's papermill runner
   (``python -m tools.run_notebooks --out build/notebooks``), unless
   ``build/notebooks/`` already holds an executed copy of every notebook that is
   newer than the notebook and than every file of the ``vlm_tutorial`` package.
   The runner's defaults are tiny models on the CPU; its environment variables
   (``VLM_TUTORIAL_BACKEND=sglang``...) switch a GPU docs builder to the real models.
2. ``sphinx-build -W --keep-going -n -E``: warnings are errors, every
   cross-reference must resolve. MyST-NB renders the executed copies without
   executing anything (``docs/_ext/vlm_notebooks.py`` copies them in).
3. Check every internal link and anchor of the built pages, and that no page loads
   a remote asset (``tools/check_links.py``).

The landing page's diagram is the committed ``docs/diagram/formats.svg``. It is
redrawn first (``tools/draw_diagram.py``) only if ``formats.dot`` changed, which
needs Graphviz's ``dot``; nothing else here needs a system tool.

Usage:
    python -m tools.build_docs [--notebooks auto|run|reuse] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "notebooks"

if not __package__:  # run as a file (python tools/build_docs.py), not as python -m tools.build_docs
    sys.path.insert(0, str(ROOT))
from tools.check_links import check_site  # noqa: E402
from tools.draw_diagram import ensure_current  # noqa: E402


def stale_notebooks(sources: list[Path], executed_dir: Path, package: Path) -> list[str]:
    """Names of notebooks whose executed copy is missing or older than its inputs."""
    code = [
        path
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]
    newest_code = max((path.stat().st_mtime for path in code), default=0.0)
    stale = []
    for source in sources:
        copy = executed_dir / source.name
        if not copy.is_file():
            stale.append(source.name)
            continue
        if copy.stat().st_mtime < max(source.stat().st_mtime, newest_code):
            stale.append(source.name)
    return stale


def run_notebooks(executed_dir: Path, runner_args: list[str]) -> None:
    command = [sys.executable, "-m", "tools.run_notebooks", "--out", str(executed_dir)]
    command += runner_args
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--notebooks",
        choices=["auto", "run", "reuse"],
        default="auto",
        help="auto: execute them when the executed copies are missing or stale (default); "
        "run: always execute; reuse: never execute",
    )
    parser.add_argument("--executed", type=Path, default=EXECUTED, help=f"default: {EXECUTED}")
    parser.add_argument("--out", type=Path, default=DOCS / "_build" / "html")
    parser.add_argument("--doctrees", type=Path, help="default: <out>/../doctrees")
    parser.add_argument(
        "--runner-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to python -m tools.run_notebooks (repeat it), e.g. "
        "--runner-arg=-p --runner-arg=max_new_tokens --runner-arg=8",
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="reuse Sphinx's saved environment (faster; may hide old warnings)",
    )
    parser.add_argument("--no-link-check", action="store_true")
    args = parser.parse_args(argv)

    try:  # the diagram is committed; redrawn only if its DOT source changed
        print(ensure_current())
    except RuntimeError as exc:
        parser.error(str(exc))
    executed = args.executed.resolve()
    out = args.out.resolve()
    doctrees = (args.doctrees or out.parent / "doctrees").resolve()
    timings: dict[str, float] = {}

    start = time.perf_counter()
    sources = sorted(NOTEBOOKS.glob("*.ipynb"))
    stale = stale_notebooks(sources, executed, ROOT / "vlm_tutorial")
    if args.notebooks == "run" or (args.notebooks == "auto" and stale):
        if args.notebooks == "auto":
            print(f"executing the notebooks (missing or stale copies: {', '.join(stale)})")
        run_notebooks(executed, args.runner_arg)
    elif stale:
        print(
            f"warning: reusing stale or missing executed copies: {', '.join(stale)}",
            file=sys.stderr,
        )
    else:
        print(f"reusing the executed notebooks in {executed}")
    timings["notebooks"] = time.perf_counter() - start

    start = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-W",
        "--keep-going",
        "-n",
        "-q",
        "-d",
        str(doctrees),
        str(DOCS),
        str(out),
    ]
    if not args.incremental:
        command.insert(3, "-E")
    env = dict(os.environ, VLM_DOCS_NOTEBOOKS=str(executed))
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, env=env)
    timings["sphinx"] = time.perf_counter() - start
    if result.returncode != 0:
        print(f"sphinx-build failed (exit {result.returncode})", file=sys.stderr)
        return result.returncode

    if not args.no_link_check:
        start = time.perf_counter()
        problems, checked = check_site(out)
        timings["links"] = time.perf_counter() - start
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"{len(problems)} broken internal links or remote assets", file=sys.stderr)
            return 1
        print(f"links ok: {checked} internal links")

    spent = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    print(f"docs built in {sum(timings.values()):.1f} s ({spent}): {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
