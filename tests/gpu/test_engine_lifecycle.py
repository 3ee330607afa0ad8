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

    from vlm_tutorial.engines import open_engine
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
