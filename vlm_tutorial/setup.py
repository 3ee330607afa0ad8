"""Notebook settings: papermill parameters, environment overrides, and the tiny-model fallback.

A notebook's ``parameters`` cell sets ``model_path``, ``backend``,
``max_new_tokens`` and ``image``; :func:`notebook_settings` resolves them:

* environment variables override the parameters, so a test run or a GPU CI
  job can steer every notebook without editing it:
  ``VLM_TUTORIAL_MODEL_PATH`` (a folder, a hub id, or ``tiny``),
  ``VLM_TUTORIAL_BACKEND`` (``auto``, ``sglang``, ``transformers``),
  ``VLM_TUTORIAL_MAX_NEW_TOKENS`` and ``VLM_TUTORIAL_IMAGE``;
* ``model_path=None`` means automatic: the real model id where SGLang and a
  GPU are present, otherwise a tiny random-weight model built on the fly and
  announced in a printed line.

Example:
    >>> settings = notebook_settings("qwen2_5_vl", model_path="tiny", backend="transformers")  # doctest: +SKIP
    Model: tiny random-weight qwen2_5_vl at ~/.cache/vlm_tutorial/... (answers are meaningless text)
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .families import ModelFamily, get_family

BACKENDS = ("auto", "sglang", "transformers")
ENV_PREFIX = "VLM_TUTORIAL_"
TINY = "tiny"


@lru_cache(maxsize=1)
def sglang_gpu_status() -> tuple[bool, str]:
    """``(True, why)`` where ``sglang`` is importable and a CUDA GPU is visible, else ``(False, why)``.

    Only looks: nothing is imported from sglang.

    Example:
        >>> ok, why = sglang_gpu_status()
        >>> isinstance(why, str)
        True
    """
    if importlib.util.find_spec("sglang") is None:
        return False, "sglang is not installed"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU is visible"
    return True, f"sglang is installed and {torch.cuda.get_device_name(0)} is visible"


@dataclass(frozen=True)
class NotebookSettings:
    """The resolved settings of one notebook run.

    Attributes:
        family: the model family the notebook teaches.
        model_path: the checkpoint folder or hub id to load.
        backend: ``"sglang"`` or ``"transformers"`` (``"auto"`` resolved).
        max_new_tokens: tokens to generate per answer.
        image: the image source (``None``: the bundled example image).
        is_tiny: True when ``model_path`` is a tiny random-weight model.
    """

    family: ModelFamily
    model_path: str
    backend: str
    max_new_tokens: int
    image: Any
    is_tiny: bool

    @property
    def on_sglang(self) -> bool:
        """True when the notebook talks to SGLang (not the CPU reference engine)."""
        return self.backend == "sglang"

    def summary(self) -> str:
        """Two lines naming the engine and the model, as the notebooks print them."""
        engine = (
            "SGLang (sglang.Engine)"
            if self.on_sglang
            else "transformers reference engine on "
            + ("GPU" if _cuda() else "CPU")
            + " (a walkthrough path, not SGLang)"
        )
        model = (
            f"tiny random-weight {self.family.name} at {self.model_path} "
            "(answers are meaningless text)"
            if self.is_tiny
            else self.model_path
        )
        return f"Engine: {engine}\nModel: {model}"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(ENV_PREFIX + name)
    return value if value not in (None, "") else None


def resolve_backend(backend: str) -> tuple[str, str]:
    """Resolve ``"auto"`` to ``"sglang"`` or ``"transformers"``; return ``(backend, reason)``.

    Example:
        >>> resolve_backend("transformers")
        ('transformers', 'asked for')
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend, "asked for"
    ok, why = sglang_gpu_status()
    return ("sglang" if ok else "transformers"), why


def resolve_model_path(
    family: str | ModelFamily, model_path: str | os.PathLike | None, backend: str
) -> tuple[str, bool]:
    """Return ``(model_path, is_tiny)`` for a notebook.

    ``None`` picks the family's real model id on SGLang and a tiny model
    otherwise; ``"tiny"`` always picks the tiny model (built once, cached).

    Example:
        >>> resolve_model_path("llama4", None, "sglang")
        ('meta-llama/Llama-4-Scout-17B-16E-Instruct', False)
    """
    fam = family if isinstance(family, ModelFamily) else get_family(family)
    if model_path is None:
        model_path = fam.real_model_id if backend == "sglang" else TINY
    if os.fspath(model_path) == TINY:
        from .tiny import tiny_model_path

        return str(tiny_model_path(fam.name)), True
    path = os.fspath(model_path)
    return path, _is_tiny_folder(path)


def _is_tiny_folder(path: str) -> bool:
    import json
    from pathlib import Path

    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    return bool(json.loads(config.read_text()).get("vlm_tutorial_tiny", False))


def notebook_settings(
    family: str,
    model_path: str | os.PathLike | None = None,
    backend: str = "auto",
    max_new_tokens: int = 16,
    image: Any = None,
    *,
    env: Mapping[str, str] | None = None,
    announce: bool = True,
) -> NotebookSettings:
    """Resolve a notebook's parameters (environment variables win) and print what was picked.

    Example:
        >>> s = notebook_settings("llama4", backend="transformers", announce=False)  # doctest: +SKIP
        >>> s.is_tiny                                                                # doctest: +SKIP
        True
    """
    env = os.environ if env is None else env
    backend = _env(env, "BACKEND") or backend
    model_path = _env(env, "MODEL_PATH") or model_path
    image = _env(env, "IMAGE") or image
    tokens = _env(env, "MAX_NEW_TOKENS")
    if tokens is not None:
        try:
            max_new_tokens = int(tokens)
        except ValueError:
            raise ValueError(
                f"{ENV_PREFIX}MAX_NEW_TOKENS must be an integer, got {tokens!r}"
            ) from None
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    resolved, why = resolve_backend(backend)
    fam = get_family(family)
    path, is_tiny = resolve_model_path(fam, model_path, resolved)
    settings = NotebookSettings(fam, path, resolved, max_new_tokens, image, is_tiny)
    if announce:
        print(f"{settings.summary()}\nBackend {backend!r} -> {resolved!r} ({why})")
    return settings


__all__ = [
    "BACKENDS",
    "NotebookSettings",
    "notebook_settings",
    "resolve_backend",
    "resolve_model_path",
    "sglang_gpu_status",
]
