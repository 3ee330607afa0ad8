"""Sphinx extension: render the executed notebooks and say what produced their outputs.

The notebooks are committed without outputs. ``python -m tools.run_notebooks``
(papermill, the project's main job) writes executed copies into ``build/notebooks/``;
this extension copies them into ``docs/notebooks/`` (generated, ignored by git) when
Sphinx starts, writes ``docs/notebooks/index.md`` with one row per notebook, and
links each CPU copy to the copy executed with SGLang on a GPU (``docs/gpu/<name>.ipynb``)
when one is committed. MyST-NB renders them as they are (``nb_execution_mode = "off"``).

A GPU copy is rendered only while its code cells are those of the current notebook
(papermill's injected parameters aside). A copy recorded from an older version of
the notebook is left out of the site (``exclude_patterns``) and the notebooks page
says so, with the card and the date of the recording, until the next GPU record
(``python tools/gpu_check.py --stage notebooks``) replaces it.

Every notebook page, CPU or GPU, gets a note under its title naming the engine and
the model that produced the outputs shown. They are read from the notebook's
metadata ``metadata["vlm_tutorial"]["engine"]`` and ``["model"]`` (written by the
runner), or else from the ``Engine: ...`` and ``Model: ...`` lines the notebook
printed. A notebook with neither is a build warning (an error under ``-W``).

Configuration (``conf.py``):
    vlm_notebooks_source: folder of executed notebooks (default ``build/notebooks``
        under the repository; the environment variable ``VLM_DOCS_NOTEBOOKS`` wins).
    vlm_notebooks_gpu_dir: folder, relative to the docs, of GPU-executed copies (``gpu``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError
from sphinx.util import logging

logger = logging.getLogger(__name__)

METADATA_KEY = "vlm_tutorial"
INJECTED_TAG = "injected-parameters"  # papermill's cell of the run's parameters
STAGE_DIR = "notebooks"
ENV_VAR = "VLM_DOCS_NOTEBOOKS"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def notebook_title(nb: dict[str, Any], fallback: str) -> str:
    """The text of the first ``# `` heading in the notebook's markdown cells."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        for line in _text(cell.get("source", "")).splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return fallback


def printed_setting(nb: dict[str, Any], label: str) -> str | None:
    """The text after ``"<label>: "`` on the first stream output line starting with it."""
    prefix = f"{label}: "
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            if output.get("output_type") != "stream":
                continue
            for line in _text(output.get("text", "")).splitlines():
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
    return None


def provenance(nb: dict[str, Any]) -> dict[str, str] | None:
    """``{"engine": ..., "model": ...}`` for an executed notebook, or ``None`` if unknown.

    Reads ``metadata["vlm_tutorial"]`` first, then the printed ``Engine:``/``Model:`` lines.
    """
    meta = nb.get("metadata", {}).get(METADATA_KEY) or {}
    found: dict[str, str] = {}
    for key, label in (("engine", "Engine"), ("model", "Model")):
        value = meta.get(key) or printed_setting(nb, label)
        if not value:
            return None
        found[key] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    seconds = meta.get("seconds")
    if seconds is None:
        seconds = nb.get("metadata", {}).get("papermill", {}).get("duration")
    if isinstance(seconds, int | float):
        found["seconds"] = f"{seconds:.0f}"
    return found


def provenance_note(info: dict[str, str]) -> str:
    """The Markdown note placed under a notebook page's title."""
    took = f" It ran in {info['seconds']} s." if "seconds" in info else ""
    return (
        ":::{admonition} Outputs on this page\n"
        ":class: note vlm-provenance\n\n"
        f"- Engine: **{_escape(info['engine'])}**\n"
        f"- Model: **{_escape(info['model'])}**\n\n"
        "They were produced by executing this notebook with papermill "
        f"(`python -m tools.run_notebooks`).{took}\n"
        ":::\n"
    )


def add_provenance_cell(nb: dict[str, Any], note: str) -> None:
    """Insert ``note`` as a markdown cell right after the cell holding the title."""
    cells = nb.setdefault("cells", [])
    index = 0
    for i, cell in enumerate(cells):
        if cell.get("cell_type") == "markdown" and any(
            line.startswith("# ") for line in _text(cell.get("source", "")).splitlines()
        ):
            index = i + 1
            break
    cell = {"cell_type": "markdown", "metadata": {"tags": ["provenance"]}, "source": note}
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
        cell["id"] = "vlm-tutorial-provenance"
    cells.insert(index, cell)


