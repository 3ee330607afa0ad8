"""The model-family registry and the recommended engine arguments."""

from __future__ import annotations

import json

import pytest

from vlm_tutorial.errors import UnknownModelFamilyError
from vlm_tutorial.families import (
    LLAMA4,
    QWEN2_5_VL,
    detect_family,
    family_from_model_type,
    get_family,
    recommended_engine_args,
)


def test_get_family():
    assert get_family("qwen2_5_vl") is QWEN2_5_VL
    with pytest.raises(UnknownModelFamilyError, match="supported: \\['llama4', 'qwen2_5_vl'\\]"):
        get_family("llava")


@pytest.mark.parametrize(
    ("source", "family"),
    [
        ("Qwen/Qwen2.5-VL-3B-Instruct", QWEN2_5_VL),
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", LLAMA4),
        ("llama4", LLAMA4),
    ],
)
def test_detect_family_from_names(source, family):
    assert detect_family(source) is family


def test_detect_family_from_checkpoints_and_processors(tiny_paths, processors):
    assert detect_family(tiny_paths["qwen2_5_vl"]) is QWEN2_5_VL
    assert detect_family(tiny_paths["llama4"]) is LLAMA4
    assert detect_family(processors["llama4"]) is LLAMA4
    assert detect_family(processors["qwen2_5_vl"]) is QWEN2_5_VL


def test_detect_family_rejects_other_models(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(UnknownModelFamilyError, match="'llava' is not supported"):
        detect_family(tmp_path)
    with pytest.raises(UnknownModelFamilyError, match="neither a folder with a config.json"):
        detect_family(tmp_path / "missing")
    with pytest.raises(UnknownModelFamilyError, match="cannot tell the model family of a int"):
        detect_family(3)
    assert family_from_model_type("qwen2_5_vl") is QWEN2_5_VL


def test_real_llama4_gets_tensor_parallel_and_a_tiny_one_does_not(tiny_paths):
    real = recommended_engine_args(LLAMA4.real_model_id)
    assert real["tp_size"] == 4 and real["enable_multimodal"] is True
    assert "context_length" in real
    tiny = recommended_engine_args(tiny_paths["llama4"])
    assert tiny == {"enable_multimodal": True}
    assert recommended_engine_args(tiny_paths["qwen2_5_vl"]) == {}


def test_embedding_tokens_match_the_tiny_checkpoints(processors):
    for name, proc in processors.items():
        family = get_family(name)
        assert proc.tokenizer.convert_tokens_to_ids(family.embedding_token) == family.embedding_token_id
        assert type(proc).__name__ == family.processor_class
