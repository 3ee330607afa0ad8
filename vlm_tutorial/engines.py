"""Open an engine: SGLang's ``sglang.Engine`` on a GPU, or the CPU reference engine.

The notebooks write ``sglang.Engine(model_path=..., **engine_args)`` out
themselves; this module serves the tests and the benchmark, which open many
engines. :func:`open_engine` is a context manager, so the engine is always
shut down, also when the block raises::

    with open_engine(model_path, backend="auto") as engine:
        out = engine.generate(prompt=prompt, image_data=[image],
                              sampling_params={"temperature": 0, "max_new_tokens": 16})

Backends:

* ``"sglang"``: ``sglang.Engine``; needs ``sglang`` and a CUDA GPU, else
  :class:`~vlm_tutorial.errors.EngineUnavailableError` before anything loads.
* ``"transformers"``: :class:`~vlm_tutorial.reference.ReferenceEngine`, the same
  ``generate`` calls answered by transformers. Not SGLang, not fast.
* ``"auto"``: ``"sglang"`` where it can run, ``"transformers"`` otherwise.

Engine arguments are merged once, by :func:`merge_engine_args`, later winning:

1. the tutorial's defaults for the model
   (:meth:`~vlm_tutorial.families.ModelFamily.engine_defaults`: Llama 4's
   ``enable_multimodal=True``; for the real ids, e.g. ``tp_size=4`` for Llama 4 Scout);
2. the machine's settings: the JSON object in ``VLM_TUTORIAL_ENGINE_ARGS``
   (:func:`machine_engine_args`), e.g. a trimmed install's attention backends;
3. the arguments the caller passes.

Example:
    >>> merge_engine_args("meta-llama/Llama-4-Scout-17B-16E-Instruct", {"tp_size": 8}, env={})["tp_size"]
    8
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import EngineUnavailableError
from .families import detect_family
from .reference import ReferenceEngine

#: The environment variable holding the machine's engine arguments as a JSON object.
ENV_VAR = "VLM_TUTORIAL_ENGINE_ARGS"

#: The ``backend`` values :func:`open_engine` accepts.
BACKENDS = ("auto", "sglang", "transformers")

_ENV_EXAMPLE = f"""{ENV_VAR}='{{"attention_backend": "triton", "disable_cuda_graph": true}}'"""


def machine_engine_args(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The machine's engine arguments: ``VLM_TUTORIAL_ENGINE_ARGS`` parsed (``{}`` if unset).

    Raises:
        ValueError: the variable is not a JSON object; the message shows an example.

    Example:
        >>> machine_engine_args({"VLM_TUTORIAL_ENGINE_ARGS": '{"disable_cuda_graph": true}'})
        {'disable_cuda_graph': True}
    """
    env = os.environ if env is None else env
    text = env.get(ENV_VAR, "")
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{ENV_VAR} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r}; "
            f"it must be a JSON object of engine arguments, e.g. {_ENV_EXAMPLE}"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{ENV_VAR} must be a JSON object of engine arguments, got a JSON "
            f"{type(value).__name__}: {text!r}; e.g. {_ENV_EXAMPLE}"
        )
    return value


def merge_engine_args(
    model_path: str | os.PathLike[str],
    caller_args: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Merge engine arguments: the model's defaults < ``VLM_TUTORIAL_ENGINE_ARGS`` < the caller's.

    Example:
        >>> env = {"VLM_TUTORIAL_ENGINE_ARGS": '{"tp_size": 2, "disable_cuda_graph": true}'}
        >>> args = merge_engine_args("meta-llama/Llama-4-Scout-17B-16E-Instruct", {}, env=env)
        >>> args["tp_size"], args["disable_cuda_graph"], args["enable_multimodal"]
        (2, True, True)
    """
    merged = detect_family(model_path).engine_defaults(model_path)
    merged.update(machine_engine_args(env))
    merged.update(caller_args or {})
    return merged


def _sglang_importable() -> bool:
    if sys.modules.get("sglang") is not None:
        return True
    try:
        return importlib.util.find_spec("sglang") is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def sglang_unavailable_reason() -> str | None:
    """Why ``backend="sglang"`` cannot run here, or None if it can.

    Checks, without importing sglang, that it is installed and that
    ``torch.cuda.is_available()`` is True.

    Example:
        >>> sglang_unavailable_reason() in (None, "sglang is not installed",
        ...     "no CUDA GPU is visible (torch.cuda.is_available() is False)")
        True
    """
    if not _sglang_importable():
        return "sglang is not installed"
    if not _cuda_available():
        return "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return None


def pick_backend() -> tuple[str, str]:
    """The backend ``"auto"`` resolves to here, and why.

    Example:
        >>> pick_backend()[0] in ("sglang", "transformers")
        True
    """
    reason = sglang_unavailable_reason()
    if reason is None:
        return "sglang", "sglang is installed and a CUDA GPU is visible"
    return "transformers", f"{reason}; using the transformers reference engine, not SGLang"


def check_backend(backend: str) -> str:
    """Resolve ``backend`` to ``"sglang"`` or ``"transformers"``; refuse one that cannot run here.

    Example:
        >>> check_backend("transformers")
        'transformers'
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend == "auto":
        return pick_backend()[0]
    if backend == "sglang":
        reason = sglang_unavailable_reason()
        if reason is not None:
            raise EngineUnavailableError(
                f'backend="sglang" cannot run here: {reason}. Install vlm-tutorial[gpu] on a '
                'CUDA machine, or use backend="transformers" (the CPU reference engine)'
            )
    return backend


def _apply_nest_asyncio_if_needed() -> None:
    """Let ``sglang.Engine`` run its event loop inside Jupyter, whose loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    import nest_asyncio

    nest_asyncio.apply()


@contextlib.contextmanager
def open_engine(
    model_path: str | os.PathLike[str], backend: str = "auto", **engine_args: Any
) -> Iterator[Any]:
    """Start an engine for ``model_path``, yield it, and always shut it down.

    Args:
        model_path: a checkpoint folder or a Hugging Face model id.
        backend: ``"auto"``, ``"sglang"`` or ``"transformers"`` (see the module docs).
        **engine_args: ``sglang.Engine`` arguments; they win over
            ``VLM_TUTORIAL_ENGINE_ARGS`` and the model's defaults.

    Raises:
        ValueError: ``backend`` is unknown, or ``VLM_TUTORIAL_ENGINE_ARGS`` is bad JSON.
        EngineUnavailableError: ``backend="sglang"`` without sglang or without a GPU.

    Example:
        >>> with open_engine(path, backend="transformers") as engine:  # doctest: +SKIP
        ...     out = engine.generate(prompt=prompt, image_data=[img],
        ...                           sampling_params={"temperature": 0, "max_new_tokens": 8})
    """
    backend = check_backend(backend)
    args = merge_engine_args(model_path, engine_args)
    if backend == "sglang":
        _apply_nest_asyncio_if_needed()
        sglang = importlib.import_module("sglang")
        engine = sglang.Engine(model_path=os.fspath(model_path), **args)
    else:
        engine = ReferenceEngine(model_path=model_path, **args)
    try:
        yield engine
    finally:
        engine.shutdown()


__all__ = [
    "ENV_VAR",
    "BACKENDS",
    "machine_engine_args",
    "merge_engine_args",
    "sglang_unavailable_reason",
    "pick_backend",
    "check_backend",
    "open_engine",
]
