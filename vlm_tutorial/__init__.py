"""vlm_tutorial: what the notebooks share for querying vision-language models through SGLang.

One module per idea: ``families``, ``prompts``, ``images``, ``validation``, ``vision``,
``settings``, ``report``, ``errors``; the CPU stand-in lives in :mod:`vlm_tutorial.offline`.
"""

from .errors import ImageLoadError, RequestFormatError, VisionWeightsError, VLMTutorialError
from .families import FAMILIES, ModelFamily, detect_family, get_family
from .images import example_image, image_to_base64, image_to_data_url, load_image, serve_images
from .prompts import build_prompt
from .report import compare_outputs, show_output
from .settings import NotebookSettings, machine_engine_args, merge_engine_args, notebook_settings
from .validation import validate_image_data
from .vision import VisionEncoder, load_vision_encoder

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "ImageLoadError",
    "ModelFamily",
    "NotebookSettings",
    "RequestFormatError",
    "VLMTutorialError",
    "VisionEncoder",
    "VisionWeightsError",
    "build_prompt",
    "compare_outputs",
    "detect_family",
    "example_image",
    "get_family",
    "image_to_base64",
    "image_to_data_url",
    "load_image",
    "load_vision_encoder",
    "machine_engine_args",
    "merge_engine_args",
    "notebook_settings",
    "serve_images",
    "show_output",
    "validate_image_data",
]
