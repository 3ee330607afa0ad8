"""The notebook runner's command line: its refusals, what reaches the notebooks, its progress output.

Only the tests at the end start a kernel (on small notebooks of their own). Everywhere
else ``execute_notebook`` and ``prepare_tiny_models`` are replaced by recorders, so a
test also shows that a refused command never reached them. Executing the tutorial's
notebooks is tests/test_notebooks.py's concern.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import run_notebooks
from tools.run_notebooks import (
    NotebookNotFoundError,
    PrefixedStream,
    check_model_path,
    find_notebooks,
    main,
    notebook_family,
    notebook_parameters,
    prepare_runs,
)
from vlm_tutorial.errors import NotebookParameterError
from vlm_tutorial.settings import sglang_unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PROG = "python -m tools.run_notebooks"


@pytest.fixture(autouse=True)
def _repository_root(monkeypatch):
    """Run from the repository root, without the caller's VLM_TUTORIAL_* choices."""
    monkeypatch.chdir(ROOT)
    for name in ("MODEL_PATH", "BACKEND"):
        monkeypatch.delenv(f"VLM_TUTORIAL_{name}", raising=False)


@pytest.fixture
def executed(monkeypatch):
    """What main() hands on: ("tiny", families) and (notebook, parameters), in order."""
    calls: list[tuple[str, object]] = []

    def execute(path, out_dir, parameters=None, timeout=1800, stderr=None):
        calls.append((Path(path).name, dict(parameters or {})))
        return {"notebook": Path(path).name, "seconds": 1.5, "engine": "E", "model": "M"}

    def prepare(families, out):
        if families:
            calls.append(("tiny", list(families)))

    monkeypatch.setattr(run_notebooks, "execute_notebook", execute)
    monkeypatch.setattr(run_notebooks, "prepare_tiny_models", prepare)
    return calls


def notebooks_run(calls) -> list[tuple[str, object]]:
    return [call for call in calls if call[0] != "tiny"]


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{PROG}: error: ")
    return lines[0]


def notebook_of(path: Path, *cells: nbformat.NotebookNode) -> Path:
    """Write a notebook of ``cells`` with the python3 kernel to ``path``."""
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def write_notebook(path: Path, parameters_source: str, body: str = "x = 1") -> Path:
    parameters = nbformat.v4.new_code_cell(parameters_source, metadata={"tags": ["parameters"]})
    return notebook_of(path, parameters, nbformat.v4.new_code_cell(body))


def run_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.run_notebooks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )


# ---------------------------------------------------------------- notebook names


def test_a_short_name_is_the_notebook_in_notebooks():
    for name in ("llama4", "llama4.ipynb", "notebooks/llama4.ipynb"):
        assert find_notebooks([name]) == [Path("notebooks/llama4.ipynb")]
    assert find_notebooks([]) == [p.relative_to(ROOT) for p in NOTEBOOKS]


def test_a_wrong_name_lists_the_notebooks_and_runs_nothing(executed, capsys):
    assert main(["llama5"]) == 2
    line = one_line_error(capsys)
    assert "no notebook 'llama5'" in line
    assert all(path.stem in line for path in NOTEBOOKS)
    assert executed == []
    assert main(["llama4"]) == 0  # the valid twin
    assert notebooks_run(executed) == [("llama4.ipynb", {})]


def test_outside_the_repository_the_message_says_where_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotebookNotFoundError, match="run from the repository root"):
        find_notebooks([])
    with pytest.raises(NotebookNotFoundError, match="no notebook 'llama4'"):
        find_notebooks(["llama4"])


def test_the_family_is_read_from_the_settings_call():
    assert notebook_family(Path("notebooks/llama4.ipynb")) == "llama4"
    assert notebook_family(Path("notebooks/qwen2_5_vl.ipynb")) == "qwen2_5_vl"


# ---------------------------------------------------------------- parameter names


