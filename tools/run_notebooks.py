"""Execute the tutorial notebooks with papermill: the project's main job.

``python -m tools.run_notebooks`` runs every ``notebooks/*.ipynb`` on
the embedded default (tiny offline models, the CPU reference engine unless
SGLang and a GPU are present), writes the executed copies under
``build/notebooks/`` with a progress line per notebook, and fails if any
code cell did not execute. Each executed copy records, in its metadata under
``"vlm_tutorial"``, the engine and model that produced its outputs and its
wall time.

Mistakes on the command line fail in one line, with a non-zero exit, before
any notebook starts: a notebook that does not exist (the message lists those
that do), a ``-p`` name that no selected notebook's ``parameters`` cell
defines (the message lists the names they take), a ``model_path`` that names
no checkpoint, and ``backend="sglang"`` where SGLang cannot run. A relative
``model_path`` or ``image`` is read from the current directory and handed to
the notebook as an absolute path (the notebooks run inside ``notebooks/``).

Example:
    $ python -m tools.run_notebooks                # every notebook
    $ python -m tools.run_notebooks llama4 -p max_new_tokens 8
    $ python -m tools.run_notebooks notebooks/qwen2_5_vl.ipynb -p model_path build/my-qwen
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlm_tutorial.errors import (
    CheckpointNotFoundError,
    NotebookNotFoundError,
    NotebookParameterError,
    VLMTutorialError,
)
from vlm_tutorial.settings import ENV_PREFIX, TINY, resolve_setting

DEFAULT_OUT = Path("build/notebooks")
NOTEBOOK_DIR = Path("notebooks")
METADATA_KEY = "vlm_tutorial"
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"


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
    """What went wrong in an executed notebook: errors outside ``raises-exception`` cells, and
    ``raises-exception`` cells that raised nothing.

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
    try:
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
    except papermill.PapermillExecutionError:
        # papermill fails on any error output, also in a cell tagged raises-exception
        # (an error demonstration, which nbclient, nbval and MyST-NB allow); check below.
        if not output.is_file():
            raise
    seconds = time.perf_counter() - start
    nb = nbformat.read(output, as_version=4)
    # The banner cells papermill adds on an error; unexpected_errors() says what really failed.
    nb.cells = [c for c in nb.cells if PAPERMILL_ERROR_TAG not in c.metadata.get("tags", [])]
    missing = unexecuted_cells(nb)
    if missing:
        raise RuntimeError(f"{path.name}: code cells {missing} did not execute")
    wrong = unexpected_errors(nb)
    if wrong:
        raise RuntimeError(f"{path.name}: {'; '.join(wrong)}")
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


