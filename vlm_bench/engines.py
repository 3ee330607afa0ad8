"""Open an engine for the benchmark and the tests: ``sglang.Engine`` on a GPU, else the CPU reference engine.

:func:`open_engine` is a context manager, so the engine is always shut down,
also when the block raises. Engine arguments are merged by
:func:`vlm_tutorial.settings.merge_engine_args`.

Example:
    >>> with open_engine(path, backend="transformers") as engine:  # doctest: +SKIP
    ...     out = engine.generate(prompt=prompt, image_data=[img])
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
from collections.abc import Iterator
from typing import Any

from vlm_tutorial.settings import check_backend, merge_engine_args


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
        from vlm_tutorial.offline.reference import ReferenceEngine

        engine = ReferenceEngine(model_path=model_path, **args)
    try:
        yield engine
    finally:
        engine.shutdown()


__all__ = ["open_engine"]