def test_parameters_are_read_from_the_parameters_cell(tmp_path):
    source = 'alpha = 1  # a number\nbeta = "b"\ngamma = None\ndelta = len("ab")'
    path = write_notebook(tmp_path / "demo.ipynb", source)
    assert notebook_parameters(path) == {
        "alpha": 1,
        "beta": "b",
        "gamma": None,
        "delta": "len('ab')",
    }
    assert prepare_runs([path], {"alpha": 2}) == {path: {"alpha": 2}}
    with pytest.raises(NotebookParameterError, match="demo.ipynb takes alpha, beta, gamma, delta"):
        prepare_runs([path], {"epsilon": 2})


def test_an_unknown_parameter_name_lists_the_notebooks_parameters(executed, capsys):
    declared = notebook_parameters(ROOT / "notebooks" / "llama4.ipynb")
    assert main(["llama4", "-p", "max_new_tokenz", "4"]) == 2
    line = one_line_error(capsys)
    assert "unknown parameter 'max_new_tokenz'" in line
    assert "did you mean 'max_new_tokens'?" in line
    assert f"llama4.ipynb takes {', '.join(declared)}" in line
    assert executed == []
    assert main(["llama4", "-p", "max_new_tokens", "4"]) == 0  # the valid twin
    assert notebooks_run(executed) == [("llama4.ipynb", {"max_new_tokens": 4})]


def test_a_parameter_goes_only_to_the_notebooks_that_take_it(executed):
    assert "tp_size" in notebook_parameters(ROOT / "notebooks" / "llama4.ipynb")
    assert main(["-p", "tp_size", "2"]) == 0
    given = dict(notebooks_run(executed))
    assert set(given) == {p.name for p in NOTEBOOKS}
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


def test_a_relative_checkpoint_folder_reaches_the_notebook_as_given(
    executed, tmp_path, monkeypatch
):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")
    monkeypatch.chdir(tmp_path)  # the kernel starts here too, so the relative path holds there
    assert main(["qwen2_5_vl", "-p", "model_path", "ckpt"]) == 0
    assert executed == [("qwen2_5_vl.ipynb", {"model_path": "ckpt"})]  # no tiny model needed
    check_model_path("tiny")
    check_model_path(None)


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
    with pytest.raises(NotebookParameterError, match="HF_HUB_OFFLINE=1.*hf download org/other"):
        check_model_path("org/other")
    check_model_path("org/cached-vlm")  # the valid twin


def test_online_a_hub_id_is_left_to_the_hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    check_model_path("Qwen/Qwen2.5-VL-7B-Instruct")
    with pytest.raises(NotebookParameterError, match="not a hub id"):
        check_model_path("org/name/extra")


# ---------------------------------------------------------------- backend


@pytest.mark.skipif(sglang_unavailable_reason() is None, reason="checks the no-SGLang refusal")
def test_backend_sglang_where_it_cannot_run_is_one_line(executed, capsys, monkeypatch):
    assert main(["qwen2_5_vl", "-p", "backend", "sglang"]) == 2
    line = one_line_error(capsys)
    assert f'backend="sglang" cannot run here: {sglang_unavailable_reason()}' in line
    assert executed == []
    monkeypatch.setenv("VLM_TUTORIAL_BACKEND", "sglang")
    assert main(["qwen2_5_vl"]) == 2
    assert "cannot run here" in one_line_error(capsys)
    monkeypatch.delenv("VLM_TUTORIAL_BACKEND")
    assert main(["qwen2_5_vl", "-p", "backend", "transformers"]) == 0  # the valid twin
    assert notebooks_run(executed) == [("qwen2_5_vl.ipynb", {"backend": "transformers"})]


def test_an_unknown_backend_is_one_line(executed, capsys):
    assert main(["llama4", "-p", "backend", "sglnag"]) == 2
    line = one_line_error(capsys)
    assert "backend must be one of auto, sglang, transformers, got 'sglnag'" in line
    assert executed == []


# ---------------------------------------------------------------- tiny models and progress


