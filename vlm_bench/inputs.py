"""What the benchmark sends: image files of given sizes, and token ids built to a length.

* :func:`image_file`: a PNG of the example picture at a size, one per
  ``variant`` (the variants differ in their pixels, so no cache can match
  one with another).
* :func:`text_only_ids`: a text-only chat prompt padded with a filler token to
  exactly ``target_len`` ids, to compare an image request with a text request
  of the same length.
* :func:`question_ids_with_image`: the ids of another question about an image
  whose ids are known, without running the image processor again (for reusing
  a precomputed embedding).

Example:
    >>> bench_image(448).size
    (448, 448)
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vlm_tutorial.families import ModelFamily
from vlm_tutorial.images import example_image
from vlm_tutorial.prompts import build_prompt

#: Stands for the question while a prompt is split around it.
_MARK = "\u00a7QUESTION\u00a7"

#: The filler text: one token in the byte-level vocabularies of both families,
#: and it decodes and re-encodes to the same ids on the tiny tokenizers.
FILLER_TEXT = "a"


def _bench_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"vlm-bench-images-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def bench_image(side: int, variant: int = 0) -> Any:
    """The example picture at ``side`` x ``side`` px, shifted by ``variant`` (a PIL image).

    Example:
        >>> bench_image(64, 1).size
        (64, 64)
    """
    image = example_image(size=(side, side))
    if variant:
        pixels = np.asarray(image)
        shift = (variant * 7) % side or 1
        pixels = np.roll(pixels, shift, axis=1).copy()
        pixels[0, 0] = (variant % 256, (variant // 256) % 256, 7)
        from PIL import Image

        image = Image.fromarray(pixels)
    return image


@lru_cache(maxsize=512)
def image_file(side: int, variant: int = 0, folder: str | None = None) -> str:
    """Absolute path of a PNG of :func:`bench_image` (written once, then reused).

    Example:
        >>> image_file(64).endswith("side64-v0.png")
        True
    """
    base = Path(folder) if folder else _bench_dir()
    path = base / f"side{side}-v{variant}.png"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp.png")
        bench_image(side, variant).save(tmp)
        os.replace(tmp, path)
    return str(path.resolve())


def _tokenizer(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def encode(processor: Any, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added (chat templates write their own).

    Example:
        >>> encode(processor, "a")  # doctest: +SKIP
        [97]
    """
    return list(_tokenizer(processor)(text, add_special_tokens=False)["input_ids"])


def filler_id(processor: Any, text: str = FILLER_TEXT) -> int:
    """The id of the one-token ``text`` used to pad prompts.

    Example:
        >>> filler_id(processor)  # doctest: +SKIP
        97
    """
    ids = encode(processor, text)
    if len(ids) != 1:
        raise ValueError(f"filler text {text!r} is {len(ids)} tokens {ids}; pick a one-token text")
    return ids[0]


def text_only_ids(processor: Any, target_len: int, filler: int | None = None) -> list[int]:
    """A text-only chat prompt of exactly ``target_len`` token ids.

    The checkpoint's chat template is rendered with no image and an empty
    question; the question's place is filled with ``filler`` (default: the id
    of ``"a"``) until the prompt has ``target_len`` ids. SGLang takes the ids as
    they are, so the engine sees a prompt of exactly that length.

    Raises:
        ValueError: ``target_len`` is shorter than the bare template.

    Example:
        >>> ids = text_only_ids(processor, 300)  # doctest: +SKIP
        >>> len(ids)                              # doctest: +SKIP
        300
    """
    before, after = build_prompt(processor, _MARK, num_images=0).split(_MARK)
    head, tail = encode(processor, before), encode(processor, after)
    pad = target_len - len(head) - len(tail)
    if pad < 0:
        raise ValueError(
            f"target_len={target_len} is shorter than the empty chat prompt "
            f"({len(head) + len(tail)} tokens); ask for at least {len(head) + len(tail)}"
        )
    fill = filler_id(processor) if filler is None else int(filler)
    return head + [fill] * pad + tail


def _split_at_image(prompt: str, family: ModelFamily) -> tuple[str, str]:
    parts = prompt.split(family.prompt_image_token)
    if len(parts) != 2:
        raise ValueError(
            f"expected exactly one {family.prompt_image_token!r} in the prompt, found "
            f"{len(parts) - 1}; build it with build_prompt(processor, question, num_images=1)"
        )
    return parts[0], parts[1]


def question_ids_with_image(
    processor: Any,
    family: ModelFamily,
    base_prompt: str,
    base_ids: list[int],
    question: str,
) -> list[int]:
    """Token ids for ``question`` about the image whose prompt and ids are ``base_*``.

    The image's expanded tokens (for example 256 ``<|image_pad|>``) are copied
    from ``base_ids``; only the text around them is tokenized. The result
    equals what the processor returns for the new prompt and the same image,
    without preprocessing the image again. Special tokens separate the image
    region from the text, so the parts tokenize as in the whole prompt.

    Example:
        >>> ids = question_ids_with_image(processor, QWEN2_5_VL, prompt, ids0, "Colours?")  # doctest: +SKIP
    """
    before, after = _split_at_image(base_prompt, family)
    n_before, n_after = len(encode(processor, before)), len(encode(processor, after))
    region = list(base_ids[n_before : len(base_ids) - n_after])
    new_prompt = build_prompt(processor, question, num_images=1)
    new_before, new_after = _split_at_image(new_prompt, family)
    return encode(processor, new_before) + region + encode(processor, new_after)


__all__ = [
    "FILLER_TEXT",
    "bench_image",
    "encode",
    "filler_id",
    "image_file",
    "question_ids_with_image",
    "text_only_ids",
]
