"""Tiny checkpoints of Qwen2.5-VL and Llama 4, built offline, that name what toy pictures show.

Each checkpoint has the real model class, processor classes with the real
preprocessing settings, chat template and special-token ids, with a handful
of small layers. The ``tiny`` preset is trained to answer "What's shown
here: <image>?" about the pictures of :mod:`vlm_tutorial.offline.toys`, e.g.
"a red circle and a blue square"; the package ships its trained weights, so
:func:`tiny_model_path` has it ready in seconds. The other presets keep
random weights. Use them to run the notebooks and tests without a model hub.

Example:
    >>> from vlm_tutorial.offline.tiny import PRESETS, tiny_model_path
    >>> sorted(PRESETS["qwen2_5_vl"])
    ['text-heavy', 'tiny']
    >>> path = tiny_model_path("llama4")  # doctest: +SKIP
"""

from __future__ import annotations

from .builder import (
    build_tiny_model,
    cache_root,
    chat_template,
    materialise,
    parameter_counts,
    tiny_model_path,
    write_shipped,
)
from .presets import PRESETS

__all__ = [
    "PRESETS",
    "build_tiny_model",
    "cache_root",
    "chat_template",
    "materialise",
    "parameter_counts",
    "tiny_model_path",
    "write_shipped",
]
