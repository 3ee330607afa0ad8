"""Execute the tutorial notebooks with papermill: the project's main job.

``python -m vlm_tutorial.run_notebooks`` runs every ``notebooks/*.ipynb`` on
the embedded default (tiny offline models, the CPU reference engine unless
SGLang and a GPU are present), writes the executed copies under
``build/notebooks/`` with a progress line per notebook, and fails if any
code cell did not execute. Each executed copy records, in its metadata under
``"vlm_tutorial"``, the engine and model that produced its outputs and its
wall time.

Example:
    $ python -m vlm_tutorial.run_notebooks                # every notebook
    $ python -m vlm_tutorial.run_notebooks notebooks/llama4.ipynb -p max_new_tokens 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("build/notebooks")
METADATA_KEY = "vlm_tutorial"


def unexecuted_cells(nb: Any) -> list[int]:
    """Indices of code cells that have source but no ``execution_count`` (they never ran).

    Example:
        >>> import nbformat
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
        >>> unexecuted_cells(nb)
        [0]
    """
    return [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and cell.source.strip() and cell.get("execution_count") is None
    ]


def printed_setting(nb: Any, label: str) -> str | None:
    """The text after ``"<label>: "`` in the first stream output line that starts with it."""
    prefix = f"{label}: "
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") != "stream":
                continue
            for line in output.get("text", "").splitlines():
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
    return None


def execute_notebook(
    path: Path,
    out_dir: Path,
    parameters: dict[str, Any] | None = None,
    timeout: int = 1800,
) -> dict[str, Any]:
    """Execute one notebook with papermill into ``out_dir``; return a summary dict.

    Raises ``RuntimeError`` if a code cell did not run.

    Example:
        >>> execute_notebook(Path("notebooks/llama4.ipynb"), Path("build/notebooks"))  # doctest: +SKIP
        {'notebook': 'llama4.ipynb', 'seconds': 41.2, ...}
    """
    import nbformat
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    start = time.perf_counter()
    papermill.execute_notebook(
        str(path),
        str(output),
        parameters=parameters or {},
        cwd=str(path.parent),
        execution_timeout=timeout,
        progress_bar=False,
        log_output=False,
        # The kernel is local and papermill reaches it over loopback TCP; ipykernel warns
        # "Kernel is running over TCP without encryption" on every start. Errors still show.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    seconds = time.perf_counter() - start
    nb = nbformat.read(output, as_version=4)
    missing = unexecuted_cells(nb)
    if missing:
        raise RuntimeError(f"{path.name}: code cells {missing} did not execute")
    summary = {
        "notebook": path.name,
        "seconds": round(seconds, 1),
        "engine": printed_setting(nb, "Engine"),
        "model": printed_setting(nb, "Model"),
        "code_cells": sum(c.cell_type == "code" for c in nb.cells),
        "parameters": parameters or {},
    }
    nb.metadata[METADATA_KEY] = summary
    nbformat.write(nb, output)
    return summary


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m vlm_tutorial.run_notebooks",
        description="Execute the tutorial notebooks with papermill (tiny offline models by default).",
    )
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="papermill parameter (VALUE parsed as JSON when it can be)",
    )
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--summary", type=Path, help="write the run summary as JSON here")
    args = parser.parse_args(argv)

    notebooks = args.notebooks or sorted(Path("notebooks").glob("*.ipynb"))
    if not notebooks:
        parser.error("no notebooks found (run from the repository root or name them)")
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        parser.error(f"not found: {', '.join(missing)}")
    parameters = {name: _parse_value(value) for name, value in args.parameter}

    results, failures = [], []
    total = len(notebooks)
    for i, path in enumerate(notebooks, 1):
        print(f"[{i}/{total}] {path.name} ...", flush=True)
        try:
            summary = execute_notebook(path, args.out, parameters, args.timeout)
        except Exception as exc:  # report every notebook, then fail
            failures.append(path.name)
            print(f"[{i}/{total}] {path.name} FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        results.append(summary)
        print(
            f"[{i}/{total}] {path.name} ok in {summary['seconds']:.1f} s "
            f"({summary['engine']}; {summary['model']}) -> {args.out / path.name}",
            flush=True,
        )
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(results, indent=2) + "\n")
    if failures:
        print(f"{len(failures)} of {total} notebooks failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    print(f"all {total} notebooks executed; copies in {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
