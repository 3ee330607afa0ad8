"""Chat prompts with image placeholders, written by the checkpoint's own chat template."""

from typing import Any

from .families import get_family


def build_prompt(processor: Any, question: str, num_images: int = 1) -> str:
    """The chat prompt for ``question``; each ``<image>`` places an image, else they come first.

    >>> build_prompt(processor, "What's shown here: <image>?")  # doctest: +SKIP
    '<|im_start|>system\\n...What's shown here: <|vision_start|><|image_pad|><|vision_end|>?...'
    """
    if getattr(processor, "chat_template", None) is None:
        raise TypeError(
            f"expected a processor with a chat template (AutoProcessor.from_pretrained(path)), "
            f"got {type(processor).__name__}"
        )
    if not isinstance(question, str) or not isinstance(num_images, int) or num_images < 0:
        raise ValueError(f"need a str question and num_images >= 0, got {question!r} {num_images=}")
    markers = question.count("<image>")
    if markers and markers != num_images:
        raise ValueError(
            f"the question has {markers} <image> marker(s) but num_images={num_images}; "
            "write one <image> per image, or none to put the images first"
        )
    content: list[dict[str, str]] = []
    texts = question.split("<image>") if markers else [""] * num_images + [question]
    for i, text in enumerate(texts):  # an image between each two texts
        if i:
            content.append({"type": "image"})
        if text:
            content.append({"type": "text", "text": text})
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def sglang_template_prompt(family: str, question: str) -> str | None:
    """The same question in SGLang's own conversation template; ``None`` without sglang."""
    name = get_family(family).sglang_chat_template
    try:
        from sglang.srt.parser.conversation import chat_templates
    except ImportError:
        return None
    conversation = chat_templates[name].copy()
    conversation.append_message(
        conversation.roles[0], question.replace("<image>", conversation.image_token)
    )
    conversation.append_message(conversation.roles[1], "")
    return conversation.get_prompt()
