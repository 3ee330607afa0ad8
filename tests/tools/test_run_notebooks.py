"""The notebook runner's command line: every mistake is one line and a non-zero exit, before any run.

Nothing here executes a notebook: ``execute_notebook`` is replaced by a recorder,
so a test also shows that a refused command never reached it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import run_notebooks
from vlm_tutorial.settings import sglang_unavailable_reason
from vlm_tutorial.errors import (
    CheckpointNotFoundError,
    EngineUnavailableError,
    NotebookNotFoundError,
    NotebookParameterError,
)
from tools.run_notebooks import (
    check_model_path,
    find_notebooks,
    main,
    notebook_parameters,
    prepare_runs,
)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ENV_NAMES = ("MODEL_PATH", "BACKEND", "MAX_NEW_TOKENS", "IMAGE", "TP_SIZE")


@pytest.fixture(autouse=True)
def _repository_root(monkeypatch):
    """Run from the repository root, without VLM_TUTORIAL_* overrides from the caller."""
    monkeypatch.chdir(ROOT)
    for name in ENV_NAMES:
        monkeypatch.delenv(f"VLM_TUTORIAL_{name}", raising=False)


@pytest.fixture
def executed(monkeypatch):
    """Record the notebooks main() would execute, with their parameters, instead of running them."""
    calls: list[tuple[str, dict]] = []

    def record(path, out_dir, parameters=None, timeout=1800):
        calls.append((Path(path).name, dict(parameters or {})))
        return {"notebook": Path(path).name, "seconds": 0.1, "engine": "e", "model": "m"}

    monkeypatch.setattr(run_notebooks, "execute_notebook", record)
    return calls


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("python -m tools.run_notebooks: error: ")
    return lines[0]


def write_notebook(path: Path, parameters_source: str) -> Path:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(parameters_source), nbformat.v4.new_code_cell("x = 1")]
    )
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


# ---------------------------------------------------------------- notebook names


def test_a_short_name_is_the_notebook_in_notebooks():
    assert find_notebooks(["llama4"]) == [Path("notebooks/llama4.ipynb")]
    assert find_notebooks(["llama4.ipynb"]) == [Path("notebooks/llama4.ipynb")]
    assert find_notebooks(["notebooks/llama4.ipynb"]) == [Path("notebooks/llama4.ipynb")]
    assert find_notebooks([]) == [p.relative_to(ROOT) for p in NOTEBOOKS]


def test_a_wrong_name_lists_the_notebooks(executed, capsys):
    assert main(["llama5"]) == 2
    line = one_line_error(capsys)
    assert "no notebook 'llama5'" in line
    for path in NOTEBOOKS:
        assert path.stem in line
    assert executed == []
    # The valid twin.
    assert main(["llama4"]) == 0
    assert [name for name, _ in executed] == ["llama4.ipynb"]


def test_outside_the_repository_the_message_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotebookNotFoundError, match="run from the repository root"):
        find_notebooks([])
    with pytest.raises(NotebookNotFoundError, match="no notebook 'llama4'"):
        find_notebooks(["llama4"])


# ---------------------------------------------------------------- parameter names


def test_parameters_are_read_from_the_notebook(tmp_path):
    path = write_notebook(
        tmp_path / "demo.ipynb", 'alpha = 1  # a number\nbeta = "b"\ngamma = None'
    )
    assert notebook_parameters(path) == {"alpha": 1, "beta": "b", "gamma": None}
    assert prepare_runs([path], {"alpha": 2}) == {path: {"alpha": 2}}
    with pytest.raises(NotebookParameterError, match="demo.ipynb takes alpha, beta, gamma"):
        prepare_runs([path], {"delta": 2})


def test_an_unknown_parameter_name_lists_the_notebooks_parameters(executed, capsys):
    declared = notebook_parameters(ROOT / "notebooks" / "llama4.ipynb")
    assert main(["llama4", "-p", "max_new_tokenz", "4"]) == 2
    line = one_line_error(capsys)
    assert "unknown parameter 'max_new_tokenz'" in line
    assert "did you mean 'max_new_tokens'?" in line
    assert f"llama4.ipynb takes {', '.join(declared)}" in line
    assert executed == []
    # The valid twin.
    assert main(["llama4", "-p", "max_new_tokens", "4"]) == 0
    assert executed == [("llama4.ipynb", {"max_new_tokens": 4})]


def test_a_parameter_goes_only_to_the_notebooks_that_take_it(executed):
    assert "tp_size" in notebook_parameters(ROOT / "notebooks" / "llama4.ipynb")
    assert main(["-p", "tp_size", "2"]) == 0
    given = dict(executed)
    assert given["llama4.ipynb"] == {"tp_size": 2}
    assert all(params == {} for name, params in given.items() if name != "llama4.ipynb")


def test_a_parameter_no_selected_notebook_takes_is_refused(executed, capsys):
    assert main(["formats_overview", "-p", "tp_size", "2"]) == 2
    assert "unknown parameter 'tp_size'" in one_line_error(capsys)
    assert executed == []


# ---------------------------------------------------------------- model_path


@pytest.mark.parametrize(
    ("model_path", "message"),
    [
        ("/no/such/model", "does not exist"),
        ("./no_such_folder", "does not exist"),
        ("no_such_folder", "does not exist"),
        ("README.md", "is a file, not a checkpoint folder"),
        ("notebooks", "a folder without a config.json"),
    ],
)
def test_a_model_path_that_names_no_checkpoint_is_one_line(model_path, message, executed, capsys):
    assert main(["qwen2_5_vl", "-p", "model_path", model_path]) == 2
    line = one_line_error(capsys)
    assert message in line and "'tiny'" in line
    assert executed == []


def test_a_model_path_from_the_environment_is_checked_too(executed, capsys, monkeypatch):
    monkeypatch.setenv("VLM_TUTORIAL_MODEL_PATH", "/no/such/model")
    assert main(["qwen2_5_vl"]) == 2
    assert "'/no/such/model' does not exist" in one_line_error(capsys)
    assert executed == []


def test_a_relative_checkpoint_folder_reaches_the_notebook_absolute(
    executed, tmp_path, monkeypatch
):
    # The valid twin: a real folder, given relative to where the command runs.
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")
    monkeypatch.chdir(tmp_path)
    assert main(["qwen2_5_vl", "-p", "model_path", "ckpt"]) == 0
    assert executed == [("qwen2_5_vl.ipynb", {"model_path": str(tmp_path / "ckpt")})]
    for accepted in ("tiny", None):
        check_model_path(accepted)


def hub_cache(root: Path, repo_id: str) -> Path:
    """A huggingface_hub cache holding only ``config.json`` of ``repo_id`` (revision main)."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    return root