def retitle(nb: dict[str, Any], pattern: str) -> None:
    """Rewrite the first ``# `` heading as ``pattern.format(title)``."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        lines = _text(cell.get("source", "")).splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line.startswith("# "):
                end = "\n" if line.endswith("\n") else ""
                lines[i] = "# " + pattern.format(line[2:].strip()) + end
                cell["source"] = "".join(lines)
                return


def drop_widget_outputs(nb: dict[str, Any]) -> int:
    """Remove widget outputs (progress bars): without a live kernel they show a frozen 0%.

    Returns how many were removed.
    """
    nb.get("metadata", {}).pop("widgets", None)
    removed = 0
    for cell in nb.get("cells", []):
        outputs = cell.get("outputs")
        if not outputs:
            continue
        kept = [o for o in outputs if WIDGET_MIME not in (o.get("data") or {})]
        removed += len(outputs) - len(kept)
        cell["outputs"] = kept
    return removed


def code_cells(nb: dict[str, Any]) -> list[str]:
    """The sources of the code cells, without papermill's injected-parameters cell."""
    return [
        _text(cell.get("source", "")).rstrip()
        for cell in nb.get("cells", [])
        if cell.get("cell_type") == "code"
        and INJECTED_TAG not in cell.get("metadata", {}).get("tags", [])
    ]


def recorded_on(nb: dict[str, Any], results: Path) -> str:
    """``"NVIDIA H200, 2026-12-01"``: the card (from the GPU record's ``results.json``) and
    the day papermill ran the copy; ``"a GPU, date not recorded"`` where unknown."""
    card = "a GPU"
    try:
        names = json.loads(results.read_text(encoding="utf-8"))["environment"]["gpu_names"]
        card = ", ".join(sorted(set(map(str, names)))) or card
    except (OSError, ValueError, KeyError, TypeError):
        pass
    started = nb.get("metadata", {}).get("papermill", {}).get("start_time") or ""
    return f"{card}, {started[:10] or 'date not recorded'}"


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _escape(text: str) -> str:
    return text.replace("*", r"\*").replace("_", r"\_").replace("`", r"\`")


def _source_dir(config: Config, confdir: Path) -> Path:
    configured = os.environ.get(ENV_VAR) or config.vlm_notebooks_source
    path = Path(configured)
    return path if path.is_absolute() else (confdir.parent / path).resolve()


def stage_notebooks(app: Sphinx, config: Config) -> None:
    """Copy the executed notebooks into ``docs/notebooks/`` and write its index page."""
    confdir = Path(app.confdir)
    source = _source_dir(config, confdir)
    executed = sorted(source.glob("*.ipynb")) if source.is_dir() else []
    run_them = (
        f"Run `python -m tools.run_notebooks --out {source}` first (or "
        f"`python tools/build_docs.py`, which does), or point {ENV_VAR} at a folder "
        "of executed notebooks."
    )
    # Render exactly the tutorial's notebooks: every one of them, and no leftover copy.
    tutorial = {path.name for path in (confdir.parent / "notebooks").glob("*.ipynb")}
    if tutorial:
        missing = sorted(tutorial - {path.name for path in executed})
        if missing:
            raise ConfigError(f"no executed copy of {', '.join(missing)} in {source}. {run_them}")
        executed = [path for path in executed if path.name in tutorial]
    if not executed:
        raise ConfigError(f"no executed notebooks in {source}. {run_them}")
    stage = confdir / STAGE_DIR
    stage.mkdir(exist_ok=True)
    (stage / ".gitignore").write_text("# generated by docs/_ext/vlm_notebooks.py\n*\n")
    wanted = {path.name for path in executed} | {"index.md", ".gitignore"}
    for old in stage.iterdir():
        if old.name not in wanted:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    for path in executed:
        _copy_if_changed(path.read_bytes(), stage / path.name)
    gpu_dir = confdir / config.vlm_notebooks_gpu_dir
    recorded = sorted(gpu_dir.glob("*.ipynb")) if gpu_dir.is_dir() else []
    gpu, stale = [], {}
    for path in recorded:
        current = confdir.parent / "notebooks" / path.name
        nb = _read(path)
        if current.is_file() and code_cells(nb) == code_cells(_read(current)):
            gpu.append(path)
        else:  # recorded from an older notebook: not shown as if it were current
            stale[path.stem] = recorded_on(nb, gpu_dir / "results.json")
            config.exclude_patterns.append(f"{config.vlm_notebooks_gpu_dir}/{path.name}")
    page = notebooks_index(
        _ordered(executed, config.vlm_notebooks_order),
        _ordered(gpu, config.vlm_notebooks_order),
        config.vlm_notebooks_gpu_dir,
        stale,
    )
    _copy_if_changed(page.encode(), stage / "index.md")
    logger.info(
        f"[vlm_notebooks] {len(executed)} executed notebooks from {source}, {len(gpu)} GPU "
        f"copies rendered, {len(stale)} recorded from an older notebook left out"
    )


