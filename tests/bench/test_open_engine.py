"""open_engine: the benchmark's and the tests' engine, always shut down.

The ``sglang`` branch is checked with a clearly named test double for its
shutdown-on-error lifecycle only; it generates nothing. The reference engine
has its own tests (tests/offline/test_reference.py).
"""

from __future__ import annotations

import asyncio
import sys
import types

import pytest
import torch

from vlm_bench.engines import open_engine
from vlm_tutorial.offline.reference import ReferenceEngine
from vlm_tutorial.settings import ENGINE_ARGS_VAR as ENV_VAR
from vlm_tutorial.settings import sglang_unavailable_reason

QWEN_ID = "Qwen/Qwen2.5-VL-3B-Instruct"
LLAMA4_ID = "meta-llama/Llama-4-Scout-17B-16E-Instruct"


class _LifecycleTestDouble:
    """Stands in for ``sglang.Engine`` in lifecycle tests only; it generates nothing."""

    instances: list[_LifecycleTestDouble] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.shutdown_calls = 0
        _LifecycleTestDouble.instances.append(self)

    def shutdown(self):
        self.shutdown_calls += 1


@pytest.fixture
def sglang_lifecycle_double(monkeypatch):
    """A fake ``sglang`` module (only ``Engine``) and a GPU that is said to exist."""
    module = types.ModuleType("sglang")
    module.Engine = _LifecycleTestDouble
    _LifecycleTestDouble.instances = []
    monkeypatch.setitem(sys.modules, "sglang", module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return _LifecycleTestDouble


def test_sglang_branch_shuts_down_when_the_body_raises(sglang_lifecycle_double, monkeypatch):
    monkeypatch.setenv(ENV_VAR, '{"attention_backend": "triton"}')
    with (
        pytest.raises(RuntimeError, match="cell failed"),
        open_engine(LLAMA4_ID, backend="sglang", mem_fraction_static=0.5) as engine,
    ):
        raise RuntimeError("cell failed")
    (double,) = sglang_lifecycle_double.instances
    assert engine is double
    assert double.shutdown_calls == 1
    assert double.kwargs == {
        "model_path": LLAMA4_ID,
        "enable_multimodal": True,
        "tp_size": 4,
        "context_length": 65536,
        "disable_radix_cache": True,
        "log_level": "warning",
        "attention_backend": "triton",  # the machine's
        "mem_fraction_static": 0.5,  # the caller's, over the tutorial's 0.8
    }


def test_sglang_branch_shuts_down_on_normal_exit_too(sglang_lifecycle_double):
    with open_engine(QWEN_ID, backend="sglang"):
        pass
    assert sglang_lifecycle_double.instances[0].shutdown_calls == 1


def test_auto_picks_sglang_where_it_can_run(sglang_lifecycle_double):
    with open_engine(QWEN_ID) as engine:
        assert isinstance(engine, sglang_lifecycle_double)


def test_nest_asyncio_is_applied_inside_a_running_event_loop(sglang_lifecycle_double, monkeypatch):
    applied = []
    monkeypatch.setitem(
        sys.modules, "nest_asyncio", types.SimpleNamespace(apply=lambda: applied.append(1))
    )

    async def notebook_cell():
        with open_engine(QWEN_ID, backend="sglang"):
            pass

    asyncio.run(notebook_cell())
    assert applied == [1]
    # the twin: no running loop, no patching
    with open_engine(QWEN_ID, backend="sglang"):
        pass
    assert applied == [1]


@pytest.mark.skipif(sglang_unavailable_reason() is None, reason="sglang and a GPU are present")
def test_auto_picks_the_reference_engine_here(capsys):
    from vlm_tutorial.offline.tiny import tiny_model_path

    tiny_paths = {"llama4": tiny_model_path("llama4")}
    with open_engine(tiny_paths["llama4"], mem_fraction_static=0.5) as engine:
        assert isinstance(engine, ReferenceEngine)
        out = engine.generate(
            prompt="Hello",
            sampling_params={"temperature": 0, "max_new_tokens": 2, "ignore_eos": True},
        )
        assert out["meta_info"]["completion_tokens"] == 2
    printed = capsys.readouterr().out
    # the SGLang-only arguments are noted once, not an error
    assert printed.count("ignoring SGLang-only engine arguments") == 1
    assert "enable_multimodal" in printed and "mem_fraction_static" in printed
    assert engine.model is None  # shut down on exit
