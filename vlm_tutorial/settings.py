"""Notebook settings: papermill parameters, ``VLM_TUTORIAL_*`` variables and the tutorial's defaults.

A notebook's ``parameters`` cell sets every parameter to ``None``.
:func:`notebook_settings` resolves each one with a single precedence, the
first that is set winning:

1. the parameter's value, when it is not ``None`` (papermill's ``-p NAME VALUE``);
2. the environment variable ``VLM_TUTORIAL_<NAME>`` (``VLM_TUTORIAL_MODEL_PATH``,
   ``VLM_TUTORIAL_BACKEND``, ``VLM_TUTORIAL_MAX_NEW_TOKENS``, ``VLM_TUTORIAL_IMAGE``);
3. the tutorial's default (:data:`DEFAULTS`).

``model_path`` left unset means: the family's real model id where SGLang and
a GPU are present, else a tiny offline checkpoint built on first use.
``"tiny"`` always picks the tiny checkpoint.

Example:
    >>> s = notebook_settings("llama4", backend="transformers", announce=False, env={})  # doctest: +SKIP
    >>> s.backend, s.is_tiny, s.max_new_tokens  # doctest: +SKIP
    ('transformers', True, 16)
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EngineUnavailableError
from .families import ModelFamily, detect_family, get_family

ENV_PREFIX = "VLM_TUTORIAL_"
TINY = "tiny"

#: The tutorial's defaults, used where neither a parameter nor a variable is set.
DEFAULTS: dict[str, Any] = {
    "model_path": None,  # the real model id on SGLang, else the tiny model
    "backend": "auto",
    "max_new_tokens": 16,
    "image": None,  # the bundled example picture
}


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



@dataclass(frozen=True)
class NotebookSettings:
    """The resolved settings of one notebook run.

    Attributes:
        family: the model family the notebook teaches.
        model_path: the checkpoint folder or hub id to load.
        backend: ``"sglang"`` or ``"transformers"`` (``"auto"`` resolved).
        max_new_tokens: tokens to generate per answer.
        image: the image source (``None``: the bundled example picture).
        is_tiny: True when ``model_path`` is a tiny checkpoint of this package.
        starts_engine: False for a notebook that only builds requests.
    """

    family: ModelFamily
    model_path: str
    backend: str
    max_new_tokens: int
    image: Any
    is_tiny: bool
    starts_engine: bool = True

    @property
    def on_sglang(self) -> bool:
        """True when the notebook talks to SGLang (not the CPU reference engine)."""
        return self.starts_engine and self.backend == "sglang"

    @property
    def encoder_kwargs(self) -> dict[str, Any]:
        """Where the client-side vision encoder runs: beside the engine, in its precision.

        Next to SGLang, or the reference engine on a GPU: the GPU, in the
        checkpoint's dtype. On a CPU: float32, as the reference engine runs.
        """
        import torch

        if self.on_sglang or torch.cuda.is_available():
            return {"device": "cuda", "dtype": None}
        return {"device": "cpu", "dtype": torch.float32}

    def summary(self) -> str:
        """The lines naming the engine and the model, as the notebooks print them."""
        import torch

        model = (
            f"tiny {self.family.name} trained on toy pictures (not the real model)\n"
            f"Checkpoint: {self.model_path}"
            if self.is_tiny
            else self.model_path
        )
        if not self.starts_engine:
            return f"Engine: none (this notebook only builds requests)\nModel: {model}"
        engine = (
            "SGLang (sglang.Engine)"
            if self.on_sglang
            else "transformers reference engine on "
            + ("GPU" if torch.cuda.is_available() else "CPU")
            + " (a walkthrough path, not SGLang)"
        )
        return f"Engine: {engine}\nModel: {model}"


def resolve_setting(
    name: str, value: Any, env: Mapping[str, str] | None = None, default: Any = None
) -> Any:
    """One setting: ``value`` if not None, else ``VLM_TUTORIAL_<NAME>``, else ``default``.

    Example:
        >>> resolve_setting("backend", None, {"VLM_TUTORIAL_BACKEND": "sglang"}, "auto")
        'sglang'
        >>> resolve_setting("backend", "transformers", {"VLM_TUTORIAL_BACKEND": "sglang"})
        'transformers'
    """
    if value is not None:
        return value
    env = os.environ if env is None else env
    text = env.get(ENV_PREFIX + name.upper())
    return text if text not in (None, "") else default


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ValueError(
                f"{ENV_PREFIX}{name.upper()} must be an integer, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


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
    family: str | ModelFamily, model_path: str | os.PathLike[str] | None, backend: str
) -> tuple[str, bool]:
    """Return ``(model_path, is_tiny)`` for a notebook.

    ``None`` picks the family's real model id on SGLang and a tiny model
    otherwise; ``"tiny"`` always picks the tiny model (built once, cached).

    Example:
        >>> resolve_model_path("llama4", None, "sglang")
        ('meta-llama/Llama-4-Scout-17B-16E-Instruct', False)
    """
    fam = get_family(family)
    if model_path is None:
        model_path = fam.real_model_id if backend == "sglang" else TINY
    if os.fspath(model_path) == TINY:
        from .offline.tiny import tiny_model_path

        return str(tiny_model_path(fam.name)), True
    path = os.fspath(model_path)
    return path, _is_tiny_folder(path)


def _is_tiny_folder(path: str) -> bool:
    """True for a folder written by :mod:`vlm_tutorial.offline.tiny` (it leaves a ``tiny_model.json``)."""
    return (Path(path) / "tiny_model.json").is_file()


def notebook_settings(
    family: str,
    *,
    model_path: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    max_new_tokens: int | None = None,
    image: Any = None,
    starts_engine: bool = True,
    env: Mapping[str, str] | None = None,
    announce: bool = True,
) -> NotebookSettings:
    """Resolve a notebook's parameters (parameter > ``VLM_TUTORIAL_*`` > default) and print them.

    ``starts_engine=False`` is for a notebook that only builds requests: it
    resolves the model as the reference engine would and prints "Engine: none".

    Example:
        >>> s = notebook_settings("llama4", backend="transformers", announce=False)  # doctest: +SKIP
        >>> s.is_tiny                                                                # doctest: +SKIP
        True
    """
    from transformers.utils import logging as hf_logging

    # Keep transformers' per-checkpoint loading bars out of the notebook's outputs.
    hf_logging.disable_progress_bar()
    fam = get_family(family)
    chosen = resolve_setting("backend", backend, env, DEFAULTS["backend"])
    resolved, why = resolve_backend(chosen) if starts_engine else ("transformers", "no engine")
    tokens = _positive_int(
        "max_new_tokens", resolve_setting("max_new_tokens", max_new_tokens, env, DEFAULTS["max_new_tokens"])
    )
    path, is_tiny = resolve_model_path(
        fam, resolve_setting("model_path", model_path, env, DEFAULTS["model_path"]), resolved
    )
    settings = NotebookSettings(
        family=fam,
        model_path=path,
        backend=resolved,
        max_new_tokens=tokens,
        image=resolve_setting("image", image, env, DEFAULTS["image"]),
        is_tiny=is_tiny,
        starts_engine=starts_engine,
    )
    if announce:
        print(settings.summary())
        if starts_engine:
            print(f"Backend {chosen!r} -> {resolved!r} ({why})")
    return settings


__all__ = [
    "machine_engine_args",
    "merge_engine_args",
    "pick_backend",
    "check_backend",
    "sglang_unavailable_reason",
    "ENV_PREFIX",
    "DEFAULTS",
    "NotebookSettings",
    "notebook_settings",
    "resolve_setting",
    "resolve_backend",
    "resolve_model_path",
]
