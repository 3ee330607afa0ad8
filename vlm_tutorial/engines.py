"""Open an inference engine: SGLang's ``sglang.Engine`` on a GPU, or a transformers reference engine.

:func:`open_engine` is the one entry point the notebooks use. It is a context
manager, so the engine is always shut down, also when a cell raises::

    with open_engine(model_path, backend="auto", mem_fraction_static=0.5) as engine:
        out = engine.generate(prompt=prompt, image_data=[image],
                              sampling_params={"temperature": 0, "max_new_tokens": 16})

Backends:

* ``"sglang"``: ``sglang.Engine(model_path=..., **merged_args)``. Needs
  ``sglang`` installed and a CUDA GPU; otherwise :class:`EngineUnavailableError`
  is raised before anything is loaded.
* ``"transformers"``: :class:`ReferenceEngine`, the same ``generate`` calls
  answered by the Hugging Face model on the CPU (or a GPU). It is a reference
  for checking formats and token ids, not SGLang and not fast.
* ``"auto"``: ``"sglang"`` where it can run, ``"transformers"`` otherwise; it
  prints which one it picked and why.

Engine arguments are merged by :func:`merge_engine_args`, in this order
(later wins):

1. :func:`vlm_tutorial.families.recommended_engine_args` (family-required
   arguments such as Llama 4's ``enable_multimodal=True``, plus recommendations
   for the real model ids such as ``tp_size=4`` for Llama 4 Scout);
2. the JSON object in the environment variable ``VLM_TUTORIAL_ENGINE_ARGS``
   (machine settings, e.g. ``{"attention_backend": "triton", "disable_cuda_graph": true}``);
3. the keyword arguments given to :func:`open_engine`.

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
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import EngineUnavailableError, RequestFormatError
from .families import LLAMA4, QWEN2_5_VL, ModelFamily, detect_family, recommended_engine_args

#: The environment variable holding machine-specific engine arguments as a JSON object.
ENV_VAR = "VLM_TUTORIAL_ENGINE_ARGS"

#: The ``backend`` values :func:`open_engine` accepts.
BACKENDS = ("auto", "sglang", "transformers")

_ENV_EXAMPLE = f"""{ENV_VAR}='{{"attention_backend": "triton", "disable_cuda_graph": true}}'"""

#: Defaults of ``sglang.SamplingParams`` (SGLang 0.5.17) that the reference engine copies.
SGLANG_SAMPLING_DEFAULTS: dict[str, Any] = {
    "max_new_tokens": 128,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": -1,
}

#: ``sampling_params`` keys the reference engine honours.
SUPPORTED_SAMPLING_KEYS = frozenset(
    {
        "max_new_tokens",
        "temperature",
        "top_p",
        "top_k",
        "sampling_seed",
        "ignore_eos",
        "stop_token_ids",
        "skip_special_tokens",
    }
)

#: SGLang treats a temperature below this as greedy decoding.
_GREEDY_EPS = 1e-6


# --------------------------------------------------------------------------- arguments


def env_engine_args(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Parse ``VLM_TUTORIAL_ENGINE_ARGS`` from ``env`` (default ``os.environ``); ``{}`` if unset.

    Raises:
        ValueError: the variable is not a JSON object; the message shows an example.

    Example:
        >>> env_engine_args({"VLM_TUTORIAL_ENGINE_ARGS": '{"disable_cuda_graph": true}'})
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
    model_path: str | os.PathLike,
    caller_args: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Merge engine arguments: ``caller_args`` > ``VLM_TUTORIAL_ENGINE_ARGS`` > recommended.

    The recommended arguments come from
    :func:`vlm_tutorial.families.recommended_engine_args`: what the family
    always needs (Llama 4: ``enable_multimodal=True``) and, for a real model id
    only, its recommendations (Llama 4 Scout: ``tp_size=4``,
    ``context_length=65536``). A tiny local checkpoint never inherits those.
    The environment variable carries machine settings; the caller's keyword
    arguments win over both.

    Example:
        >>> env = {"VLM_TUTORIAL_ENGINE_ARGS": '{"tp_size": 2, "disable_cuda_graph": true}'}
        >>> args = merge_engine_args("meta-llama/Llama-4-Scout-17B-16E-Instruct", {}, env=env)
        >>> args["tp_size"], args["disable_cuda_graph"], args["enable_multimodal"]
        (2, True, True)
    """
    merged = dict(recommended_engine_args(model_path))
    merged.update(env_engine_args(env))
    merged.update(caller_args or {})
    return merged