def _ordered(paths: list[Path], order: list[str]) -> list[Path]:
    """Notebooks named in ``order`` first, in that order, then the others by name."""

    def key(path: Path) -> tuple[int, str]:
        return (order.index(path.stem) if path.stem in order else len(order), path.stem)

    return sorted(paths, key=key)


def _copy_if_changed(data: bytes, target: Path) -> None:
    # Keep the file's mtime when nothing changed, so incremental builds stay incremental.
    if not target.exists() or target.read_bytes() != data:
        target.write_bytes(data)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _describe(nb: dict[str, Any]) -> str:
    info = provenance(nb)
    if info is None:
        return "engine and model not recorded"
    return f"engine {_escape(info['engine'])}; model {_escape(info['model'])}"


def notebooks_index(
    cpu: list[Path], gpu: list[Path], gpu_dir: str, stale: dict[str, str] | None = None
) -> str:
    """The Markdown of ``docs/notebooks/index.md``: CPU and GPU copies side by side.

    ``stale`` maps a notebook's name to where and when its GPU copy was recorded, for
    copies recorded from an older version of the notebook (listed, not linked).
    """
    stale = stale or {}
    cpu_by_name = {path.stem: path for path in cpu}
    gpu_by_name = {path.stem: path for path in gpu}
    names = list(cpu_by_name) + [name for name in gpu_by_name if name not in cpu_by_name]
    lines = [
        "# Notebooks",
        "",
        "Each notebook is rendered with the outputs of a real run. The notebooks are committed",
        "without outputs; `python -m tools.run_notebooks` executes them with papermill",
        "(on the CPU by default, with tiny models of the real architectures trained on toy",
        "pictures) and the docs show those executed copies.",
    ]
    if gpu:
        lines.append(
            "Copies executed with SGLang on a GPU are listed beside them (see {doc}`/gpu`)."
        )
    elif stale:
        lines.append(
            "The copies executed with SGLang on a GPU that are committed under `docs/gpu/` were "
            "recorded from older versions of the notebooks, so they are not shown; {doc}`/gpu` "
            "says how to record new ones."
        )
    else:
        lines.append(
            "No copy executed with SGLang on a GPU is committed yet; {doc}`/gpu` says how to make one."
        )
    lines.append("")
    toctree = []
    for name in names:
        copies = [
            (label, path, docname)
            for label, path, docname in (
                ("outputs of this build", cpu_by_name.get(name), f"{STAGE_DIR}/{name}"),
                ("recorded on a GPU with SGLang", gpu_by_name.get(name), f"{gpu_dir}/{name}"),
            )
            if path is not None
        ]
        lines.append(f"- **{{doc}}`/{copies[0][2]}`** (`{name}.ipynb`)")
        for label, path, docname in copies:
            lines.append(f"  - {{doc}}`{label} </{docname}>`: {_describe(_read(path))}")
        if name in cpu_by_name:  # the sidebar lists each notebook once: GPU copies are under /gpu
            toctree.append(f"/{STAGE_DIR}/{name}")
        if name in stale:
            lines.append(
                f"  - recorded on a GPU with SGLang: on {_escape(stale[name])}, from an older "
                "version of this notebook, so not shown here; the next GPU record "
                "(`python tools/gpu_check.py --stage notebooks`) replaces it"
            )
        elif name not in gpu_by_name:
            lines.append("  - recorded on a GPU with SGLang: not yet")
    lines += ["", ":::{toctree}", ":hidden:", ":maxdepth: 1", "", *toctree, ":::", ""]
    return "\n".join(lines)


def inject_provenance(app: Sphinx, docname: str, source: list[str]) -> None:
    """``source-read`` handler: add the engine/model note to every notebook page."""
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    nb = json.loads(source[0])
    info = provenance(nb)
    if info is None:
        logger.warning(
            f"notebook {docname} does not say which engine and model produced its outputs: "
            f'expected metadata["{METADATA_KEY}"] with "engine" and "model" (written by '
            "python -m tools.run_notebooks) or printed 'Engine: ...' and 'Model: ...' lines",
            location=docname,
            type="vlm_notebooks",
            subtype="provenance",
        )
        return
    add_provenance_cell(nb, provenance_note(info))
    drop_widget_outputs(nb)
    if docname.startswith(f"{app.config.vlm_notebooks_gpu_dir}/"):
        # The same notebook is also rendered from this build's run: tell the two apart.
        retitle(nb, "{} (recorded on a GPU)")
    source[0] = json.dumps(nb)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("vlm_notebooks_source", "build/notebooks", "env", [str])
    app.add_config_value("vlm_notebooks_gpu_dir", "gpu", "env", [str])
    app.add_config_value("vlm_notebooks_order", [], "env", [list])
    app.connect("config-inited", stage_notebooks)
    app.connect("source-read", inject_provenance)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