def test_offline_a_hub_id_must_be_in_the_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache(tmp_path, "org/cached-vlm")))
    with pytest.raises(CheckpointNotFoundError, match="HF_HUB_OFFLINE=1.*hf download org/other"):
        check_model_path("org/other")
    check_model_path("org/cached-vlm")  # the valid twin


def test_online_a_hub_id_is_left_to_the_hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    check_model_path("Qwen/Qwen2.5-VL-7B-Instruct")
    with pytest.raises(CheckpointNotFoundError, match="not a hub id"):
        check_model_path("org/name/extra")


# ---------------------------------------------------------------- backend


@pytest.mark.skipif(sglang_unavailable_reason() is None, reason="checks the no-SGLang error")
def test_backend_sglang_without_sglang_is_one_line(executed, capsys):
    assert main(["qwen2_5_vl", "-p", "backend", "sglang"]) == 2
    line = one_line_error(capsys)
    assert f'backend="sglang" cannot run here: {sglang_unavailable_reason()}' in line
    assert 'backend="transformers"' in line
    assert executed == []
    with pytest.raises(EngineUnavailableError):
        prepare_runs(["qwen2_5_vl"], {}, env={"VLM_TUTORIAL_BACKEND": "sglang"})
    # The valid twin.
    assert main(["qwen2_5_vl", "-p", "backend", "transformers"]) == 0
    assert executed == [("qwen2_5_vl.ipynb", {"backend": "transformers"})]


def test_an_unknown_backend_is_one_line(executed, capsys):
    assert main(["llama4", "-p", "backend", "sglnag"]) == 2
    assert "backend must be one of auto, sglang, transformers, got 'sglnag'" in one_line_error(
        capsys
    )
    assert executed == []


# ---------------------------------------------------------------- the real command


def test_the_command_fails_in_one_line_before_starting_a_kernel(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.run_notebooks",
            "llama4",
            "-p",
            "max_new_tokenz",
            "4",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unknown parameter 'max_new_tokenz'" in proc.stderr
    assert not (tmp_path / "out").exists()
