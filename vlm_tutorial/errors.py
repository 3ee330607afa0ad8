"""Exceptions raised by :mod:`vlm_tutorial`.

Every class subclasses a built-in exception, so callers can catch them the
usual way: ``ValueError`` for a bad value, ``TypeError`` for an unsupported
kind of input, ``OSError`` for I/O and network failures. Each message names
what was wrong and how to fix it.

Example:
    >>> from vlm_tutorial.errors import ImageLoadError
    >>> issubclass(ImageLoadError, OSError)
    True
"""

from __future__ import annotations


class VLMTutorialError(Exception):
    """Base class of every exception this package raises on purpose."""


class ImageLoadError(VLMTutorialError, OSError):
    """An image could not be read: missing file, unreachable URL, bad HTTP status, too large.

    Fix: check the path or URL; for URLs on an offline machine, download the
    file first and pass its path.
    """


class ImageDecodeError(VLMTutorialError, ValueError):
    """Bytes were read but are not a decodable image (corrupt, truncated, junk base64, not an image).

    Fix: pass a PNG/JPEG/WebP file, its raw bytes, or its base64 text.
    """


class UnsupportedImageSourceError(VLMTutorialError, TypeError):
    """The image source is of a kind the loader does not accept.

    Fix: pass a ``PIL.Image.Image``, a path, an ``http(s)://`` URL, raw bytes,
    a base64 string or a ``data:image/...;base64,`` URL.
    """


class RequestFormatError(VLMTutorialError, ValueError):
    """An ``Engine.generate`` request breaks a rule of SGLang's image input formats.

    Examples: mixed formats in one ``image_data`` list, more than one
    preprocessed dict, a preprocessed dict sent with ``prompt`` instead of
    ``input_ids``, a Qwen2.5-VL embedding without ``image_grid_thw``.
    """


class EmbeddingShapeError(RequestFormatError):
    """A precomputed embedding does not fit the request.

    Its rows must equal the number of image placeholder tokens in
    ``input_ids`` and its width must equal the language model's hidden size.
    """


class UnknownModelFamilyError(VLMTutorialError, ValueError):
    """A checkpoint or name is not one of the supported families (``qwen2_5_vl``, ``llama4``)."""


class VisionWeightsError(VLMTutorialError, ValueError):
    """A checkpoint's vision weights are missing, incomplete or unexpected.

    Raised instead of silently building a vision tower with random weights.
    """


class EngineUnavailableError(VLMTutorialError, ValueError):
    """The requested ``backend`` cannot run here (no sglang, or no GPU).

    Fix: install ``vlm-tutorial[gpu]`` on a CUDA machine, or use
    ``backend="transformers"`` (the CPU reference engine).
    """


__all__ = [
    "VLMTutorialError",
    "ImageLoadError",
    "ImageDecodeError",
    "UnsupportedImageSourceError",
    "RequestFormatError",
    "EmbeddingShapeError",
    "UnknownModelFamilyError",
    "VisionWeightsError",
    "EngineUnavailableError",
]
