"""Notebook settings: one precedence (parameter > VLM_TUTORIAL_* > default) and the tiny fallback."""

from __future__ import annotations

import pytest

from vlm_tutorial.settings import DEFAULTS, notebook_settings, resolve_model_path, resolve_setting


def test_defaults_pick_the_tiny_model_on_the_reference_engine(capsys, tiny_paths):
    s = notebook_settings("qwen2_5_vl", env={})
    assert s.backend == "transformers" and s.max_new_tokens == DEFAULTS["max_new_tokens"]
    assert s.is_tiny and s.model_path == tiny_paths["qwen2_5_vl"]
    out = capsys.readouterr().out
    assert out.startswith("Engine: transformers reference engine")
    assert "not the real model" in out


def test_a_parameter_beats_the_environment_which_beats_the_default(tiny_paths):
    env = {
        "VLM_TUTORIAL_MODEL_PATH": tiny_paths["llama4"],
        "VLM_TUTORIAL_BACKEND": "transformers",
        "VLM_TUTORIAL_MAX_NEW_TOKENS": "5",
        "VLM_TUTORIAL_IMAGE": "/tmp/x.png",
    }
    # Parameters left at None: the environment decides.
    s = notebook_settings("llama4", env=env, announce=False)
    assert (s.model_path, s.backend, s.max_new_tokens, s.image) == (
        tiny_paths["llama4"], "transformers", 5, "/tmp/x.png")
    # Any parameter that is not None wins over its variable.
    env["VLM_TUTORIAL_MODEL_PATH"] = "/elsewhere"
    s = notebook_settings("llama4", model_path="tiny", max_new_tokens=3, image="/tmp/y.png",
                          env=env, announce=False)
    assert (s.model_path, s.max_new_tokens, s.image) == (tiny_paths["llama4"], 3, "/tmp/y.png")
    # Neither: the tutorial's default.
    assert notebook_settings("llama4", env={}, announce=False).max_new_tokens == 16


def test_resolve_setting_order():
    env = {"VLM_TUTORIAL_IMAGE": "from-env"}
    assert resolve_setting("image", "param", env, "default") == "param"
    assert resolve_setting("image", None, env, "default") == "from-env"
    assert resolve_setting("image", None, {}, "default") == "default"
    assert resolve_setting("image", None, {"VLM_TUTORIAL_IMAGE": ""}, "default") == "default"


def test_real_model_id_on_sglang_and_tiny_keyword():
    assert resolve_model_path("qwen2_5_vl", None, "sglang") == ("Qwen/Qwen2.5-VL-3B-Instruct", False)
    path, tiny = resolve_model_path("qwen2_5_vl", "tiny", "sglang")
    assert tiny and path.endswith(tuple("0123456789abcdef"))


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="MAX_NEW_TOKENS must be an integer"):
        notebook_settings("llama4", env={"VLM_TUTORIAL_MAX_NEW_TOKENS": "many"}, announce=False)
    with pytest.raises(ValueError, match="backend must be one of"):
        notebook_settings("llama4", backend="vllm", env={}, announce=False)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int"):
        notebook_settings("llama4", max_new_tokens=0, env={}, announce=False)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int"):
        notebook_settings("llama4", max_new_tokens=True, env={}, announce=False)


def test_a_notebook_without_an_engine_says_it_starts_none(capsys):
    s = notebook_settings("qwen2_5_vl", starts_engine=False,
                          env={"VLM_TUTORIAL_BACKEND": "sglang"})
    out = capsys.readouterr().out
    assert not s.on_sglang and s.is_tiny
    assert "SGLang" not in out
    assert out.startswith("Engine: none (this notebook only builds requests)\nModel: tiny ")