def find_notebooks(names: Sequence[str | os.PathLike], folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """Resolve notebook names: an existing file, or a short name (``llama4`` is ``notebooks/llama4.ipynb``).

    No names means every notebook in ``folder``.

    Raises:
        NotebookNotFoundError: a name matches no file; the message lists the
            notebooks that exist.

    Example:
        >>> [p.as_posix() for p in find_notebooks(["llama4"])]  # doctest: +SKIP
        ['notebooks/llama4.ipynb']
    """
    if not names:
        found = sorted(folder.glob("*.ipynb"))
        if not found:
            raise NotebookNotFoundError(
                f"no notebooks in {str(folder)!r} (looked in {folder.resolve()}); run from the "
                "repository root, or name the notebooks to run"
            )
        return found
    paths = []
    for name in names:
        text = os.fspath(name)
        candidates = [Path(text), folder / text]
        if not text.endswith(".ipynb"):
            candidates += [Path(f"{text}.ipynb"), folder / f"{text}.ipynb"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            available = sorted(p.stem for p in folder.glob("*.ipynb"))
            listing = (
                f"the notebooks are: {', '.join(available)} (in {folder}/)"
                if available
                else f"there are no notebooks in {folder.resolve()}; run from the repository root"
            )
            raise NotebookNotFoundError(f"no notebook {text!r}: {listing}")
        paths.append(path)
    return paths


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The names and default values of a notebook's ``parameters`` cell, read by papermill.

    A default that is not a Python literal is kept as its source text.

    Example:
        >>> notebook_parameters(Path("notebooks/llama4.ipynb"))["max_new_tokens"]  # doctest: +SKIP
        16
    """
    import papermill

    defaults = {}
    for name, info in papermill.inspect_notebook(str(path)).items():
        try:
            defaults[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            defaults[name] = info["default"]
    return defaults


def plan_parameters(
    notebooks: Sequence[Path],
    parameters: Mapping[str, Any],
    declared: Mapping[Path, Mapping[str, Any]],
) -> dict[Path, dict[str, Any]]:
    """The parameters each notebook gets: those of ``parameters`` its ``parameters`` cell defines.

    Raises:
        NotebookParameterError: a name that no notebook of ``notebooks`` defines;
            the message lists the names each one takes.

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


_PATH_PARAMETERS = ("model_path", "image")


def _effective(
    name: str, given: Mapping[str, Any], defaults: Mapping[str, Any], env: Mapping[str, str]
) -> Any:
    """The value a notebook's settings will use: ``-p``, else its environment variable, else the default."""
    return resolve_setting(name, given.get(name), env, defaults.get(name))


def _absolute_if_local(value: Any) -> Any:
    """An existing relative path as an absolute one; anything else unchanged."""
    if isinstance(value, str) and value and not os.path.isabs(value):
        expanded = os.path.expanduser(value)
        if os.path.exists(expanded):
            return os.path.abspath(expanded)
    return value


def check_model_path(model_path: Any) -> None:
    """Refuse a ``model_path`` that names no checkpoint, before anything loads.

    Accepted: ``None`` or ``"tiny"``, a folder holding ``config.json``, or a
    hub id ``owner/name`` (offline, only one whose ``config.json`` is in the
    hub cache).

    Raises:
        CheckpointNotFoundError: anything else, in one line.

    Example:
        >>> check_model_path("tiny")
    """
    if model_path is None or model_path == TINY:
        return
    if not isinstance(model_path, str) or not model_path.strip():
        raise CheckpointNotFoundError(
            f"model_path must be a folder, a hub id or {TINY!r}, got {model_path!r}"
        )
    path = Path(model_path).expanduser()
    fix = (
        f"pass a checkpoint folder (a relative path is read from {os.getcwd()}), {TINY!r}, or a "
        "hub id such as 'Qwen/Qwen2.5-VL-3B-Instruct'"
    )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointNotFoundError(
                f"model_path {model_path!r} is a folder without a config.json, so not a "
                f"checkpoint (save one with save_pretrained); or {fix}"
            )
        return
    if path.exists():
        raise CheckpointNotFoundError(
            f"model_path {model_path!r} is a file, not a checkpoint folder; {fix}"
        )
    if not _looks_like_hub_id(model_path):
        raise CheckpointNotFoundError(
            f"model_path {model_path!r} does not exist (no folder {str(path.absolute())!r}) and "
            f"is not a hub id; {fix}"
        )
    import huggingface_hub

    if huggingface_hub.is_offline_mode():
        cached = huggingface_hub.try_to_load_from_cache(model_path, "config.json")
        if not isinstance(cached, str):
            raise CheckpointNotFoundError(
                f"model_path {model_path!r} is not a local folder, and the hub is off "
                "(HF_HUB_OFFLINE=1) with no copy of it in the hub cache; download it first "
                f"(hf download {model_path}), or {fix}"
            )


def _looks_like_hub_id(text: str) -> bool:
    """``owner/name`` as huggingface_hub validates it, not a path (no leading ``/``, ``.`` or ``~``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if text.count("/") != 1 or text.startswith(("/", ".", "~")):
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def check_backend(backend: Any) -> None:
    """Refuse an unknown backend, and ``"sglang"`` where SGLang cannot run, before anything loads.

    Raises:
        NotebookParameterError: not one of ``auto``, ``sglang``, ``transformers``.
        EngineUnavailableError: ``sglang`` without sglang installed or without a GPU.

    Example:
        >>> check_backend("transformers")
    """
    from vlm_tutorial.settings import BACKENDS
    from vlm_tutorial.settings import check_backend as check_engine_backend

    if backend not in BACKENDS:
        raise NotebookParameterError(
            f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    check_engine_backend(backend)


def prepare_runs(
    names: Sequence[str | os.PathLike],
    parameters: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    folder: Path = NOTEBOOK_DIR,
) -> dict[Path, dict[str, Any]]:
    """Check a run's notebooks and parameters; return the parameters of each notebook.

    Every check here is cheap and comes before any notebook starts: see the
    module docs for what is refused. Relative paths given as ``model_path`` or
    ``image`` come back absolute.

    Example:
        >>> prepare_runs(["llama4"], {"max_new_tokenz": 4})  # doctest: +SKIP
        Traceback (most recent call last):
        NotebookParameterError: unknown parameter 'max_new_tokenz': did you mean 'max_new_tokens'? ...
    """
    env = os.environ if env is None else env
    notebooks = find_notebooks(names, folder)
    declared = {path: notebook_parameters(path) for path in notebooks}
    given = {
        name: _absolute_if_local(value) if name in _PATH_PARAMETERS else value
        for name, value in parameters.items()
    }
    plans = plan_parameters(notebooks, given, declared)
    for path, plan in plans.items():
        # None leaves the choice to the notebook (a tiny model, "auto").
        model_path = _effective("model_path", plan, declared[path], env)
        if model_path is not None:
            check_model_path(_absolute_if_local(model_path))
        backend = _effective("backend", plan, declared[path], env)
        if backend is not None:
            check_backend(backend)
    return plans


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.run_notebooks",
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

    parameters = {name: _parse_value(value) for name, value in args.parameter}
    try:
        plans = prepare_runs(args.notebooks, parameters)
    except VLMTutorialError as exc:  # a mistake on the command line: one line, nothing ran
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    # The notebooks run in their own folder: hand them the environment's paths absolute too.
    for name in _PATH_PARAMETERS:
        variable = ENV_PREFIX + name.upper()
        if os.environ.get(variable):
            os.environ[variable] = _absolute_if_local(os.environ[variable])
    notebooks = list(plans)

    results, failures = [], []
    total = len(notebooks)
    for i, path in enumerate(notebooks, 1):
        print(f"[{i}/{total}] {path.name} ...", flush=True)
        try:
            summary = execute_notebook(path, args.out, plans[path], args.timeout)
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
