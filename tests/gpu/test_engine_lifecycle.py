"""SGLang's processes end with the engine.

``open_engine`` shuts the engine down on every path, and the model notebooks'
engine cell, run a second time in the same Jupyter kernel (as a learner re-runs
it), shuts the first engine down before it starts the next: one scheduler is
left, and the GPU memory it holds stays what one engine holds.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from gpu_support import (
    COMPARE_ENGINE_ARGS,
    EXAMPLE_PICTURE,
    FAMILIES,
    QUESTION,
    describe_processes,
    greedy,
    model_path_for,
    sglang_processes,
    wait_until_gone,
)

pytestmark = pytest.mark.gpu

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
MODEL_NOTEBOOKS = {"qwen2_5_vl.ipynb": "qwen2_5_vl", "llama4.ipynb": "llama4"}
GIB = 2**30


class BodyError(RuntimeError):
    """Raised on purpose inside the ``with open_engine(...)`` block."""


def running_schedulers(since: float) -> list[str]:
    """``sglang::scheduler`` processes started after ``since`` that are still running."""
    import psutil

    alive = []
    for proc in sglang_processes(since=since):
        try:
            title = " ".join([proc.name(), *proc.cmdline()])  # the name alone is cut at 15
            if proc.status() != psutil.STATUS_ZOMBIE and "scheduler" in title:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return describe_processes(alive)


@pytest.mark.parametrize("family_name", FAMILIES)
def test_no_sglang_process_left_after_body_raises(family_name: str, real_models: bool) -> None:
    """A cell that raises inside ``open_engine`` still shuts the engine and its processes down."""
    import torch
    from transformers import AutoProcessor

    from vlm_bench.engines import open_engine
    from vlm_tutorial.images import example_image
    from vlm_tutorial.prompts import build_prompt

    path = model_path_for(family_name, real=real_models)
    prompt = build_prompt(AutoProcessor.from_pretrained(path), QUESTION)
    free_before, _ = torch.cuda.mem_get_info()
    since = time.time()
    during: list[Any] = []
    names: list[str] = []
    with (
        pytest.raises(BodyError),
        open_engine(path, backend="sglang", **COMPARE_ENGINE_ARGS) as engine,
    ):
        during = sglang_processes(since=since)
        image = example_image(EXAMPLE_PICTURE)
        out = engine.generate(prompt=prompt, image_data=[image], sampling_params=greedy(2))
        assert len(out["output_ids"]) == 2
        names = describe_processes(during)  # while they run: afterwards their titles are gone
        raise BodyError("raised inside open_engine on purpose")
    # The check must be able to fail: it has to see the scheduler while the engine runs.
    assert any("scheduler" in n for n in names), f"no sglang::scheduler seen while running: {names}"
    left = wait_until_gone(during, timeout=60)
    assert not left, f"still running 60 s after the with block raised: {describe_processes(left)}"
    newer = sglang_processes(since=since)
    assert not newer, f"SGLang processes left over: {describe_processes(newer)}"
    free_after, _ = torch.cuda.mem_get_info()
    # The scheduler held mem_fraction_static of the GPU; its exit gives that back.
    assert free_after >= free_before - 2 * GIB, (free_before, free_after)


def engine_cell_rerun(notebook: str, real_models: bool) -> tuple[Any, int]:
    """The notebook's code cells up to its engine cell, the engine cell twice, then a shutdown.

    The parameters are papermill's way: a cell after the ``parameters`` cell sets
    ``backend = "sglang"`` and the tiny model (``None``, the real one, with ``--gpu-real``).
    Returns the notebook and the index of the first engine cell.
    """
    import nbformat

    source = nbformat.read(NOTEBOOK_DIR / notebook, as_version=4)
    code = [cell for cell in source.cells if cell.cell_type == "code"]
    (engine_index,) = [i for i, c in enumerate(code) if "sglang.Engine(model_path" in c.source]
    model = None if real_models else "tiny"
    parameters = nbformat.v4.new_code_cell(f"model_path = {model!r}\nbackend = 'sglang'")
    cells = []
    for cell in code[:engine_index]:
        cells.append(cell)
        if "parameters" in cell.metadata.get("tags", []):
            cells.append(parameters)
    assert parameters in cells, f"{notebook} has no cell tagged parameters"
    engine_cell = code[engine_index]
    shutdown = nbformat.v4.new_code_cell('if "engine" in globals():\n    engine.shutdown()')
    again = nbformat.v4.new_code_cell(
        engine_cell.source, metadata=copy.deepcopy(engine_cell.metadata)
    )
    cells += [engine_cell, again, shutdown]
    return nbformat.v4.new_notebook(cells=cells, metadata=source.metadata), len(cells) - 3


@pytest.mark.parametrize("notebook", sorted(MODEL_NOTEBOOKS))
def test_rerunning_the_engine_cell_in_one_kernel_leaves_one_engine(
    notebook: str, real_models: bool, gpu_record: dict[str, Any]
) -> None:
    """The engine cell, executed twice in one Jupyter kernel: the first engine goes, one stays."""
    import torch
    from nbclient import NotebookClient

    nb, first_engine = engine_cell_rerun(notebook, real_models)
    client = NotebookClient(
        nb,
        timeout=1800,  # a hang guard: a tiny model's engine starts in well under a minute
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    torch.cuda.mem_get_info()  # this process's own CUDA context, before any measurement
    since = time.time()
    with client.setup_kernel():
        try:
            for index in range(first_engine + 1):
                client.execute_cell(nb.cells[index], index)
            first = sglang_processes(since=since)
            with_one = running_schedulers(since)
            free_with_one, total = torch.cuda.mem_get_info()
            client.execute_cell(nb.cells[first_engine + 1], first_engine + 1)
            left = wait_until_gone(first, timeout=60)
            after_rerun = running_schedulers(since)
            free_after_rerun, _ = torch.cuda.mem_get_info()
        finally:
            client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    gpu_record.setdefault("engine_cell_rerun", {})[notebook] = {
        "schedulers_with_one": with_one,
        "schedulers_after_rerun": after_rerun,
        "free_gib_with_one": round(free_with_one / GIB, 1),
        "free_gib_after_rerun": round(free_after_rerun / GIB, 1),
        "total_gib": round(total / GIB, 1),
    }
    if not real_models:
        assert len(with_one) == 1, f"one engine runs one scheduler at tp_size 1: {with_one}"
    assert not left, f"the first engine still runs: {describe_processes(left)}"
    assert len(after_rerun) == len(with_one) >= 1, (with_one, after_rerun)
    assert not set(after_rerun) & set(with_one), "the cell did not start a new engine"
    # Two engines at once would hold twice the static memory: the second must fit where one was.
    assert free_after_rerun >= free_with_one - 2 * GIB, (free_with_one, free_after_rerun)
    gone = wait_until_gone(sglang_processes(since=since), timeout=60)
    assert not gone, f"SGLang processes left after engine.shutdown(): {describe_processes(gone)}"
