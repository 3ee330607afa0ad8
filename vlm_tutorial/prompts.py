"""Chat prompts with image placeholders, rendered by the processor's own chat template.

The prompt text is where the model expects its images: Qwen2.5-VL writes
``<|vision_start|><|image_pad|><|vision_end|>`` for one image, Llama 4 writes
``<|image|>``. :func:`build_prompt` never writes these by hand; it asks the
checkpoint's chat template, so the prompt is the one the model was trained on.

Example:
    >>> from transformers import AutoProcessor                    # doctest: +SKIP
    >>> processor = AutoProcessor.from_pretrained(path)           # doctest: +SKIP
    >>> build_prompt(processor, "What's shown here: <image>?")    # doctest: +SKIP
    "<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\nWhat's shown here: <|vision_start|><|image_pad|><|vision_end|>?<|im_end|>\\n<|im_start|>assistant\\n"
"""

from __future__ import annotations

from typing import Any

#: Write this marker in a question to place an image at that spot.
IMAGE_MARKER = "<image>"


def build_messages(question: str, num_images: int = 1) -> list[dict[str, Any]]:
    """The one-turn chat ``messages`` list for ``question`` with ``num_images`` images.

    Each :data:`IMAGE_MARKER` in ``question`` becomes an image at that spot;
    without markers the images come first, then the question (the layout the
    models' own examples use).

    Example:
        >>> build_messages("What's shown here: <image>?")[0]["content"]
        [{'type': 'text', 'text': "What's shown here: "}, {'type': 'image'}, {'type': 'text', 'text': '?'}]
    """
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}")
    if not isinstance(num_images, int) or num_images < 0:
        raise ValueError(f"num_images must be an int >= 0, got {num_images!r}")
    parts = question.split(IMAGE_MARKER)
    markers = len(parts) - 1
    if markers and markers != num_images:
        raise ValueError(
            f"the question has {markers} {IMAGE_MARKER} marker(s) but num_images={num_images}; "
            f"write one {IMAGE_MARKER} per image, or none to put the images first"
        )
    content: list[dict[str, Any]] = []
    if markers == 0:
        content.extend({"type": "image"} for _ in range(num_images))
        content.append({"type": "text", "text": question})
    else:
        for i, text in enumerate(parts):
            if text:
                content.append({"type": "text", "text": text})
            if i < markers:
                content.append({"type": "image"})
    return [{"role": "user", "content": content}]


def build_prompt(processor: Any, question: str, num_images: int = 1) -> str:
    """The chat prompt for ``question`` with ``num_images`` image placeholders.

    Rendered by ``processor.apply_chat_template`` (the checkpoint's own
    template) with the assistant turn opened, ready for ``Engine.generate``.
    Place images with :data:`IMAGE_MARKER` (``"<image>"``) in ``question``.

    Example:
        >>> prompt = build_prompt(processor, "Describe <image> in one line.")  # doctest: +SKIP
    """
    if not hasattr(processor, "apply_chat_template"):
        raise TypeError(
            f"expected a transformers processor (AutoProcessor.from_pretrained(...)), "
            f"got {type(processor).__name__}"
        )
    messages = build_messages(question, num_images)
    if getattr(processor, "chat_template", None) is None:
        raise ValueError(
            f"{type(processor).__name__} has no chat template; load the processor from a "
            "checkpoint that ships chat_template.jinja or chat_template.json"
        )
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def sglang_template_prompt(family: str, question: str) -> str | None:
    """The same question rendered by SGLang's own conversation template, or None without sglang.

    This is how the original SGLang docs built prompts
    (``sglang.srt.parser.conversation.chat_templates[...]``); the notebooks
    print it next to :func:`build_prompt`'s to show that both agree.
    SGLang's Llama 4 template leaves out ``<|begin_of_text|>``, which its
    tokenizer adds.

    Example:
        >>> sglang_template_prompt("qwen2_5_vl", "What's shown here: <image>?")  # doctest: +SKIP
    """
    from .families import get_family

    template_name = get_family(family).sglang_chat_template
    try:
        from sglang.srt.parser.conversation import chat_templates
    except ImportError:
        return None
    conv = chat_templates[template_name].copy()
    conv.append_message(conv.roles[0], question.replace(IMAGE_MARKER, conv.image_token))
    conv.append_message(conv.roles[1], "")
    return conv.get_prompt()


__all__ = ["IMAGE_MARKER", "build_messages", "build_prompt", "sglang_template_prompt"]
