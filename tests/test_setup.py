"""Notebook settings: parameters, environment overrides, the tiny fallback, engine lifecycle."""

from __future__ import annotations

import pytest

from vlm_tutorial import setup
from vlm_tutorial.setup import notebook_settings, resolve_model_path


def test_defaults_pick_the_tiny_model_on_the_reference_engine(capsys, tiny_paths):
    s = notebook_settings("qwen2_5_vl", env={})
    assert s.backend == "transformers"
    assert s.is_tiny and s.model_path == tiny_paths["qwen2_5_vl"]
    out = capsys.readouterr().out
    assert out.startswith("Engine: transformers reference engine")
    assert "Model: tiny random-weight qwen2_5_vl" in out
    assert s.formats_must_agree


def test_environment_overrides_parameters(tiny_paths):
    env = {
        "VLM_TUTORIAL_MODEL_PATH": tiny_paths["llama4"],
        "VLM_TUTORIAL_BACKEND": "transformers",
        "VLM_TUTORIAL_MAX_NEW_TOKENS": "5",
        "VLM_TUTORIAL_IMAGE": "/tmp/x.png",
    }
    s = notebook_settings("llama4", model_path="elsewhere", backend="auto", max_new_tokens=16,
                          env=env, announce=False)
    assert (s.model_path, s.backend, s.max_new_tokens, s.image) == (
        tiny_paths["llama4"], "transformers", 5, "/tmp/x.png")
    assert s.is_tiny


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


def test_start_and_stop_engine_shut_down_once(monkeypatch):
    calls = []

    class Recorder:
        def shutdown(self):
            calls.append("shutdown")

    def fake_open_engine(model_path, backend, **kwargs):
        import contextlib

        @contextlib.contextmanager
        def cm():
            engine = Recorder()
            try:
                yield engine
            finally:
                engine.shutdown()

        return cm()

    monkeypatch.setattr("vlm_tutorial.engines.open_engine", fake_open_engine)
    s = notebook_settings("qwen2_5_vl", backend="transformers", env={}, announce=False)
    engine = setup.start_engine(s)
    assert isinstance(engine, Recorder) and calls == []
    setup.stop_engine()
    setup.stop_engine()
    assert calls == ["shutdown"]
