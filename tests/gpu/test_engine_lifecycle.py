"""``open_engine`` shuts SGLang down on every path: no scheduler process outlives the ``with`` block."""

from __future__ import annotations

import time

import pytest
from gpu_support import (
    COMPARE_ENGINE_ARGS,
    FAMILIES,
    QUESTION,
    describe_processes,
    greedy,
    model_path_for,
    sglang_processes,
    wait_until_gone,
)

pytestmark = pytest.mark.gpu


class BodyError(RuntimeError):
    """Raised on purpose inside the ``with open_engine(...)`` block."""


@pytest.mark.parametrize("family_name", FAMILIES)
def test_no_sglang_process_left_after_body_raises(family_name: str) -> None:
    """A cell that raises inside ``open_engine`` still shuts the engine and its processes down."""
    import torch
    from transformers import AutoProcessor

    from vlm_bench.engines import open_engine
    from vlm_tutorial.images import example_image
    from vlm_tutorial.prompts import build_prompt

    path = model_path_for(family_name)
    prompt = build_prompt(AutoProcessor.from_pretrained(path), QUESTION)
    free_before, _ = torch.cuda.mem_get_info()
    since = time.time()
    during: list = []
    names: list[str] = []
    with (
        pytest.raises(BodyError),
        open_engine(path, backend="sglang", **COMPARE_ENGINE_ARGS) as engine,
    ):
        during = sglang_processes(since=since)
        out = engine.generate(
            prompt=prompt, image_data=[example_image()], sampling_params=greedy(2)
        )
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
    assert free_after >= free_before - 2 * 2**30, (free_before, free_after)


@pytest.mark.parametrize("notebook", ["qwen2_5_vl.ipynb", "llama4.ipynb"])
def test_rerunning_the_notebooks_engine_cell_shuts_the_first_engine_down(notebook: str) -> None:
    """The model notebooks' engine cell, run twice as Jupyter would: one engine left, on the GPU."""
    import asyncio
    from pathlib import Path

    import nbformat
    import torch

    from vlm_tutorial.settings import notebook_settings

    path = Path(__file__).resolve().parents[2] / "notebooks" / notebook
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    (engine_cell,) = [c.source for c in cells if "sglang.Engine(model_path" in c.source]
    family = "qwen2_5_vl" if notebook.startswith("qwen") else "llama4"
    namespace = {
        "settings": notebook_settings(family, model_path=model_path_for(family), backend="sglang"),
        "tp_size": None,
    }
    # A Jupyter kernel runs its cells inside a standard asyncio loop, the one the cell's
    # nest_asyncio.apply() patches. This process imported sglang in earlier tests, which
    # made uvloop the default policy, and nest_asyncio cannot patch a uvloop loop.
    asyncio.set_event_loop(asyncio.SelectorEventLoop())
    since = time.time()
    exec(compile(engine_cell, f"{notebook}:engine", "exec"), namespace)
    first = sglang_processes(since=since)
    first_names = describe_processes(first)
    assert any("scheduler" in n for n in first_names), first_names
    free_with_one, _ = torch.cuda.mem_get_info()
    exec(compile(engine_cell, f"{notebook}:engine", "exec"), namespace)
    try:
        left = wait_until_gone(first, timeout=60)
        assert not left, f"the first engine still runs: {describe_processes(left)}"
        free_with_second, _ = torch.cuda.mem_get_info()
        # Two engines at once would hold twice the static memory: the second must fit where one was.
        assert free_with_second >= free_with_one - 2 * 2**30, (free_with_one, free_with_second)
    finally:
        namespace["engine"].shutdown()