def test_the_tiny_models_are_made_ready_before_the_first_notebook(executed, capsys):
    assert main(["formats_overview", "llama4", "-p", "backend", "transformers"]) == 0
    assert executed[0] == ("tiny", ["qwen2_5_vl", "llama4"])
    assert [name for name, _ in executed[1:]] == ["formats_overview.ipynb", "llama4.ipynb"]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[1/2] formats_overview.ipynb ..."
    assert out[1] == "[1/2] formats_overview.ipynb ok in 1.5 s (E; M)"
    assert out[2] == "[2/2] llama4.ipynb ..."


def test_prepare_tiny_models_says_what_it_does(monkeypatch):
    import vlm_tutorial.offline.tiny as tiny

    made = []
    monkeypatch.setattr(tiny, "tiny_model_path", lambda family: made.append(family))
    out = io.StringIO()
    run_notebooks.prepare_tiny_models(["qwen2_5_vl", "llama4"], out)
    assert made == ["qwen2_5_vl", "llama4"]
    lines = out.getvalue().splitlines()
    assert lines[0] == "tiny qwen2_5_vl model: preparing ..."
    assert lines[1].startswith("tiny qwen2_5_vl model: ready in ") and lines[1].endswith(" s")
    assert len(lines) == 4


def test_prefixed_stream_marks_every_line_once():
    out = io.StringIO()
    stream = PrefixedStream(out, "> ")
    stream.write("a\nb")
    stream.write("c\n10%\r20%\r")
    assert out.getvalue() == "> a\n> bc\n> 10%\r> 20%\r"


def test_the_command_fails_in_one_line_before_starting_a_kernel(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tools.run_notebooks", "llama4", "-p", "max_new_tokenz", "4",
         "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unknown parameter 'max_new_tokenz'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_command_shows_a_notebooks_progress_on_the_terminal_as_it_runs(tmp_path):
    """A real kernel: the notebook's stderr reaches the terminal, and the end line has seconds."""
    body = "import sys\nprint('step 1 of 2 done', file=sys.stderr)\nprint('answer', word)"
    path = write_notebook(tmp_path / "demo.ipynb", 'word = "none"', body)
    proc = subprocess.run(
        [sys.executable, "-m", "tools.run_notebooks", str(path), "-p", "word", "hello",
         "--out", str(tmp_path / "out"), "--summary", str(tmp_path / "summary.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/1] demo.ipynb ..." in proc.stdout
    assert "    | step 1 of 2 done" in proc.stderr
    assert "[1/1] demo.ipynb ok in " in proc.stdout
    assert "tiny" not in proc.stdout  # a notebook without a model needs none
    executed = nbformat.read(tmp_path / "out" / "demo.ipynb", as_version=4)
    assert "answer hello" in "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary[0]["notebook"] == "demo.ipynb" and summary[0]["parameters"] == {"word": "hello"}
    assert executed.metadata["vlm_tutorial"]["seconds"] == summary[0]["seconds"] > 0


def test_runner_fails_on_a_notebook_that_raises(tmp_path):
    bad = notebook_of(tmp_path / "nb.ipynb", nbformat.v4.new_code_cell("raise ValueError('boom')"))
    proc = run_command(str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "nb.ipynb FAILED" in proc.stdout and "ValueError: boom" in proc.stdout


def test_runner_accepts_error_demonstrations_and_refuses_ones_that_do_not_raise(tmp_path):
    demo = nbformat.v4.new_code_cell("1 / 0", metadata={"tags": ["raises-exception"]})
    after = nbformat.v4.new_code_cell("print('after the demonstration')")
    proc = run_command(
        str(notebook_of(tmp_path / "nb.ipynb", demo, after)), "--out", str(tmp_path / "out")
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    executed = nbformat.read(tmp_path / "out" / "nb.ipynb", as_version=4)
    assert "after the demonstration" in executed.cells[1].outputs[0]["text"]
    quiet = nbformat.v4.new_code_cell("1 / 1", metadata={"tags": ["raises-exception"]})
    proc = run_command(
        str(notebook_of(tmp_path / "nb.ipynb", quiet)), "--out", str(tmp_path / "out")
    )
    assert proc.returncode == 1 and "tagged raises-exception but raised nothing" in proc.stdout
