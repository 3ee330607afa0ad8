"""open_engine and merge_engine_args.

The ``sglang`` backend is only checked for its refusal on this machine and,
with a clearly named test double, for its shutdown-on-error lifecycle. The
reference engine has its own tests (test_reference.py).
"""

from __future__ import annotations

import asyncio
import sys
import types

import pytest
import torch

from vlm_tutorial import engines
from vlm_tutorial.settings import ENV_VAR, merge_engine_args, open_engine
from vlm_tutorial.errors import EngineUnavailableError
from vlm_tutorial.offline.reference import ReferenceEngine

QWEN_ID = "Qwen/Qwen2.5-VL-3B-Instruct"
LLAMA4_ID = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
FAMILIES = ["qwen2_5_vl", "llama4"]
MAX_NEW = 12
GREEDY = {"temperature": 0, "max_new_tokens": MAX_NEW}


# --------------------------------------------------------------------------- argument merging


def test_caller_beats_env_beats_recommended():
    env = {ENV_VAR: '{"tp_size": 2, "context_length": 4096, "disable_cuda_graph": true}'}
    args = merge_engine_args(LLAMA4_ID, {"context_length": 1024}, env=env)
    assert args["context_length"] == 1024  # caller over env
    assert args["tp_size"] == 2  # env over recommended
    assert args["disable_cuda_graph"] is True  # env only
    assert args["enable_multimodal"] is True  # recommended only


def test_real_llama4_id_gets_tp_size_4_unless_overridden():
    assert merge_engine_args(LLAMA4_ID, {}, env={})["tp_size"] == 4
    assert merge_engine_args(LLAMA4_ID, {"tp_size": 8}, env={})["tp_size"] == 8


def test_tiny_llama4_gets_the_family_args_but_not_tp_size(tiny_paths):
    args = merge_engine_args(tiny_paths["llama4"], {}, env={})
    assert args == {"enable_multimodal": True}
    assert merge_engine_args(tiny_paths["qwen2_5_vl"], {}, env={}) == {}


def test_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv(ENV_VAR, '{"mem_fraction_static": 0.3}')
    assert merge_engine_args(QWEN_ID)["mem_fraction_static"] == 0.3
    monkeypatch.delenv(ENV_VAR)
    assert merge_engine_args(QWEN_ID) == {"mem_fraction_static": 0.6}  # the real model's default


@pytest.mark.parametrize("bad", ["{tp_size: 2}", "[1, 2]", '"triton"'])
def test_bad_env_json_names_the_variable_and_shows_an_example(bad):
    with pytest.raises(ValueError, match=ENV_VAR) as info:
        merge_engine_args(QWEN_ID, {}, env={ENV_VAR: bad})
    assert '"disable_cuda_graph": true' in str(info.value)
    # the valid twin
    assert merge_engine_args(QWEN_ID, {}, env={ENV_VAR: '{"tp_size": 2}'})["tp_size"] == 2


# --------------------------------------------------------------------------- backend choice


def test_unknown_backend_lists_the_choices():
    with (
        pytest.raises(ValueError, match="auto.*sglang.*transformers"),
        open_engine(QWEN_ID, backend="vllm"),
    ):
        pass


@pytest.mark.skipif(
    engines.sglang_unavailable_reason() is None, reason="sglang and a GPU are present"
)
def test_sglang_backend_refuses_here_and_names_the_cpu_alternative():
    with (
        pytest.raises(EngineUnavailableError, match='backend="transformers"'),
        open_engine(QWEN_ID, backend="sglang"),
    ):
        pass


def test_sglang_refusal_says_which_part_is_missing(monkeypatch):
    monkeypatch.setattr(engines, "_sglang_importable", lambda: False)
    with (
        pytest.raises(EngineUnavailableError, match="sglang is not installed"),
        open_engine(QWEN_ID, backend="sglang"),
    ):
        pass
    monkeypatch.setattr(engines, "_sglang_importable", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with (
        pytest.raises(EngineUnavailableError, match="no CUDA GPU"),
        open_engine(QWEN_ID, backend="sglang"),
    ):
        pass


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
        "tp_size": 4,
        "context_length": 65536,
        "enable_multimodal": True,
        "attention_backend": "triton",
        "mem_fraction_static": 0.5,  # the caller's, over the real model's 0.8
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


@pytest.mark.skipif(
    engines.sglang_unavailable_reason() is None, reason="sglang and a GPU are present"
)
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
