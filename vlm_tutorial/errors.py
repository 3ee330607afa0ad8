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
    """An ``Engine.generate`` request is malformed; the message names the field.

    Examples: mixed formats in one ``image_data`` list, more than one
    preprocessed dict, a preprocessed dict sent with ``prompt`` instead of
    ``input_ids``, a Qwen2.5-VL embedding without ``image_grid_thw``, a
    token id that is no int or outside the vocabulary, a sampling parameter
    of the wrong type or range, batch lists of different lengths, or a
    sampling key or ``generate`` keyword the reference engine does not
    implement.
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


class ImageTooLargeError(ImageLoadError):
    """An image is over a size limit: more encoded bytes than ``max_bytes``, or more pixels than ``max_pixels``.

    The pixel limit is checked from the image's header, before any pixel is
    decoded; it defaults to PIL's default ``Image.MAX_IMAGE_PIXELS``
    (89,478,485 pixels). Fix: shrink the image first, or raise the limit
    with ``load_image(..., max_bytes=N)``, ``load_image(..., max_pixels=N)``
    or the environment variable ``VLM_TUTORIAL_MAX_IMAGE_PIXELS=N``.
    """


class CheckpointFileError(VLMTutorialError, ValueError):
    """A checkpoint file is corrupt or points outside its folder.

    Examples: ``config.json`` or ``model.safetensors.index.json`` is not
    valid JSON, a safetensors header does not parse, or the index names a
    shard outside the checkpoint folder (``..``, an absolute path, a link
    leading elsewhere). Fix: re-download the named file, or re-save the
    checkpoint with ``save_pretrained``; shards must be files inside the
    checkpoint folder.
    """


class ProcessorOutputError(VLMTutorialError, ValueError):
    """A processor output does not fit the vision encoder it was given.

    Examples: no ``pixel_values``, a Qwen2.5-VL output without
    ``image_grid_thw``, or pixels shaped for the other model family. Fix:
    make it with the processor of the encoder's checkpoint
    (``AutoProcessor.from_pretrained(same_path)``) and pass its whole output.
    """


class CheckpointNotFoundError(VLMTutorialError, FileNotFoundError):
    """``model_path`` names neither an existing checkpoint folder nor a hub id that can be loaded.

    Fix: check the path (a relative path is read from the current
    directory), pass ``tiny`` for a tiny offline model, or a hub id such as
    ``Qwen/Qwen2.5-VL-3B-Instruct`` (offline, it must be in the hub cache).
    """


class NotebookNotFoundError(VLMTutorialError, FileNotFoundError):
    """A notebook named on the ``run_notebooks`` command line does not exist.

    Fix: name one of the notebooks the message lists, by path or by short
    name (``llama4`` for ``notebooks/llama4.ipynb``).
    """


class NotebookParameterError(VLMTutorialError, ValueError):
    """A ``-p NAME VALUE`` given to ``run_notebooks`` that the notebooks cannot take.

    The name is defined in no selected notebook's ``parameters`` cell, or the
    value is not one the parameter accepts. Fix: use a name and a value the
    message lists.
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
    "ImageTooLargeError",
    "CheckpointFileError",
    "ProcessorOutputError",
    "CheckpointNotFoundError",
    "NotebookNotFoundError",
    "NotebookParameterError",
]
