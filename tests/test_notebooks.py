"""The notebooks: committed clean, written with SGLang's own calls, executed once by the main job.

Each notebook runs once on the CPU, through the README's main job
(``python -m tools.run_notebooks``); the tests below read that one
executed copy. The request dicts that the model notebooks write out literally
are tied to the package's request builders by executing the notebooks' cells
that build them (every cell not tagged ``engine``) and comparing key by key.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from tools.run_notebooks import METADATA_KEY, printed_setting, unexecuted_cells

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MODEL_NOTEBOOKS = {"qwen2_5_vl.ipynb": "qwen2_5_vl", "llama4.ipynb": "llama4"}


def _code(path: Path) -> list[nbformat.NotebookNode]:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def test_the_tutorial_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"qwen2_5_vl.ipynb", "llama4.ipynb", "formats_overview.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    dirty = [i for i, c in enumerate(_code(path)) if c.outputs or c.execution_count is not None]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


def _parameters(path: Path) -> dict[str, object]:
    cells = [c for c in _code(path) if "parameters" in _tags(c)]
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_default_to_none_or_a_plain_value(path):
    params = _parameters(path)
    assert params and all(value is None or isinstance(value, int) for value in params.values())


def test_the_documented_parameters():
    assert _parameters(ROOT / "notebooks" / "qwen2_5_vl.ipynb") == {
        "model_path": None,
        "backend": None,
        "max_new_tokens": 16,
        "image": None,
    }
    assert _parameters(ROOT / "notebooks" / "llama4.ipynb") == {
        "model_path": None,
        "backend": None,
        "max_new_tokens": 16,
        "image": None,
        "tp_size": None,
    }


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("name", MODEL_NOTEBOOKS)
def test_model_notebooks_write_sglangs_calls_out(name):
    """What a learner copies: the engine, the processor call, the dicts and generate, in code cells."""
    source = _flat("\n".join(c.source for c in _code(ROOT / "notebooks" / name)))
    for call in (
        "nest_asyncio.apply()",
        "sglang.Engine(model_path=settings.model_path, **engine_args)",
        "ReferenceEngine(model_path=settings.model_path, **engine_args)",
        "machine_engine_args()",
        "processor(text=[prompt], images=[img],",
        'dict(inputs, format="processor_output")',
        "engine.generate(prompt=prompt, image_data=[img], sampling_params=sampling_params)",
        "engine.generate(input_ids=input_ids, image_data=[proc_item], sampling_params=sampling_params)",
        "engine.generate(input_ids=input_ids, image_data=[emb_item], sampling_params=sampling_params)",
        "validate_image_data([emb_item], input_ids=input_ids",
        "engine.shutdown()",
    ):
        assert _flat(call) in source, f"{name} has no code cell with {call!r}"
    for wrapper in (
        "start_engine",
        "open_engine",
        "processor_output_request",
        "precomputed_embedding_request",
        "raw_request",
        "run_processor",
        "vlm_bench",
        "encoder(inputs",
    ):
        assert wrapper not in source, (
            f"{name} calls the project's wrapper {wrapper} instead of the API"
        )


def test_each_family_writes_its_own_embedding_dict():
    qwen = _flat("\n".join(c.source for c in _code(ROOT / "notebooks" / "qwen2_5_vl.ipynb")))
    llama = _flat("\n".join(c.source for c in _code(ROOT / "notebooks" / "llama4.ipynb")))
    lean = 'dict(format="precomputed_embedding", feature=embedding, image_grid_thw=grid_thw)'
    assert _flat(lean) in qwen and _flat('grid_thw = inputs["image_grid_thw"]') in qwen
    assert _flat('dict(format="processor_output", precomputed_embeddings=embedding)') in llama
    # The embedding is the checkpoint's own module, called as transformers calls it.
    assert _flat("visual(") in qwen and ".pooler_output" in qwen
    assert "vision.multi_modal_projector(" in llama and "vision.vision_model(" in llama


def _engine_cell(name: str) -> nbformat.NotebookNode:
    (cell,) = [c for c in _code(ROOT / "notebooks" / name) if "sglang.Engine(" in c.source]
    return cell


@pytest.mark.parametrize("name", sorted(MODEL_NOTEBOOKS))
def test_engine_cell_is_short(name):
    lines = [
        ln
        for ln in _engine_cell(name).source.splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    assert len(lines) <= 12, lines


@pytest.mark.parametrize("name", sorted(MODEL_NOTEBOOKS))
def test_the_notebooks_engine_args_are_the_family_registrys(name, monkeypatch):
    """The values written out in the engine cell are the registry's, for the real model."""
    from types import SimpleNamespace

    from vlm_tutorial import get_family

    monkeypatch.delenv("VLM_TUTORIAL_ENGINE_ARGS", raising=False)
    monkeypatch.setenv("SGLANG_VLM_CACHE_SIZE_MB", "")
    family = get_family(MODEL_NOTEBOOKS[name])
    source = _engine_cell(name).source.split('if "engine" in globals()')[0]
    real = SimpleNamespace(tp_size=family.engine_args_for(family.real_model_id).get("tp_size", 1))
    namespace = {"settings": real, "os": __import__("os"), "machine_engine_args": dict}
    exec(compile(source, f"{name}:engine cell", "exec"), namespace)
    assert namespace["engine_args"] == family.engine_args_for(family.real_model_id)
    assert namespace["engine_args"] == dict(family.engine_args)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_the_docs_code_box(path):
    """88 characters fit the rendered code box at 1280 px."""
    wide = [ln for c in _code(path) for ln in c.source.splitlines() if len(ln) > 88]
    assert not wide, wide


