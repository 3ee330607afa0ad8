"""The exceptions of :mod:`vlm_tutorial`; each message names the bad value and the fix.

Each class also subclasses the built-in exception callers would catch: ``ValueError``,
``TypeError`` (an unsupported kind of input) or ``OSError`` (files and downloads).
"""


class VLMTutorialError(Exception):
    """Base class of every exception this package raises on purpose."""


class ImageLoadError(VLMTutorialError, OSError):
    """An image could not be read (missing file, bad URL, HTTP error): fix the path or URL."""


class ImageTooLargeError(ImageLoadError):
    """An image is over ``max_bytes`` or ``max_pixels``: shrink it, or raise the limit."""


class ImageDecodeError(VLMTutorialError, ValueError):
    """The data read is no decodable image: pass a PNG or JPEG file, its bytes or its base64."""


class UnsupportedImageSourceError(VLMTutorialError, TypeError):
    """An image or item of a kind that is not accepted: pass one of the kinds the message lists."""


class RequestFormatError(VLMTutorialError, ValueError):
    """A ``generate`` request is malformed: fix the field the message names."""


class EmbeddingShapeError(RequestFormatError):
    """An embedding's rows or width do not fit ``input_ids``: embed with the same checkpoint."""


class ProcessorOutputError(VLMTutorialError, ValueError):
    """A processor output does not fit the encoder: make it with the same checkpoint's processor."""


class UnknownModelFamilyError(VLMTutorialError, ValueError):
    """Not a Qwen2.5-VL or Llama 4 checkpoint or name: pass one of the supported families."""


class VisionWeightsError(VLMTutorialError, ValueError):
    """A checkpoint's vision weights are missing or unexpected: re-download the checkpoint."""


class CheckpointFileError(VLMTutorialError, ValueError):
    """A checkpoint file is corrupt or points outside its folder: re-download or re-save it."""


class EngineUnavailableError(VLMTutorialError, ValueError):
    """The backend cannot run here (no sglang or no GPU): use backend="transformers"."""


class NotebookParameterError(VLMTutorialError, ValueError):
    """A notebook parameter no notebook takes, or a bad value: use one the message lists."""
