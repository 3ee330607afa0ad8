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
    Model: tiny random-weight qwen2_5_vl (answers are meaningless text)
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engines import BACKENDS, pick_backend
from .families import ModelFamily, get_family

ENV_PREFIX = "VLM_TUTORIAL_"
TINY = "tiny"


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

    @property
    def formats_must_agree(self) -> bool:
        """True where the three formats must give identical greedy tokens: on the reference
        engine, which computes every format with the same kernels. On SGLang, raw images are
        preprocessed on the GPU and encoded by SGLang's kernels while the client's formats were
        made by transformers, so rounding can flip a near tie; there the agreement is reported."""
        return not self.on_sglang

    @property
    def encoder_kwargs(self) -> dict[str, Any]:
        """Where the client-side vision encoder runs: the GPU in the checkpoint's dtype next to
        SGLang, else the reference engine's device and dtype (float32 on a CPU), so that
        precomputed embeddings match what the engine would compute itself."""
        import torch

        if self.on_sglang:
            return {"device": "cuda", "dtype": None}
        if _cuda():
            return {"device": "cuda", "dtype": None}
        return {"device": "cpu", "dtype": torch.float32}

    def summary(self) -> str:
        """The lines naming the engine and the model (and a tiny model's folder), as the notebooks print them."""
        engine = (
            "SGLang (sglang.Engine)"
            if self.on_sglang
            else "transformers reference engine on "
            + ("GPU" if _cuda() else "CPU")
            + " (a walkthrough path, not SGLang)"
        )
        model = (
            f"tiny random-weight {self.family.name} (answers are meaningless text)"
            if self.is_tiny
            else self.model_path
        )
        lines = f"Engine: {engine}\nModel: {model}"
        return lines + (f"\nCheckpoint: {self.model_path}" if self.is_tiny else "")


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
    return pick_backend()


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
    """True for a folder written by :mod:`vlm_tutorial.tiny` (it leaves a ``tiny_model.json``)."""
    return (Path(path) / "tiny_model.json").is_file()


def _quiet_progress_bars() -> None:
    """Keep transformers' per-checkpoint loading bars out of notebook outputs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


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
    _quiet_progress_bars()
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


_ENGINES = ExitStack()
_ATEXIT_REGISTERED = False


def start_engine(settings: NotebookSettings, **engine_args: Any) -> Any:
    """Open the engine for a notebook and make sure it is shut down at exit.

    A notebook cannot wrap several cells in one ``with`` block, so this enters
    :func:`~vlm_tutorial.open_engine` on a module-level stack that
    :func:`stop_engine` (the notebook's last cell) or interpreter exit closes,
    also when a cell in between raised.

    Example:
        >>> engine = start_engine(settings, mem_fraction_static=0.6)  # doctest: +SKIP
    """
    global _ATEXIT_REGISTERED
    from .engines import open_engine

    engine = _ENGINES.enter_context(open_engine(settings.model_path, settings.backend, **engine_args))
    if not _ATEXIT_REGISTERED:
        atexit.register(_ENGINES.close)
        _ATEXIT_REGISTERED = True
    return engine


def stop_engine() -> None:
    """Shut down every engine :func:`start_engine` opened (safe to call twice).

    Example:
        >>> stop_engine()
    """
    _ENGINES.close()


__all__ = [
    "start_engine",
    "stop_engine",
    "NotebookSettings",
    "notebook_settings",
    "resolve_backend",
    "resolve_model_path",
]
