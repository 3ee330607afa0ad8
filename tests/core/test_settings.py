"""Notebook settings and engine arguments: one precedence each, refusals before anything loads."""

from __future__ import annotations

import pytest

from vlm_tutorial import get_family
from vlm_tutorial.errors import EngineUnavailableError, NotebookParameterError
from vlm_tutorial.settings import (
    ENGINE_ARGS_VAR,
    check_backend,
    machine_engine_args,
    merge_engine_args,
    notebook_settings,
    sglang_unavailable_reason,
)

QWEN_ID = "Qwen/Qwen2.5-VL-3B-Instruct"
LLAMA4_ID = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
NO_SGLANG = pytest.mark.skipif(
    sglang_unavailable_reason() is None, reason="sglang and a GPU are present here"
)


# --------------------------------------------------------------------------- notebook settings


@NO_SGLANG
def test_defaults_pick_the_tiny_model_on_the_reference_engine(capsys, tiny_paths):
    s = notebook_settings("qwen2_5_vl", env={})
    assert (s.backend, s.on_sglang, s.is_tiny, s.max_new_tokens) == (
        "transformers",
        False,
        True,
        16,
    )
    assert s.model_path == tiny_paths["qwen2_5_vl"]
    out = capsys.readouterr().out
    assert out.startswith("Engine: transformers reference engine")
    assert "not the real model" in out and tiny_paths["qwen2_5_vl"] not in out  # no machine path


def test_a_parameter_beats_the_environment_which_beats_the_default(tiny_paths):
    env = {"VLM_TUTORIAL_MODEL_PATH": tiny_paths["llama4"], "VLM_TUTORIAL_BACKEND": "transformers"}
    s = notebook_settings("llama4", env=env, announce=False)
    assert (s.model_path, s.backend) == (tiny_paths["llama4"], "transformers")
    env["VLM_TUTORIAL_MODEL_PATH"] = "/elsewhere"
    s = notebook_settings("llama4", model_path="tiny", env=env, announce=False)
    assert s.model_path == tiny_paths["llama4"] and s.is_tiny


def test_tp_size_is_the_registrys_for_the_real_model_and_one_otherwise(tiny_paths):
    assert get_family("llama4").engine_args_for(LLAMA4_ID)["tp_size"] == 4
    s = notebook_settings("llama4", backend="transformers", env={}, announce=False)
    assert s.tp_size == 1
    s = notebook_settings("llama4", backend="transformers", tp_size=2, env={}, announce=False)
    assert s.tp_size == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "vllm"}, "backend must be one of"),
        ({"max_new_tokens": 0}, "max_new_tokens must be a positive int"),
        ({"max_new_tokens": True}, "max_new_tokens must be a positive int"),
        ({"tp_size": "4"}, "tp_size must be a positive int"),
    ],
)
def test_bad_settings_are_refused_with_the_value(kwargs, message):
    with pytest.raises(NotebookParameterError, match=message):
        notebook_settings(
            "llama4", env={"VLM_TUTORIAL_BACKEND": "transformers"}, announce=False, **kwargs
        )


def test_a_notebook_without_an_engine_says_it_starts_none(capsys):
    s = notebook_settings("qwen2_5_vl", starts_engine=False, env={"VLM_TUTORIAL_BACKEND": "sglang"})
    out = capsys.readouterr().out
    assert not s.on_sglang and s.is_tiny
    assert out.startswith("Engine: none (this notebook only builds requests)\nModel: tiny ")


@NO_SGLANG
def test_sglang_is_refused_here_with_the_cpu_alternative():
    with pytest.raises(EngineUnavailableError, match='backend="transformers"'):
        check_backend("sglang")
    assert check_backend("auto") == "transformers"


# --------------------------------------------------------------------------- engine arguments


def test_caller_beats_machine_beats_the_tutorial():
    env = {ENGINE_ARGS_VAR: '{"tp_size": 2, "context_length": 4096, "disable_cuda_graph": true}'}
    args = merge_engine_args(LLAMA4_ID, {"context_length": 1024}, env=env)
    assert args["context_length"] == 1024  # the caller's, over the machine's
    assert args["tp_size"] == 2  # the machine's, over the tutorial's 4
    assert args["disable_cuda_graph"] is True  # the machine's only
    assert args["enable_multimodal"] is True  # the tutorial's only


def test_the_tutorials_values_come_from_the_family_registry(tiny_paths):
    for name, real_id in (("qwen2_5_vl", QWEN_ID), ("llama4", LLAMA4_ID)):
        registry = dict(get_family(name).engine_args)
        assert merge_engine_args(real_id, env={}) == registry
        tiny = merge_engine_args(tiny_paths[name], env={})
        assert tiny == {**registry, **({"tp_size": 1} if "tp_size" in registry else {})}
    # a memory fraction that starts the model on an 80 GB card and on a 141 GB one
    assert 0.5 < get_family("llama4").engine_args_for(LLAMA4_ID)["mem_fraction_static"] <= 0.85


def test_machine_args_default_to_os_environ(monkeypatch):
    monkeypatch.setenv(ENGINE_ARGS_VAR, '{"mem_fraction_static": 0.3}')
    assert merge_engine_args(QWEN_ID)["mem_fraction_static"] == 0.3
    monkeypatch.delenv(ENGINE_ARGS_VAR)
    assert machine_engine_args() == {}


@pytest.mark.parametrize("bad", ["{tp_size: 2}", "[1, 2]", '"triton"'])
def test_bad_machine_json_names_the_variable_and_shows_an_example(bad):
    with pytest.raises(ValueError, match=ENGINE_ARGS_VAR) as info:
        machine_engine_args({ENGINE_ARGS_VAR: bad})
    assert '"attention_backend": "triton"' in str(info.value) and bad in str(info.value)
