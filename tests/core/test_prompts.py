"""build_prompt renders the checkpoint's own chat template, with an image wherever <image> stands."""

from __future__ import annotations

import pytest

from vlm_tutorial.prompts import build_prompt, sglang_template_prompt

QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
QWEN_EXPECTED = (  # the prompt of SGLang's original docs for Qwen2.5-VL
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    f"What's shown here: {QWEN_IMAGE}?<|im_end|>\n<|im_start|>assistant\n"
)
LLAMA_EXPECTED = (  # and for Llama 4
    "<|begin_of_text|><|header_start|>user<|header_end|>\n\nWhat's shown here: <|image|>?"
    "<|eot|><|header_start|>assistant<|header_end|>\n\n"
)


def test_prompts_match_the_original_docs(processors):
    question = "What's shown here: <image>?"
    assert build_prompt(processors["qwen2_5_vl"], question) == QWEN_EXPECTED
    assert build_prompt(processors["llama4"], question) == LLAMA_EXPECTED


@pytest.mark.parametrize(("family", "token"), [("qwen2_5_vl", QWEN_IMAGE), ("llama4", "<|image|>")])
def test_markers_place_images_and_without_markers_images_come_first(processors, family, token):
    placed = build_prompt(processors[family], "<image> or <image>: which is red?", num_images=2)
    assert f"{token} or {token}: which is red?" in placed
    first = build_prompt(processors[family], "Compare them.", num_images=2)
    assert f"{token}{token}Compare them." in first


def test_zero_images_gives_a_text_only_prompt(processors):
    prompt = build_prompt(processors["qwen2_5_vl"], "Hello", num_images=0)
    assert "<|vision_start|>" not in prompt and "Hello" in prompt


def test_bad_arguments_are_named(processors):
    processor = processors["qwen2_5_vl"]
    with pytest.raises(ValueError, match="2 <image> marker.*num_images=1; write one <image>"):
        build_prompt(processor, "<image> and <image>", num_images=1)
    with pytest.raises(ValueError, match=r"need a str question.*\['hi'\]"):
        build_prompt(processor, ["hi"])
    with pytest.raises(ValueError, match="num_images=-1"):
        build_prompt(processor, "hi", num_images=-1)
    with pytest.raises(TypeError, match="chat template.*AutoProcessor.*got str"):
        build_prompt("not a processor", "hi")


def test_sglang_template_agrees_or_is_none_without_sglang():
    try:
        import sglang  # noqa: F401
    except ImportError:
        assert sglang_template_prompt("qwen2_5_vl", "What's shown here: <image>?") is None
    else:  # pragma: no cover - GPU machines
        assert sglang_template_prompt("qwen2_5_vl", "What's shown here: <image>?") == QWEN_EXPECTED
