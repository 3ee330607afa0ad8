"""Execute the tutorial notebooks with papermill: the project's main job.

``python -m tools.run_notebooks`` runs every ``notebooks/*.ipynb`` with its
defaults (the tiny offline models on the CPU reference engine, unless SGLang
and a GPU are present), writes the executed copies under ``build/notebooks/``
and fails if a code cell did not run or raised where no error was expected.
Each copy records, in its metadata under ``"vlm_tutorial"``, the engine and
model that produced its outputs and its wall time.

What the terminal shows: the checks, the tiny models being made ready (with
their seconds), each notebook's start and end (with its seconds), and, as it
happens, whatever a notebook writes to stderr (progress bars, engine logs).

Mistakes on the command line fail in one line with exit status 2, before
anything loads: a notebook that does not exist (the message lists those that
do), a ``-p`` name that no selected notebook's ``parameters`` cell defines (the
message lists the names they take), a ``model_path`` that names no checkpoint,
and a ``backend`` that cannot run here. The kernels start in the current
directory, so a relative ``model_path`` or ``image`` is read from there.

Example:
    $ python -m tools.run_notebooks                # every notebook
    $ python -m tools.run_notebooks llama4 -p max_new_tokens 8
    $ python -m tools.run_notebooks qwen2_5_vl -p model_path build/my-qwen --out build/nb
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from vlm_tutorial.errors import NotebookParameterError, VLMTutorialError
from vlm_tutorial.families import is_checkpoint_folder, is_hub_id
from vlm_tutorial.settings import BACKENDS, ENV_PREFIX, TINY, check_backend

PROG = "python -m tools.run_notebooks"
DEFAULT_OUT = Path("build/notebooks")
NOTEBOOK_DIR = Path("notebooks")
METADATA_KEY = "vlm_tutorial"
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
_FAMILY_CALL = re.compile(r"notebook_settings\(\s*['\"](\w+)['\"]")


class NotebookNotFoundError(FileNotFoundError):
    """A notebook named on the command line does not exist; the message lists those that do."""


# ---------------------------------------------------------------- reading notebooks


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


def unexpected_errors(nb: Any) -> list[str]:
    """Errors outside ``raises-exception`` cells, and ``raises-exception`` cells that raised nothing.

    Example:
        >>> import nbformat
        >>> cell = nbformat.v4.new_code_cell("1/0", metadata={"tags": ["raises-exception"]})
        >>> unexpected_errors(nbformat.v4.new_notebook(cells=[cell]))
        ['cell 0 is tagged raises-exception but raised nothing']
    """
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        expected = "raises-exception" in cell.metadata.get("tags", [])
        if errors and not expected:
            problems.append(f"cell {i} raised {errors[0].get('ename')}: {errors[0].get('evalue')}")
        elif expected and not errors:
            problems.append(f"cell {i} is tagged raises-exception but raised nothing")
    return problems


def printed_setting(nb: Any, label: str) -> str | None:
    """The text after ``"<label>: "`` in the first stdout line that starts with it.

    Example:
        >>> import nbformat
        >>> out = nbformat.v4.new_output("stream", name="stdout", text="Engine: SGLang\\n")
        >>> cell = nbformat.v4.new_code_cell("", outputs=[out])
        >>> printed_setting(nbformat.v4.new_notebook(cells=[cell]), "Engine")
        'SGLang'
    """
    prefix = f"{label}: "
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") != "stream":
                continue
            for line in output.get("text", "").splitlines():
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
    return None


def _code_cells(path: Path) -> list[dict[str, Any]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    for cell in cells:
        source = cell.get("source", "")
        cell["source"] = "".join(source) if isinstance(source, list) else source
    return cells


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The names and defaults of a notebook's cell tagged ``parameters`` (papermill's convention).

    A default that is not a Python literal is kept as its source text.

    Example:
        >>> notebook_parameters(Path("notebooks/llama4.ipynb"))["model_path"] is None
        True
    """
    cells = [c for c in _code_cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    defaults: dict[str, Any] = {}
    for cell in cells[:1]:
        for node in ast.parse(cell["source"]).body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                try:
                    defaults[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    defaults[node.targets[0].id] = ast.unparse(node.value)
    return defaults


def notebook_family(path: Path) -> str | None:
    """The model family a notebook passes to ``notebook_settings``, or None.

    Example:
        >>> notebook_family(Path("notebooks/llama4.ipynb"))
        'llama4'
    """
    for cell in _code_cells(path):
        match = _FAMILY_CALL.search(cell["source"])
        if match:
            return match[1]
    return None


# ---------------------------------------------------------------- checks before anything runs


def find_notebooks(
    names: Sequence[str | os.PathLike[str]], folder: Path = NOTEBOOK_DIR
) -> list[Path]:
    """Resolve notebook names: a file, or a short name (``llama4`` is ``notebooks/llama4.ipynb``).

    No names means every notebook in ``folder``.

    Example:
        >>> [p.as_posix() for p in find_notebooks(["llama4"])]
        ['notebooks/llama4.ipynb']
    """
    available = sorted(folder.glob("*.ipynb"))
    if not names:
        if not available:
            raise NotebookNotFoundError(
                f"no notebooks in {folder}/; run from the repository root, or name the notebooks"
            )
        return available
    paths = []
    for name in names:
        text = os.fspath(name)
        candidates = [Path(text), folder / text, Path(f"{text}.ipynb"), folder / f"{text}.ipynb"]
        path = next((c for c in candidates if c.suffix == ".ipynb" and c.is_file()), None)
        if path is None:
            listing = (
                f"the notebooks are {', '.join(p.stem for p in available)} (in {folder}/)"
                if available
                else f"there are no notebooks in {folder}/; run from the repository root"
            )
            raise NotebookNotFoundError(f"no notebook {text!r}: {listing}")
        paths.append(path)
    return paths


def plan_parameters(
    notebooks: Sequence[Path],
    parameters: Mapping[str, Any],
    declared: Mapping[Path, Mapping[str, Any]],
) -> dict[Path, dict[str, Any]]:
    """The parameters each notebook gets: those of ``parameters`` its ``parameters`` cell defines.

    Raises:
        NotebookParameterError: a name that none of ``notebooks`` defines.

    Example:
        >>> nb = Path("a.ipynb")
        >>> plan_parameters([nb], {"x": 1}, {nb: {"x": 0, "y": 0}})
        {PosixPath('a.ipynb'): {'x': 1}}
    """
    known = {name for path in notebooks for name in declared[path]}
    for name in parameters:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            takes = "; ".join(
                f"{path.name} takes {', '.join(declared[path]) or 'none'}" for path in notebooks
            )
            raise NotebookParameterError(f"unknown parameter {name!r}: {hint}{takes}")
    return {
        path: {name: value for name, value in parameters.items() if name in declared[path]}
        for path in notebooks
    }


def check_model_path(model_path: Any) -> None:
    """Refuse a ``model_path`` that names no checkpoint, in one line, before anything loads.

    Accepted: ``None`` or ``"tiny"``, a checkpoint folder, or a hub id (with
    ``HF_HUB_OFFLINE=1`` only one whose ``config.json`` is in the hub cache).

    Example:
        >>> check_model_path("tiny")
        >>> check_model_path("no/such/folder")
        Traceback (most recent call last):
        ...
        vlm_tutorial.errors.NotebookParameterError: model_path 'no/such/folder' does not exist ...
    """
    if model_path is None or model_path == TINY:
        return
    fix = f"pass a checkpoint folder, {TINY!r} or a hub id such as 'Qwen/Qwen2.5-VL-3B-Instruct'"
    if not isinstance(model_path, str) or not model_path.strip():
        raise NotebookParameterError(f"model_path must be a string, got {model_path!r}; {fix}")
    path = Path(model_path).expanduser()
    if is_checkpoint_folder(path):
        return
    if path.is_dir():
        raise NotebookParameterError(
            f"model_path {model_path!r} is a folder without a config.json, so not a checkpoint "
            f"(save_pretrained writes one); {fix}"
        )
    if path.exists():
        raise NotebookParameterError(
            f"model_path {model_path!r} is a file, not a checkpoint folder; {fix}"
        )
    if not is_hub_id(model_path):
        raise NotebookParameterError(
            f"model_path {model_path!r} does not exist (relative paths are read from the "
            f"current directory) and is not a hub id; {fix}"
        )
    import huggingface_hub

    if huggingface_hub.is_offline_mode():
        cached = huggingface_hub.try_to_load_from_cache(model_path, "config.json")
        if not isinstance(cached, str):
            raise NotebookParameterError(
                f"model_path {model_path!r} is not in the hub cache and the hub is off "
                f"(HF_HUB_OFFLINE=1); download it first (hf download {model_path}), or {fix}"
            )


def check_backend_value(backend: Any) -> str:
    """``backend`` resolved (``"auto"`` becomes what runs here); refuse one that cannot run.

    Example:
        >>> check_backend_value("transformers")
        'transformers'
    """
    if backend not in BACKENDS:
        raise NotebookParameterError(
            f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    try:
        return check_backend(backend)
    except ValueError as exc:  # EngineUnavailableError: sglang cannot run here
        raise NotebookParameterError(str(exc)) from None


def _effective(name: str, given: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """What the notebook will use for ``model_path``/``backend``: ``-p``, else its variable."""
    if given.get(name) is not None:
        return given[name]
    return env.get(ENV_PREFIX + name.upper()) or None


def prepare_runs(
    names: Sequence[str | os.PathLike[str]],
    parameters: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    folder: Path = NOTEBOOK_DIR,
) -> dict[Path, dict[str, Any]]:
    """Check a run's notebooks and parameters; return the parameters of each notebook.

    Every check is cheap and comes before any notebook starts (see the module docs).

    Example:
        >>> prepare_runs(["llama4"], {"max_new_tokenz": 4})
        Traceback (most recent call last):
        ...
        vlm_tutorial.errors.NotebookParameterError: unknown parameter 'max_new_tokenz': did you mean 'max_new_tokens'? ...
    """
    env = os.environ if env is None else env
    notebooks = find_notebooks(names, folder)
    declared = {path: notebook_parameters(path) for path in notebooks}
    plans = plan_parameters(notebooks, parameters, declared)
    for path, plan in plans.items():
        check_model_path(_effective("model_path", plan, env))
        if "backend" in declared[path]:
            check_backend_value(_effective("backend", plan, env) or "auto")
    return plans


def tiny_families(plans: Mapping[Path, Mapping[str, Any]], env: Mapping[str, str]) -> list[str]:
    """The families whose tiny model the planned notebooks will load.

    A notebook loads its family's tiny model when ``model_path`` is ``"tiny"``,
    or unset where it runs no SGLang engine.

    Example:
        >>> tiny_families({Path("notebooks/llama4.ipynb"): {"model_path": "tiny"}}, {})
        ['llama4']
    """
    families = []
    for path, plan in plans.items():
        family = notebook_family(path)
        model_path = _effective("model_path", plan, env)
        backend = _effective("backend", plan, env)
        on_sglang = "backend" in notebook_parameters(path) and (
            check_backend_value(backend or "auto") == "sglang"
        )
        if family and (model_path == TINY or (model_path is None and not on_sglang)):
            families.append(family)
    return sorted(set(families), key=families.index)


def prepare_tiny_models(families: Sequence[str], out: TextIO) -> None:
    """Make each family's tiny model ready before any kernel starts, saying so on ``out``.

    Example:
        >>> prepare_tiny_models(["qwen2_5_vl"], sys.stdout)  # doctest: +SKIP
        tiny qwen2_5_vl model: ready in 1.9 s
    """
    if not families:
        return
    from vlm_tutorial.offline.tiny import tiny_model_path

    for family in families:
        print(f"tiny {family} model: preparing ...", file=out, flush=True)
        start = time.perf_counter()
        tiny_model_path(family)
        print(
            f"tiny {family} model: ready in {time.perf_counter() - start:.1f} s",
            file=out,
            flush=True,
        )


# ---------------------------------------------------------------- running


class PrefixedStream:
    """A text stream that writes every line to ``stream`` behind ``prefix`` (kernel stderr).

    Example:
        >>> PrefixedStream(sys.stdout, "  | ").write("a\\nb\\n")
          | a
          | b
        4
    """

    def __init__(self, stream: TextIO, prefix: str) -> None:
        self.stream = stream
        self.prefix = prefix
        self.line_start = True

    def write(self, text: str) -> int:
        for piece in text.splitlines(keepends=True):
            if self.line_start:
                self.stream.write(self.prefix)
            self.stream.write(piece)
            self.line_start = piece.endswith(("\n", "\r"))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def execute_notebook(
    path: Path,
    out_dir: Path,
    parameters: dict[str, Any] | None = None,
    timeout: int = 1800,
    stderr: Any = None,
) -> dict[str, Any]:
    """Execute one notebook with papermill into ``out_dir``; return a summary dict.

    The kernel starts in the current directory; what it writes to stderr also
    goes to ``stderr`` as it comes. Raises ``RuntimeError`` if a code cell did
    not run or raised unexpectedly.

    Example:
        >>> execute_notebook(Path("notebooks/llama4.ipynb"), Path("build/nb"))  # doctest: +SKIP
        {'notebook': 'llama4.ipynb', 'seconds': 9.2, ...}
    """
    import nbformat
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(path),
            str(output),
            parameters=parameters or {},
            execution_timeout=timeout,
            progress_bar=False,
            stderr_file=stderr,
            # papermill reaches the local kernel over loopback TCP; ipykernel warns about
            # that on every start. Errors still show.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except papermill.PapermillExecutionError:
        # papermill fails on any error output, also in a cell tagged raises-exception
        # (an error demonstration, which nbclient, nbval and MyST-NB allow); checked below.
        if not output.is_file():
            raise
    seconds = time.perf_counter() - start
    nb = nbformat.read(output, as_version=4)
    nb.cells = [c for c in nb.cells if PAPERMILL_ERROR_TAG not in c.metadata.get("tags", [])]
    problems = unexpected_errors(nb)  # the cause first: a cell that raises stops the rest
    missing = unexecuted_cells(nb)
    if missing:
        problems.append(f"code cells {missing} did not execute")
    if problems:
        raise RuntimeError(f"{path.name}: {'; '.join(problems)}")
    summary = {
        "notebook": path.name,
        "family": notebook_family(path),
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
    """A ``-p`` value: JSON where it parses (``8``, ``null``, ``true``), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2: a mistake on the command line)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Execute the tutorial notebooks with papermill (tiny offline models by default).",
    )
    parser.add_argument("notebooks", nargs="*", help="names or files (default: notebooks/*.ipynb)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a notebook parameter (VALUE read as JSON where it parses)",
    )
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--summary", type=Path, help="also write the run summary as JSON here")
    args = parser.parse_args(argv)

    parameters = {name: _parse_value(value) for name, value in args.parameter}
    try:
        plans = prepare_runs(args.notebooks, parameters)
    except (NotebookNotFoundError, VLMTutorialError) as exc:  # one line, nothing ran
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    prepare_tiny_models(tiny_families(plans, os.environ), sys.stdout)

    results, failures = [], []
    total = len(plans)
    for i, (path, plan) in enumerate(plans.items(), 1):
        tag = f"[{i}/{total}] {path.name}"
        print(f"{tag} ...", flush=True)
        try:
            summary = execute_notebook(
                path, args.out, plan, args.timeout, PrefixedStream(sys.stderr, "    | ")
            )
        except Exception as exc:  # report every notebook, then fail
            failures.append(path.name)
            print(f"{tag} FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        results.append(summary)
        print(
            f"{tag} ok in {summary['seconds']:.1f} s ({summary['engine']}; {summary['model']})",
            flush=True,
        )
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(results, indent=2) + "\n")
    if failures:
        print(
            f"{len(failures)} of {total} notebooks failed: {', '.join(failures)}", file=sys.stderr
        )
        return 1
    print(f"all {total} notebooks executed; copies in {args.out}/", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
