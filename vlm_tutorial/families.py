"""The supported model families, and how to recognise a checkpoint's family.

A *family* is an architecture (``qwen2_5_vl``, ``llama4``): what the prompt
looks like, which token stands for an image, which extra tensors a
precomputed embedding needs. Recommended ``sglang.Engine`` arguments belong to
a *real model id* instead (:data:`RECOMMENDED_ENGINE_ARGS`), so that a tiny
Llama 4 never inherits the ``tp_size=4`` that Llama 4 Scout needs.

Example:
    >>> from vlm_tutorial.families import get_family
    >>> get_family("llama4").real_model_id
    'meta-llama/Llama-4-Scout-17B-16E-Instruct'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UnknownModelFamilyError


@dataclass(frozen=True)
class ModelFamily:
    """What the helpers need to know about one architecture.

    Attributes:
        name: the family key used throughout the package.
        model_type: ``config.json``'s ``model_type`` for this family.
        real_model_id: the Hugging Face id the notebooks use on a GPU.
        sglang_chat_template: the name of SGLang's conversation template.
        prompt_image_token: what the chat template writes for one image.
        embedding_token: the token repeated once per embedding row in
            ``input_ids`` after the processor expands the image.
        embedding_token_id: its id in the real vocabulary (tiny models keep it).
        processor_class: the transformers processor class name.
        embedding_extra_keys: keys a lean precomputed-embedding dict carries
            beside ``feature``.
        required_engine_args: engine arguments the family needs at every
            size (not recommendations): without them the image is ignored.
    """

    name: str
    model_type: str
    real_model_id: str
    sglang_chat_template: str
    prompt_image_token: str
    embedding_token: str
    embedding_token_id: int
    processor_class: str
    embedding_extra_keys: tuple[str, ...] = ()
    required_engine_args: dict[str, Any] = field(default_factory=dict)


QWEN2_5_VL = ModelFamily(
    name="qwen2_5_vl",
    model_type="qwen2_5_vl",
    real_model_id="Qwen/Qwen2.5-VL-3B-Instruct",
    sglang_chat_template="qwen2-vl",
    prompt_image_token="<|vision_start|><|image_pad|><|vision_end|>",
    embedding_token="<|image_pad|>",
    embedding_token_id=151655,
    processor_class="Qwen2_5_VLProcessor",
    embedding_extra_keys=("image_grid_thw",),
)

LLAMA4 = ModelFamily(
    name="llama4",
    model_type="llama4",
    real_model_id="meta-llama/Llama-4-Scout-17B-16E-Instruct",
    sglang_chat_template="llama-4",
    prompt_image_token="<|image|>",
    embedding_token="<|patch|>",
    embedding_token_id=200092,
    processor_class="Llama4Processor",
    # SGLang 0.5.17 turns multimodal off for llama4 unless asked: the image
    # would be silently ignored.
    required_engine_args={"enable_multimodal": True},
)

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (QWEN2_5_VL, LLAMA4)}

#: Engine arguments recommended for the real checkpoints, by model id.
RECOMMENDED_ENGINE_ARGS: dict[str, dict[str, Any]] = {
    QWEN2_5_VL.real_model_id: {},
    LLAMA4.real_model_id: {
        # 109 B parameters in bf16 (~204 GiB) need four 80 GB GPUs.
        "tp_size": 4,
        # The 10M-token native context would reserve far more KV cache than
        # a tutorial needs.
        "context_length": 65536,
        "enable_multimodal": True,
    },
}


def get_family(name: str) -> ModelFamily:
    """Return the family called ``name`` (``"qwen2_5_vl"`` or ``"llama4"``).

    Example:
        >>> get_family("qwen2_5_vl").embedding_token
        '<|image_pad|>'
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownModelFamilyError(
            f"unknown model family {name!r}; supported: {sorted(FAMILIES)}"
        ) from None


def family_from_model_type(model_type: str) -> ModelFamily:
    """Map a ``config.json`` ``model_type`` to its family.

    Example:
        >>> family_from_model_type("llama4").name
        'llama4'
    """
    for family in FAMILIES.values():
        if family.model_type == model_type:
            return family
    raise UnknownModelFamilyError(
        f"model_type {model_type!r} is not supported; this tutorial covers "
        f"{sorted(f.model_type for f in FAMILIES.values())}"
    )


def detect_family(model: str | os.PathLike | Any) -> ModelFamily:
    """Return the family of a checkpoint folder, a real model id, a config or a processor.

    ``model`` may be a local folder holding ``config.json``, one of the real
    model ids in :data:`RECOMMENDED_ENGINE_ARGS`, a family name, an object
    with a ``model_type`` attribute (a transformers config), or a processor
    (``Qwen2_5_VLProcessor``, ``Llama4Processor``).

    Example:
        >>> detect_family("Qwen/Qwen2.5-VL-3B-Instruct").name
        'qwen2_5_vl'
    """
    model_type = getattr(model, "model_type", None)
    if isinstance(model_type, str):
        return family_from_model_type(model_type)
    for family in FAMILIES.values():
        if type(model).__name__ == family.processor_class:
            return family
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if text in FAMILIES:
            return FAMILIES[text]
        for family in FAMILIES.values():
            if text == family.real_model_id:
                return family
        config_path = Path(text) / "config.json"
        if config_path.is_file():
            config = json.loads(config_path.read_text())
            return family_from_model_type(config.get("model_type", ""))
        raise UnknownModelFamilyError(
            f"cannot tell the model family of {text!r}: it is neither a folder with a "
            f"config.json nor one of {sorted(RECOMMENDED_ENGINE_ARGS)}"
        )
    raise UnknownModelFamilyError(
        f"cannot tell the model family of a {type(model).__name__}; pass a checkpoint "
        "folder, a model id, or a transformers config"
    )


def recommended_engine_args(model_path: str | os.PathLike) -> dict[str, Any]:
    """Engine arguments for ``model_path``: the family's required ones plus, for a real id, its recommendations.

    Example:
        >>> recommended_engine_args("meta-llama/Llama-4-Scout-17B-16E-Instruct")["tp_size"]
        4
    """
    args: dict[str, Any] = dict(detect_family(model_path).required_engine_args)
    args.update(RECOMMENDED_ENGINE_ARGS.get(os.fspath(model_path), {}))
    return args


__all__ = [
    "ModelFamily",
    "FAMILIES",
    "QWEN2_5_VL",
    "LLAMA4",
    "RECOMMENDED_ENGINE_ARGS",
    "get_family",
    "family_from_model_type",
    "detect_family",
    "recommended_engine_args",
]
