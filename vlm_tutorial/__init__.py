"""vlm_tutorial: helpers for querying vision-language models through SGLang's offline Engine.

The public API is importable from the package root; each name lives in a small
module named for what it does (``families``, ``errors``, ``images``,
``prompts``, ``validation``, ``requests``, ``vision``, ``reference``,
``engines``, ``notebook``, ``report``, ``tiny``).
Submodules are imported on first use, so ``import vlm_tutorial`` stays cheap.

Example:
    >>> import vlm_tutorial
    >>> vlm_tutorial.get_family("qwen2_5_vl").real_model_id
    'Qwen/Qwen2.5-VL-3B-Instruct'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # errors
    "VLMTutorialError": "errors",
    "ImageLoadError": "errors",
    "ImageDecodeError": "errors",
    "UnsupportedImageSourceError": "errors",
    "RequestFormatError": "errors",
    "EmbeddingShapeError": "errors",
    "UnknownModelFamilyError": "errors",
    "VisionWeightsError": "errors",
    "EngineUnavailableError": "errors",
    # families
    "ModelFamily": "families",
    "FAMILIES": "families",
    "get_family": "families",
    "detect_family": "families",
    # images
    "load_image": "images",
    "example_image": "images",
    "save_example_image": "images",
    "image_to_base64": "images",
    "image_to_data_url": "images",
    "serve_images": "images",
    # prompts
    "build_prompt": "prompts",
    # requests
    "raw_request": "requests",
    "processor_output_request": "requests",
    "precomputed_embedding_request": "requests",
    # validation
    "validate_image_data": "validation",
    # vision
    "load_vision_encoder": "vision",
    "VisionEncoder": "vision",
    # engines
    "open_engine": "engines",
    "merge_engine_args": "engines",
    "machine_engine_args": "engines",
    # the CPU reference engine
    "ReferenceEngine": "reference",
    # tiny models
    "build_tiny_model": "tiny",
    "tiny_model_path": "tiny",
    # notebook settings
    "resolve_model_path": "notebook",
    "notebook_settings": "notebook",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vlm_tutorial' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
