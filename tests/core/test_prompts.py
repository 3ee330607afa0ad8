"""build_prompt renders the checkpoint's own chat template with image placeholders."""

from __future__ import annotations

import pytest

from vlm_tutorial.prompts import build_messages, build_prompt, sglang_template_prompt

QWEN_EXPECTED = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "What's shown here: <|vision_start|><|image_pad|><|vision_end|>?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
LLAMA_EXPECTED = (
    "<|begin_of_text|><|header_start|>user<|header_end|>\n\nWhat's shown here: <|image|>?"
    "<|eot|><|header_start|>assistant<|header_end|>\n\n"
)


def test_qwen_prompt_matches_the_original_docs(processors):
    assert build_prompt(processors["qwen2_5_vl"], "What's shown here: <image>?") == QWEN_EXPECTED


def test_llama4_prompt_matches_the_original_docs(processors):
    assert build_prompt(processors["llama4"], "What's shown here: <image>?") == LLAMA_EXPECTED


@pytest.mark.parametrize(
    ("family", "token"),
    [("qwen2_5_vl", "<|vision_start|><|image_pad|><|vision_end|>"), ("llama4", "<|image|>")],
)
def test_images_without_markers_come_first(processors, family, token):
    prompt = build_prompt(processors[family], "Compare them.", num_images=2)
    assert prompt.count(token) == 2
    assert prompt.index(token) < prompt.index("Compare them.")


def test_zero_images_gives_a_text_only_prompt(processors):
    prompt = build_prompt(processors["qwen2_5_vl"], "Hello", num_images=0)
    assert "<|vision_start|>" not in prompt and "Hello" in prompt


def test_marker_count_must_match_num_images():
    with pytest.raises(ValueError, match="2 <image> marker.*num_images=1"):
        build_messages("<image> and <image>", num_images=1)
    assert len(build_messages("<image> and <image>", num_images=2)[0]["content"]) == 3


def test_bad_arguments():
    with pytest.raises(TypeError, match="question must be a str"):
        build_messages(["hi"])
    with pytest.raises(ValueError, match="num_images must be an int >= 0"):
        build_messages("hi", num_images=-1)
    with pytest.raises(TypeError, match="expected a transformers processor"):
        build_prompt("not a processor", "hi")


def test_sglang_template_is_none_without_sglang():
    pytest.importorskip("torch")
    try:
        import sglang  # noqa: F401
    except ImportError:
        assert sglang_template_prompt("qwen2_5_vl", "What's shown here: <image>?") is None
    else:  # pragma: no cover - GPU machines
        assert sglang_template_prompt("qwen2_5_vl", "What's shown here: <image>?") == QWEN_EXPECTED