# --------------------------------------------------------------------------- backend choice


def _sglang_importable() -> bool:
    module = sys.modules.get("sglang")
    if module is not None:
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


def _apply_nest_asyncio_if_needed() -> None:
    """Let ``sglang.Engine`` run its event loop inside Jupyter, whose loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    try:
        import nest_asyncio
    except ImportError:
        raise EngineUnavailableError(
            "an asyncio event loop is running (Jupyter) and sglang.Engine needs nest_asyncio "
            "there: pip install nest_asyncio (it comes with vlm-tutorial[gpu])"
        ) from None
    nest_asyncio.apply()


@contextlib.contextmanager
def open_engine(
    model_path: str | os.PathLike, backend: str = "auto", **engine_args: Any
) -> Iterator[Any]:
    """Start an engine for ``model_path``, yield it, and always shut it down.

    Args:
        model_path: a checkpoint folder or a Hugging Face model id.
        backend: ``"auto"``, ``"sglang"`` or ``"transformers"`` (see the module docs).
        **engine_args: ``sglang.Engine`` arguments; they win over
            ``VLM_TUTORIAL_ENGINE_ARGS`` and the recommended ones
            (:func:`merge_engine_args`). The reference engine uses ``device``
            and ``dtype`` and ignores the others with one printed note.

    Raises:
        ValueError: ``backend`` is unknown, or ``VLM_TUTORIAL_ENGINE_ARGS`` is bad JSON.
        EngineUnavailableError: ``backend="sglang"`` without sglang or without a GPU.

    Example:
        >>> with open_engine(path, backend="transformers") as engine:  # doctest: +SKIP
        ...     out = engine.generate(prompt=prompt, image_data=[img],
        ...                           sampling_params={"temperature": 0, "max_new_tokens": 8})
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    args = merge_engine_args(model_path, engine_args)
    if backend == "auto":
        backend, why = pick_backend()
        print(f"open_engine: backend={backend!r} ({why})")
    if backend == "sglang":
        reason = sglang_unavailable_reason()
        if reason is not None:
            raise EngineUnavailableError(
                f'backend="sglang" cannot run here: {reason}. Install vlm-tutorial[gpu] on a '
                'CUDA machine, or use backend="transformers" (the CPU reference engine)'
            )
        _apply_nest_asyncio_if_needed()
        sglang = importlib.import_module("sglang")
        engine = sglang.Engine(model_path=os.fspath(model_path), **args)
    else:
        engine = ReferenceEngine(model_path, **args)
    try:
        yield engine
    finally:
        engine.shutdown()


# --------------------------------------------------------------------------- reference engine


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    names = {
        "float32": torch.float32,
        "float": torch.float32,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
        "half": torch.float16,
    }
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)} or 'auto'")
    return names[dtype]


def _as_tensor(value: Any, dtype: Any = None) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value if dtype is None else value.to(dtype)
    return torch.as_tensor(value, dtype=dtype)


def _ids_list(input_ids: Any) -> list[int]:
    if hasattr(input_ids, "tolist"):
        input_ids = input_ids.tolist()
    return [int(i) for i in input_ids]


