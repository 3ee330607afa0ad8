"""Notebook settings and engine arguments, each with one precedence.

Notebook parameters win over ``VLM_TUTORIAL_MODEL_PATH`` and ``VLM_TUTORIAL_BACKEND``; engine
arguments merge the family's values, then ``VLM_TUTORIAL_ENGINE_ARGS``, then the caller's.

>>> machine_engine_args({"VLM_TUTORIAL_ENGINE_ARGS": '{"disable_cuda_graph": true}'})
{'disable_cuda_graph': True}
"""

import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import EngineUnavailableError, NotebookParameterError
from .families import ModelFamily, detect_family, get_family

ENV_PREFIX = "VLM_TUTORIAL_"
ENGINE_ARGS_VAR = ENV_PREFIX + "ENGINE_ARGS"
BACKENDS = ("auto", "sglang", "transformers")
TINY = "tiny"


def machine_engine_args(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The machine's engine arguments: ``VLM_TUTORIAL_ENGINE_ARGS`` parsed, ``{}`` if unset."""
    text = (os.environ if env is None else env).get(ENGINE_ARGS_VAR, "")
    if not text.strip():
        return {}
    example = f"""{ENGINE_ARGS_VAR}='{{"attention_backend": "triton"}}'"""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{ENGINE_ARGS_VAR} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r}; "
            f"it must be a JSON object of engine arguments, e.g. {example}"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{ENGINE_ARGS_VAR} must be a JSON object of engine arguments, got "
            f"{type(value).__name__} {text!r}; e.g. {example}"
        )
    return value


def merge_engine_args(
    model_path: str | os.PathLike[str],
    caller_args: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The tutorial's values for the model < ``VLM_TUTORIAL_ENGINE_ARGS`` < the caller's.

    >>> merge_engine_args("meta-llama/Llama-4-Scout-17B-16E-Instruct", {"tp_size": 8}, {})["tp_size"]
    8
    """
    merged = detect_family(model_path).engine_args_for(model_path)
    merged.update(machine_engine_args(env))
    merged.update(caller_args or {})
    return merged


def sglang_unavailable_reason() -> str | None:
    """Why SGLang cannot run here (not installed, no CUDA GPU), or None if it can."""
    if sys.modules.get("sglang") is None and importlib.util.find_spec("sglang") is None:
        return "sglang is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return None


def pick_backend() -> tuple[str, str]:
    """What ``backend="auto"`` means here, and why: ``("transformers", "sglang is not installed; ...")``."""
    reason = sglang_unavailable_reason()
    if reason is None:
        return "sglang", "sglang is installed and a CUDA GPU is visible"
    return "transformers", f"{reason}; using the transformers reference engine, not SGLang"


def check_backend(backend: str) -> str:
    """Resolve ``backend`` to ``"sglang"`` or ``"transformers"``; refuse one that cannot run here."""
    if backend not in BACKENDS:
        raise NotebookParameterError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return pick_backend()[0]
    reason = sglang_unavailable_reason() if backend == "sglang" else None
    if reason is not None:
        raise EngineUnavailableError(
            f'backend="sglang" cannot run here: {reason}. Install vlm-tutorial[gpu] on a CUDA '
            'machine, or use backend="transformers" (the CPU reference engine)'
        )
    return backend


@dataclass(frozen=True)
class NotebookSettings:
    """The resolved settings of one notebook run; ``is_tiny``: a tiny offline checkpoint."""

    family: ModelFamily
    model_path: str
    backend: str
    max_new_tokens: int
    image: Any
    tp_size: int
    is_tiny: bool
    starts_engine: bool = True

    @property
    def on_sglang(self) -> bool:
        """True when the notebook talks to SGLang, not to the CPU reference engine."""
        return self.starts_engine and self.backend == "sglang"

    @property
    def encoder_kwargs(self) -> dict[str, Any]:
        """Where the client-side vision encoder runs: the GPU beside SGLang, else float32 on the CPU."""
        import torch

        if self.on_sglang or torch.cuda.is_available():
            return {"device": "cuda", "dtype": None}
        return {"device": "cpu", "dtype": torch.float32}

    def summary(self) -> str:
        """The lines naming the engine and the model, as the notebooks print them."""
        model = self.model_path
        if self.is_tiny:
            model = f"tiny {self.family.name} trained on toy pictures (not the real model)"
        engine = "transformers reference engine (a CPU stand-in, not SGLang)"
        if not self.starts_engine:
            engine = "none (this notebook only builds requests)"
        elif self.on_sglang:
            engine = "SGLang (sglang.Engine)"
        return f"Engine: {engine}\nModel: {model}"


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NotebookParameterError(f"{name} must be a positive int, got {value!r}")
    return value


def notebook_settings(
    family: str,
    *,
    model_path: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    max_new_tokens: int = 16,
    image: Any = None,
    tp_size: int | None = None,
    starts_engine: bool = True,
    env: Mapping[str, str] | None = None,
    announce: bool = True,
) -> NotebookSettings:
    """Resolve a notebook's parameters and print its engine and model (no GPU: the tiny one).

    >>> s = notebook_settings("llama4", backend="transformers", announce=False)  # doctest: +SKIP
    >>> s.is_tiny, s.tp_size  # doctest: +SKIP
    (True, 1)
    """
    env = os.environ if env is None else env
    fam = get_family(family)
    chosen = backend or env.get(ENV_PREFIX + "BACKEND") or "auto"
    resolved = check_backend(chosen) if starts_engine else "transformers"
    path = os.fspath(model_path or env.get(ENV_PREFIX + "MODEL_PATH") or "")
    if not path:
        path = fam.real_model_id if resolved == "sglang" else TINY
    if path == TINY:
        from .offline.tiny import tiny_model_path

        path = str(tiny_model_path(fam.name))
    is_tiny = os.path.isfile(os.path.join(path, "tiny_model.json"))
    if tp_size is None:
        tp_size = fam.engine_args_for(path).get("tp_size", 1)
    settings = NotebookSettings(
        family=fam,
        model_path=path,
        backend=resolved,
        max_new_tokens=_positive_int("max_new_tokens", max_new_tokens),
        image=image,
        tp_size=_positive_int("tp_size", tp_size),
        is_tiny=is_tiny,
        starts_engine=starts_engine,
    )
    if announce:  # a notebook: its outputs show no per-checkpoint loading bars
        from transformers.utils import logging

        logging.disable_progress_bar()
        print(settings.summary())
    return settings