def test_engine_cells_are_tagged():
    """Cells that talk to the engine carry the tag 'engine' (the request cells run without one below)."""
    for name in MODEL_NOTEBOOKS:
        for cell in _code(ROOT / "notebooks" / name):
            if "engine." in cell.source or "Engine(" in cell.source:
                assert "engine" in _tags(cell), cell.source[:80]


def test_unexecuted_cells_are_found():
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2")]
    )
    nb.cells[0].execution_count = 1
    assert unexecuted_cells(nb) == [1]
    nb.cells[1].execution_count = 2
    assert unexecuted_cells(nb) == []


def _run_main_job(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.run_notebooks", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


# --------------------------------------------------------------------------- the main job, once


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """Run the README's main job (papermill over every notebook) once for this module."""
    out = tmp_path_factory.mktemp("executed")
    proc = _run_main_job("--out", str(out), "--summary", str(out / "summary.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout


def _executed(main_job, name: str):
    return nbformat.read(main_job[0] / name, as_version=4)


def _stdout(nb) -> str:
    return "".join(
        o.get("text", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.get("output_type") == "stream"
    )


def test_main_job_prints_a_progress_line_per_notebook(main_job):
    _, stdout = main_job
    for i, path in enumerate(NOTEBOOKS, 1):
        assert f"[{i}/{len(NOTEBOOKS)}] {path.name} ok in" in stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_main_job_executes_every_cell_and_nothing_raises_unexpectedly(main_job, path):
    nb = _executed(main_job, path.name)
    assert unexecuted_cells(nb) == []
    for cell in nb.cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert bool(errors) == ("raises-exception" in _tags(cell)), cell.source[:80]
    meta = nb.metadata[METADATA_KEY]
    assert "not the real model" in meta["model"]
    for cell in nb.cells:  # error demonstrations show the message, not a traceback
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                assert len(output["traceback"]) <= 2 and "File " not in "".join(output["traceback"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_machine_path_in_any_output(main_job, path):
    import os

    text = json.dumps([c.get("outputs", []) for c in _executed(main_job, path.name).cells])
    for machine_path in (str(ROOT), os.path.expanduser("~"), "/tmp/", str(main_job[0])):
        assert machine_path not in text, machine_path


@pytest.mark.parametrize("name", MODEL_NOTEBOOKS)
def test_model_notebooks_run_on_the_reference_engine_and_say_so(main_job, name):
    nb = _executed(main_job, name)
    assert nb.metadata[METADATA_KEY]["engine"].startswith("transformers reference engine")
    assert printed_setting(nb, "Engine") == nb.metadata[METADATA_KEY]["engine"]


def test_a_notebook_that_starts_no_engine_names_none(main_job):
    nb = _executed(main_job, "formats_overview.ipynb")
    assert nb.metadata[METADATA_KEY]["engine"] == "none (this notebook only builds requests)"
    assert "SGLang (sglang.Engine)" not in _stdout(nb)


@pytest.mark.parametrize("name", MODEL_NOTEBOOKS)
def test_model_notebooks_show_every_raw_kind_and_identical_formats(main_job, name):
    text = _stdout(_executed(main_job, name))
    for kind in ("file path", "http URL", "base64", "data URL"):
        assert f"{kind:9} -> same output_ids as the PIL image: True" in text
    # both comparisons (one image, two images): each format agrees with raw on every token
    agreements = re.findall(
        r"^(?:processor_output|precomputed_embedding): (\d+) tokens, (\d+) leading", text, re.M
    )
    assert len(agreements) == 4 and all(n == m for n, m in agreements), agreements
    assert "engine shut down" in text


def test_summary_records_wall_times(main_job):
    summary = json.loads((main_job[0] / "summary.json").read_text())
    assert {s["notebook"] for s in summary} == {p.name for p in NOTEBOOKS}
    assert all(s["seconds"] > 0 for s in summary)


# --------------------------------------------------------------------------- the literal dicts


def _run_request_cells(path: Path) -> dict:
    """Execute every code cell not tagged 'engine' (no engine starts, nothing is generated)."""
    namespace: dict = {"__name__": "__notebook__"}
    for cell in _code(path):
        if "engine" in _tags(cell) or "raises-exception" in _tags(cell):
            continue
        exec(compile(cell.source, f"{path.name}:cell", "exec"), namespace)
    return namespace


def _assert_same_dict(literal: dict, built: dict, what: str) -> None:
    assert set(literal) == set(built), (
        f"{what}: keys {sorted(literal)} != builder's {sorted(built)}"
    )
    for key, value in built.items():
        if isinstance(value, torch.Tensor):
            other = literal[key]
            assert isinstance(other, torch.Tensor), f"{what}[{key!r}] is not a tensor"
            assert other.dtype == value.dtype and other.shape == value.shape, f"{what}[{key!r}]"
            assert torch.allclose(other.float(), value.float(), atol=1e-6, rtol=0), (
                f"{what}[{key!r}]"
            )
        else:
            assert literal[key] == value, f"{what}[{key!r}]: {literal[key]!r} != {value!r}"


@functools.cache
def _request_namespace(name: str) -> dict:
    return _run_request_cells(ROOT / "notebooks" / name)


@pytest.fixture(params=sorted(MODEL_NOTEBOOKS))
def notebook_requests(request):
    return request.param, _request_namespace(request.param)


def test_the_notebooks_dicts_are_the_builders_dicts(notebook_requests):
    """A changed dict in a notebook, or a changed builder, fails here."""
    from vlm_bench.requests import precomputed_embedding_request, processor_output_request

    name, ns = notebook_requests
    processor, img, prompt, encoder = ns["processor"], ns["img"], ns["prompt"], ns["encoder"]
    second, prompt2 = ns["second"], ns["prompt2"]
    small_kwargs = (
        {"size": {"shortest_edge": 3136, "longest_edge": img.width * img.height // 4}}
        if name == "qwen2_5_vl.ipynb"
        else {"max_patches": 1}
    )
    cases = {
        "proc_item": (ns["input_ids"], processor_output_request(processor, prompt, [img])),
        "small_item": (
            ns["small_ids"],
            processor_output_request(processor, prompt, [img], **small_kwargs),
        ),
        "emb_item": (
            ns["input_ids"],
            precomputed_embedding_request(processor, prompt, [img], encoder),
        ),
        "multi_proc_item": (
            ns["input_ids2"],
            processor_output_request(processor, prompt2, [img, second]),
        ),
        "multi_emb_item": (
            ns["input_ids2"],
            precomputed_embedding_request(processor, prompt2, [img, second], encoder),
        ),
    }
    for variable, (ids, built) in cases.items():
        assert ids == built["input_ids"], f"{name}: the input_ids sent with {variable}"
        (built_item,) = built["image_data"]
        _assert_same_dict(ns[variable], built_item, f"{name}: {variable}")


def test_the_qwen_notebooks_reused_embedding_requests_are_the_builders():
    from vlm_bench.requests import precomputed_embedding_request

    ns = _request_namespace("qwen2_5_vl.ipynb")
    processor, img, second, encoder = ns["processor"], ns["img"], ns["second"], ns["encoder"]
    for question, (ids, item) in ns["reuse_requests"].items():
        images = [img, second][: question.count("<image>")]
        prompt = ns["build_prompt"](processor, question, num_images=len(images))
        built = precomputed_embedding_request(processor, prompt, images, encoder)
        assert ids == built["input_ids"], question
        _assert_same_dict(item, built["image_data"][0], f"reuse {question!r}")


def test_the_reuse_section_asks_what_the_tiny_model_learnt(main_job):
    """The stored embedding answers both questions right: alone, and beside a new picture."""
    text = _stdout(_executed(main_job, "qwen2_5_vl.ipynb"))
    assert "What's shown here: <image>? -> a red circle and a blue square\n" in text
    assert "<image> and <image>? -> a red circle and a blue square; a yellow triangle\n" in text


def test_the_reuse_section_exists_in_the_qwen_notebook():
    source = "\n".join(c.source for c in _code(ROOT / "notebooks" / "qwen2_5_vl.ipynb"))
    assert "from safetensors.torch import load_file, save_file" in source
    assert "pickle" not in source


# --------------------------------------------------------------------------- re-running the engine cell


@pytest.mark.parametrize("name", sorted(MODEL_NOTEBOOKS))
def test_rerunning_the_engine_cell_shuts_the_first_engine_down(name):
    """In a real kernel: run the settings cells and the engine cell twice."""
    from nbclient import NotebookClient

    cells = _code(ROOT / "notebooks" / name)
    setup = [c for c in cells if "engine" not in _tags(c)][:2]  # parameters, settings
    (engine_cell,) = [c for c in cells if "ReferenceEngine(model_path" in c.source]
    check = nbformat.v4.new_code_cell(
        "second_engine = engine\n"
        "print('first shut down:', first_engine.is_shut_down, '| second running:', not second_engine.is_shut_down)\n"
        "second_engine.shutdown()"
    )
    keep = nbformat.v4.new_code_cell("first_engine = engine")
    nb = nbformat.v4.new_notebook(
        cells=[
            *(nbformat.v4.new_code_cell(c.source) for c in setup),
            nbformat.v4.new_code_cell(engine_cell.source),
            keep,
            nbformat.v4.new_code_cell(engine_cell.source),
            check,
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    NotebookClient(
        nb, timeout=300, resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    assert "first shut down: True | second running: True" in nb.cells[-1].outputs[0]["text"]


def test_qwen_notebooks_smaller_pixel_budget_gives_fewer_image_tokens(main_job):
    """The custom-preprocessing cell really changes the grid (a max_pixels= keyword would not)."""
    text = _stdout(_executed(main_job, "qwen2_5_vl.ipynb"))
    found = {
        name: tuple(map(int, m.groups()))
        for name, pattern in (("default", "default"), ("small", "a quarter"))
        if (
            m := re.search(pattern + r"\s+grid \[\[1, (\d+), (\d+)\]\] -> (\d+) image tokens", text)
        )
    }
    assert set(found) == {"default", "small"}, text
    # 448x336 pixels in 14-px patches: a 24x32 grid, one token per 2x2 patches.
    assert found["default"] == (24, 32, 192)
    h, w, tokens = found["small"]
    assert tokens == h * w // 4 and (h * 14) * (w * 14) <= 448 * 336 // 4
    assert tokens < 192