def _is_nested(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0 and isinstance(value[0], (list, tuple))


class ReferenceEngine:
    """The transformers reference engine: ``sglang.Engine.generate``'s calls, run by Hugging Face.

    Not SGLang: it loads the checkpoint with ``AutoModelForImageTextToText``
    and ``AutoProcessor`` and runs ``model.generate``, one request after
    another. It exists so that the notebooks and tests run on a CPU and so
    that SGLang's answers can be checked token by token.

    ``generate`` takes the calls the tutorial makes:

    * ``prompt=`` (str, or a list for a batch) with raw images in ``image_data``
      (PIL images, paths, URLs, base64, data URLs): loaded with
      :func:`vlm_tutorial.images.load_image` and run through the processor;
    * ``input_ids=`` (list of ints, or a list of lists) with one
      ``format="processor_output"`` dict: its tensors are used as they are;
    * ``input_ids=`` with a precomputed embedding, as
      ``format="precomputed_embedding"`` with ``feature`` (and
      ``image_grid_thw`` for Qwen2.5-VL) or ``format="processor_output"``
      with ``precomputed_embeddings`` (Llama 4): the rows replace the image
      placeholder tokens' embeddings.

    Every request of a call is checked with
    :func:`vlm_tutorial.validation.validate_image_data` before any model work.
    A batch runs sequentially, so it returns exactly what the same requests
    return one by one.

    ``sampling_params``: ``max_new_tokens`` (default 128, as in SGLang),
    ``temperature`` (0 or None: greedy; missing: 1.0, SGLang's default),
    ``top_p``, ``top_k`` (-1: off), ``sampling_seed`` (default 0; sampling is
    reproducible here, unlike SGLang), ``ignore_eos``, ``stop_token_ids``,
    ``skip_special_tokens``. Other keys (``stop``, ``regex``, penalties, ...)
    raise ``ValueError``: silently ignoring them would change the answer. The
    model's ``generation_config`` sampling defaults (e.g. a repetition
    penalty) are not applied, as in SGLang's native ``generate``.

    Output, as SGLang's: ``{"text", "output_ids", "meta_info": {"id",
    "prompt_tokens", "completion_tokens", "finish_reason", "e2e_latency"}}``.
    ``prompt_tokens`` counts the prompt after image-token expansion.
    ``output_ids`` end with the stop token when generation stopped on one
    (SGLang returns the output "through the stop"); ``text`` leaves it out.

    Example:
        >>> engine = ReferenceEngine(tiny_model_path("qwen2_5_vl"))  # doctest: +SKIP
        >>> engine.generate(prompt=prompt, image_data=[img],  # doctest: +SKIP
        ...                 sampling_params={"temperature": 0, "max_new_tokens": 8})["output_ids"]
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        device: str | None = None,
        dtype: Any = None,
        **ignored_engine_args: Any,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

        self.model_path = os.fspath(model_path)
        self.family: ModelFamily = detect_family(model_path)
        if ignored_engine_args:
            print(
                "ReferenceEngine: ignoring SGLang-only engine arguments "
                f"{sorted(ignored_engine_args)} (the transformers reference engine has no use "
                "for them)"
            )
        self.ignored_engine_args = dict(ignored_engine_args)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = _torch_dtype(dtype)
        if dtype is None or (dtype == "auto" and self.device.type == "cpu"):
            dtype = torch.float32 if self.device.type == "cpu" else "auto"
        self.processor = AutoProcessor.from_pretrained(self.model_path)
        self.tokenizer = self.processor.tokenizer
        model = AutoModelForImageTextToText.from_pretrained(self.model_path, dtype=dtype)
        self.model = model.to(self.device).eval()
        self.dtype = self.model.dtype
        config = self.model.config
        self.hidden_size = int(config.get_text_config().hidden_size)
        # The embedding placeholder: Qwen2.5-VL's <|image_pad|>; Llama 4's <|patch|>
        # (config.image_token_index, aliased as image_token_id), not <|image|>.
        self.image_token_id = int(config.image_token_id)
        self.eos_token_ids = self._collect_eos_ids()
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else min(self.eos_token_ids, default=0)
        # Sampling comes from each request only, as in SGLang's native generate.
        # (no eos here either: ignore_eos must be able to switch stopping off).
        self.model.generation_config = GenerationConfig(pad_token_id=self.pad_token_id)

    # ------------------------------------------------------------------ lifecycle

    def __repr__(self) -> str:
        state = "shut down" if self.model is None else f"{self.device}, {self.dtype}"
        return (
            f"<ReferenceEngine (transformers reference engine, not SGLang) "
            f"model_path={self.model_path!r} family={self.family.name!r} {state}>"
        )

    def shutdown(self) -> None:
        """Free the model (idempotent)."""
        if getattr(self, "model", None) is None:
            return
        import gc

        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self) -> ReferenceEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ helpers

    def _collect_eos_ids(self) -> set[int]:
        ids: set[int] = set()
        config = self.model.config
        sources = [
            getattr(self.model.generation_config, "eos_token_id", None),
            getattr(config, "eos_token_id", None),
            getattr(config.get_text_config(), "eos_token_id", None),
            self.tokenizer.eos_token_id,
        ]
        for value in sources:
            if value is None:
                continue
            ids.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
        return ids

    # ------------------------------------------------------------------ generate

    def generate(
        self,
        prompt: str | list[str] | None = None,
        sampling_params: dict[str, Any] | list[dict[str, Any]] | None = None,
        input_ids: list[int] | list[list[int]] | None = None,
        image_data: Any = None,
        rid: str | list[str] | None = None,
        **unsupported: Any,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Run one request, or a batch (lists) sequentially; return SGLang-shaped output.

        Example:
            >>> engine.generate(input_ids=ids, image_data=[d],  # doctest: +SKIP
            ...                 sampling_params={"temperature": 0, "max_new_tokens": 8})
        """
        if self.model is None:
            raise RuntimeError("this ReferenceEngine was shut down; open a new one")
        if unsupported:
            raise ValueError(
                f"the transformers reference engine does not support {sorted(unsupported)}; "
                'it takes prompt/input_ids, image_data, sampling_params and rid (use backend="sglang" '
                "for the rest)"
            )
        requests, is_batch = self._normalize(prompt, input_ids, image_data, sampling_params, rid)
        # Check every request before any model work.
        for req in requests:
            self._validate(req)
        outputs = [self._run(req) for req in requests]
        return outputs if is_batch else outputs[0]

    def _normalize(
        self, prompt: Any, input_ids: Any, image_data: Any, sampling_params: Any, rid: Any
    ) -> tuple[list[dict[str, Any]], bool]:
        if (prompt is None) == (input_ids is None):
            raise RequestFormatError(
                "give exactly one of prompt= (text) or input_ids= (token ids), "
                f"got {'both' if prompt is not None else 'neither'}"
            )
        if prompt is not None:
            is_batch = isinstance(prompt, list)
            texts: list[Any] = prompt if is_batch else [prompt]
            id_lists: list[Any] = [None] * len(texts)
            if not all(isinstance(t, str) for t in texts):
                raise RequestFormatError("prompt must be a str or a list of str")
        else:
            if hasattr(input_ids, "tolist"):
                input_ids = input_ids.tolist()
            is_batch = _is_nested(input_ids)
            id_lists = [_ids_list(x) for x in input_ids] if is_batch else [_ids_list(input_ids)]
            texts = [None] * len(id_lists)
        n = len(texts)
        images = self._normalize_images(image_data, n, is_batch)
        params = self._normalize_sampling(sampling_params, n)
        if rid is None:
            rids = [uuid.uuid4().hex for _ in range(n)]
        elif isinstance(rid, str):
            rids = [rid] if n == 1 else [f"{rid}_{i}" for i in range(n)]
        else:
            rids = list(rid)
            if len(rids) != n:
                raise ValueError(f"rid has {len(rids)} entries for a batch of {n} requests")
        requests = [
            {"prompt": t, "input_ids": i, "image_data": im, "sampling_params": p, "rid": r}
            for t, i, im, p, r in zip(texts, id_lists, images, params, rids, strict=True)
        ]
        return requests, is_batch

    @staticmethod
    def _normalize_images(image_data: Any, n: int, is_batch: bool) -> list[list[Any]]:
        """One list of images per request, as SGLang's ``GenerateReqInput`` normalizes them."""
        if image_data is None or (isinstance(image_data, list) and not image_data):
            return [[] for _ in range(n)]
        if not is_batch:
            return [list(image_data) if isinstance(image_data, list) else [image_data]]
        if not isinstance(image_data, list):
            return [[image_data] for _ in range(n)]
        if len(image_data) != n:
            raise RequestFormatError(
                f"a batch of {n} requests needs one image_data entry per request, got "
                f"{len(image_data)}; pass a list of lists, e.g. image_data=[[img1], [img2]]"
            )
        return [
            [] if item is None else (list(item) if isinstance(item, list) else [item])
            for item in image_data
        ]

    @staticmethod
    def _normalize_sampling(sampling_params: Any, n: int) -> list[dict[str, Any]]:
        if sampling_params is None:
            params = [{} for _ in range(n)]
        elif isinstance(sampling_params, dict):
            params = [dict(sampling_params) for _ in range(n)]
        else:
            params = [dict(p or {}) for p in sampling_params]
            if len(params) != n:
                raise ValueError(
                    f"sampling_params has {len(params)} entries for a batch of {n} requests"
                )
        for p in params:
            extra = set(p) - SUPPORTED_SAMPLING_KEYS
            if extra:
                raise ValueError(
                    f"the transformers reference engine does not implement sampling_params "
                    f"{sorted(extra)}; it supports {sorted(SUPPORTED_SAMPLING_KEYS)} "
                    '(use backend="sglang" for the others)'
                )
        return params

    def _validate(self, req: dict[str, Any]) -> None:
        from .validation import validate_image_data

        validate_image_data(
            req["image_data"] or None,
            input_ids=req["input_ids"],
            prompt=req["prompt"],
            hidden_size=self.hidden_size,
        )

    # ------------------------------------------------------------------ model inputs

    def _model_inputs(self, req: dict[str, Any]) -> dict[str, Any]:
        """Tensors for ``model.generate``: always ``input_ids``, plus the image inputs."""
        items = req["image_data"]
        if items and isinstance(items[0], dict):
            if len(items) != 1:
                raise RequestFormatError(
                    f"image_data holds {len(items)} preprocessed dicts; send exactly one"
                )
            return self._preprocessed_inputs(req["input_ids"], items[0])
        prompt = req["prompt"]
        if prompt is None and not items:  # text-only input_ids: used as they are, as SGLang does
            import torch

            ids = torch.tensor([_ids_list(req["input_ids"])], dtype=torch.long)
            return self._finish_inputs({"input_ids": ids})
        if prompt is None:  # input_ids with raw images: SGLang decodes the ids back to text
            prompt = self.tokenizer.decode(req["input_ids"])
        if items:
            # The same processor call as the request builders' (one BOS token).
            from .requests import run_processor

            inputs = run_processor(self.processor, prompt, items)
        else:
            bos = self.tokenizer.bos_token
            kwargs = {"add_special_tokens": False} if bos and prompt.startswith(bos) else {}
            inputs = self.processor(text=[prompt], return_tensors="pt", **kwargs)
        out: dict[str, Any] = {"input_ids": inputs["input_ids"]}
        if "pixel_values" in inputs:
            out["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        if inputs.get("image_grid_thw") is not None:
            out["image_grid_thw"] = inputs["image_grid_thw"]
        return self._finish_inputs(out)

    def _preprocessed_inputs(self, ids: list[int], item: dict[str, Any]) -> dict[str, Any]:
        import torch

        input_ids = torch.tensor([ids], dtype=torch.long)
        out: dict[str, Any] = {"input_ids": input_ids}
        grid = item.get("image_grid_thw")
        if grid is not None:
            grid = _as_tensor(grid, torch.long)
            out["image_grid_thw"] = grid.reshape(-1, 3)
        feature = item.get("feature", item.get("precomputed_embeddings"))
        if feature is not None:
            feature = _as_tensor(feature).reshape(-1, self.hidden_size)
            embed = self.model.get_input_embeddings()
            with torch.no_grad():
                embeds = embed(input_ids.to(self.device))
            mask = (input_ids == self.image_token_id).to(self.device)
            embeds[mask] = feature.to(self.device, embeds.dtype)
            out["inputs_embeds"] = embeds
        else:
            out["pixel_values"] = _as_tensor(item["pixel_values"]).to(self.dtype)
        return self._finish_inputs(out)

    def _finish_inputs(self, out: dict[str, Any]) -> dict[str, Any]:
        import torch

        input_ids = out["input_ids"]
        out["attention_mask"] = torch.ones_like(input_ids)
        if self.family is QWEN2_5_VL and out.get("image_grid_thw") is not None:
            # Without mm_token_type_ids Qwen2.5-VL silently uses 1-D rope positions.
            out["mm_token_type_ids"] = (input_ids == self.image_token_id).to(torch.int)
        if self.family is LLAMA4:
            out.pop("image_grid_thw", None)
        return {k: v.to(self.device) for k, v in out.items()}

    # ------------------------------------------------------------------ one request

    def _generation_config(self, params: dict[str, Any]) -> tuple[Any, set[int], bool]:
        from transformers import GenerationConfig

        p = {**SGLANG_SAMPLING_DEFAULTS, **params}
        temperature = p["temperature"]
        greedy = temperature is None or float(temperature) < _GREEDY_EPS
        # As in SGLang, ignore_eos switches off every stop token, stop_token_ids included.
        stop_ids: set[int] = set()
        if not p.get("ignore_eos"):
            stop_ids = set(self.eos_token_ids) | {int(i) for i in p.get("stop_token_ids") or []}
        top_k = int(p["top_k"])
        # Greedy: leave the sampling knobs unset (transformers warns about them otherwise).
        sampling = (
            {}
            if greedy
            else {
                "temperature": float(temperature),
                "top_p": float(p["top_p"]),
                "top_k": 0 if top_k < 0 else top_k,  # 0 switches top-k off
            }
        )
        return (
            GenerationConfig(
                max_new_tokens=int(p["max_new_tokens"]),
                do_sample=not greedy,
                **sampling,
                repetition_penalty=1.0,
                num_beams=1,
                eos_token_id=sorted(stop_ids) or None,
                pad_token_id=self.pad_token_id,
            ),
            stop_ids,
            greedy,
        )

    def _run(self, req: dict[str, Any]) -> dict[str, Any]:
        import torch

        start = time.perf_counter()
        params = req["sampling_params"]
        gen_config, stop_ids, greedy = self._generation_config(params)
        inputs = self._model_inputs(req)
        prompt_len = int(inputs["input_ids"].shape[1])
        seed = int(params.get("sampling_seed") or 0)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            if not greedy:
                torch.manual_seed(seed)
            generated = self.model.generate(**inputs, generation_config=gen_config)
        # generate returns the prompt too whenever input_ids are passed.
        output_ids = [int(t) for t in generated[0, prompt_len:].tolist()]
        max_new = gen_config.max_new_tokens
        if len(output_ids) >= max_new:
            finish: dict[str, Any] = {"type": "length", "length": max_new}
        elif output_ids and output_ids[-1] in stop_ids:
            finish = {"type": "stop", "matched": output_ids[-1]}
        else:  # pragma: no cover - generate stops only on length or a stop token
            finish = {"type": "stop", "matched": None}
        text_ids = output_ids[:-1] if finish["type"] == "stop" else output_ids
        text = self.tokenizer.decode(
            text_ids, skip_special_tokens=params.get("skip_special_tokens", True)
        )
        return {
            "text": text,
            "output_ids": output_ids,
            "meta_info": {
                "id": req["rid"],
                "finish_reason": finish,
                "prompt_tokens": prompt_len,
                "completion_tokens": len(output_ids),
                "e2e_latency": time.perf_counter() - start,
            },
        }


__all__ = [
    "ENV_VAR",
    "BACKENDS",
    "SGLANG_SAMPLING_DEFAULTS",
    "SUPPORTED_SAMPLING_KEYS",
    "env_engine_args",
    "merge_engine_args",
    "sglang_unavailable_reason",
    "pick_backend",
    "open_engine",
    "ReferenceEngine",
]
