"""The notebooks: committed clean, parameterised, and executed by the main job's papermill path.

nbval runs them too: ``pytest`` collects ``notebooks/*.ipynb`` with ``--nbval-lax``
(see ``[tool.pytest.ini_options]`` in pyproject.toml).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vlm_tutorial.run_notebooks import METADATA_KEY, printed_setting, unexecuted_cells

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MODEL_NOTEBOOKS = ["qwen2_5_vl.ipynb", "llama4.ipynb"]


def test_the_tutorial_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"qwen2_5_vl.ipynb", "llama4.ipynb", "formats_overview.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


def _parameters(path: Path) -> dict[str, object]:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
    }


@pytest.mark.parametrize("name", MODEL_NOTEBOOKS)
def test_model_notebooks_have_the_documented_parameters(name):
    params = _parameters(ROOT / "notebooks" / name)
    assert params["model_path"] is None
    assert params["backend"] == "auto"
    assert isinstance(params["max_new_tokens"], int) and params["max_new_tokens"] > 0
    assert params["image"] is None


def test_llama4_notebook_has_tp_size_parameter():
    assert _parameters(ROOT / "notebooks" / "llama4.ipynb")["tp_size"] is None


def test_unexecuted_cells_are_found():
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2")]
    )
    nb.cells[0].execution_count = 1
    assert unexecuted_cells(nb) == [1]
    nb.cells[1].execution_count = 2
    assert unexecuted_cells(nb) == []


def test_runner_fails_on_a_notebook_that_raises(tmp_path):
    bad = tmp_path / "bad.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise ValueError('boom')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, bad)
    proc = subprocess.run(
        [sys.executable, "-m", "vlm_tutorial.run_notebooks", str(bad), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "bad.ipynb FAILED" in proc.stdout


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """Run the README's main job (papermill over every notebook) once for this module."""
    out = tmp_path_factory.mktemp("executed")
    proc = subprocess.run(
        [sys.executable, "-m", "vlm_tutorial.run_notebooks", "--out", str(out),
         "--summary", str(out / "summary.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout


def test_main_job_prints_a_progress_line_per_notebook(main_job):
    _, stdout = main_job
    for i, path in enumerate(NOTEBOOKS, 1):
        assert f"[{i}/{len(NOTEBOOKS)}] {path.name} ok in" in stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_main_job_executes_every_cell_on_the_reference_engine(main_job, path):
    out, _ = main_job
    nb = nbformat.read(out / path.name, as_version=4)
    assert unexecuted_cells(nb) == []
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    meta = nb.metadata[METADATA_KEY]
    assert meta["engine"].startswith("transformers reference engine")
    assert "tiny random-weight" in meta["model"]
    assert printed_setting(nb, "Engine") == meta["engine"]


def _stdout(nb) -> str:
    return "".join(
        o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream"
    )


@pytest.mark.parametrize("name", MODEL_NOTEBOOKS)
def test_model_notebooks_show_every_raw_kind_and_agreement(main_job, name):
    out, _ = main_job
    text = _stdout(nbformat.read(out / name, as_version=4))
    for kind in ("file path", "http URL", "base64", "data URL"):
        assert f"{kind:9} -> same output_ids as the PIL image: True" in text
    # both comparisons (single image, two images): every format agrees on every token
    agree = re.findall(r"(\d+) tokens, (\d+) leading tokens agree with raw", text)
    assert len(agree) == 4 and all(n == m for n, m in agree), agree
    assert "engine closed" in text


def test_summary_records_wall_times(main_job):
    out, _ = main_job
    summary = json.loads((out / "summary.json").read_text())
    assert {s["notebook"] for s in summary} == {p.name for p in NOTEBOOKS}
    assert all(s["seconds"] > 0 for s in summary)
