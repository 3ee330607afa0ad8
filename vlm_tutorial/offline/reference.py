"""The CPU reference engine: ``sglang.Engine``'s ``generate`` calls, answered by transformers.

:class:`ReferenceEngine` is not SGLang. It loads a checkpoint with
``AutoModelForImageTextToText`` and ``AutoProcessor`` and runs
``model.generate``, one request after another, so that the notebooks and
tests run on a machine without a GPU and SGLang's answers can be checked
token by token. It takes the constructor arguments of ``sglang.Engine``
(``model_path=...`` plus engine arguments, of which it uses ``device`` and
``dtype`` and names the others it ignores) and the same ``generate`` calls.

Example:
    >>> engine = ReferenceEngine(model_path=tiny_model_path("qwen2_5_vl"))  # doctest: +SKIP
    >>> engine.generate(prompt=prompt, image_data=[img],                       # doctest: +SKIP
    ...                 sampling_params={"temperature": 0, "max_new_tokens": 8})["text"]
    'a red circle and a blue square'
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from vlm_tutorial.errors import RequestFormatError
from vlm_tutorial.families import ModelFamily, detect_family
from vlm_tutorial.images import load_image
from vlm_tutorial.validation import (
    validate_image_data,
    validate_input_ids,
    validate_sampling_params,
)
from vlm_tutorial.vision import resolve_device, resolve_dtype

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


def _as_tensor(value: Any, dtype: Any = None) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value if dtype is None else value.to(dtype)
    return torch.as_tensor(value, dtype=dtype)


def _is_batch_of_ids(value: Any) -> bool:
    """A list of requests' ids: every entry a list, a tuple or a 1-D (or larger) tensor."""
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(v, (list, tuple)) or (hasattr(v, "dim") and v.dim() >= 1) for v in value)
    )


class ReferenceEngine:
    """The transformers reference engine: ``sglang.Engine.generate``'s calls, run by Hugging Face.

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

    Every request of a call is checked, its images loaded and its processor
    run before the first forward pass, so a bad request anywhere in a batch
    fails before any generation. A batch runs sequentially, so it returns
    exactly what the same requests return one by one. Calls from several
    threads run one at a time (each call's seeded sampling is then
    reproducible).

    ``sampling_params``: ``max_new_tokens`` (default 128, as in SGLang),
    ``temperature`` (0 or None: greedy; missing: 1.0, SGLang's default),
    ``top_p``, ``top_k`` (-1: off), ``sampling_seed`` (default 0; sampling is
    reproducible here, unlike SGLang), ``ignore_eos``, ``stop_token_ids``,
    ``skip_special_tokens``; a ``None`` value stands for the default, as in
    SGLang. Other keys (``stop``, ``regex``, penalties, ...) and other
    ``generate`` keywords raise :class:`~vlm_tutorial.errors.RequestFormatError`
    (a ``ValueError``): silently ignoring them would change the answer. The
    model's ``generation_config`` sampling defaults (e.g. a repetition
    penalty) are not applied, as in SGLang's native ``generate``.

    Output, as SGLang's: ``{"text", "output_ids", "meta_info": {"id",
    "prompt_tokens", "completion_tokens", "finish_reason", "e2e_latency"}}``.
    ``prompt_tokens`` counts the prompt after image-token expansion.
    ``output_ids`` end with the stop token when generation stopped on one
    (SGLang returns the output "through the stop"); ``text`` leaves it out.

    Example:
        >>> engine = ReferenceEngine(model_path=tiny_model_path("qwen2_5_vl"))  # doctest: +SKIP
        >>> engine.generate(prompt=prompt, image_data=[img],  # doctest: +SKIP
        ...                 sampling_params={"temperature": 0, "max_new_tokens": 8})["output_ids"]
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        device: str | None = None,
        dtype: Any = None,
        **ignored_engine_args: Any,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

        # Everything that can be refused is refused before a weight is read.
        self.model_path = os.fspath(model_path)
        self.family: ModelFamily = detect_family(model_path)
        if device is None and torch.cuda.is_available():
            device = "cuda"
        self.device = resolve_device(device)
        dtype = dtype if dtype == "auto" else resolve_dtype(dtype)
        if ignored_engine_args:
            print(
                "ReferenceEngine: ignoring SGLang-only engine arguments "
                f"{sorted(ignored_engine_args)} (the transformers reference engine has no use "
                "for them)"
            )
        self.ignored_engine_args = dict(ignored_engine_args)
        if dtype is None or (dtype == "auto" and self.device.type == "cpu"):
            dtype = torch.float32 if self.device.type == "cpu" else "auto"
        self._lock = threading.Lock()
        self.processor = AutoProcessor.from_pretrained(self.model_path)
        self.tokenizer = self.processor.tokenizer
        model: Any = AutoModelForImageTextToText.from_pretrained(self.model_path, dtype=dtype)
        self.model: Any = model.to(self.device).eval()
        self.dtype = self.model.dtype
        config = self.model.config
        text_config = config.get_text_config()
        self.hidden_size = int(text_config.hidden_size)
        self.vocab_size = int(text_config.vocab_size)
        self.image_token_id = self.family.embedding_token_id
        self.eos_token_ids = self._collect_eos_ids()
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else min(self.eos_token_ids, default=0)
        # Sampling comes from each request only, as in SGLang's native generate
        # (no eos here either: ignore_eos must be able to switch stopping off).
        self.model.generation_config = GenerationConfig(pad_token_id=self.pad_token_id)

    # ------------------------------------------------------------------ lifecycle

    def __repr__(self) -> str:
        state = "shut down" if self.model is None else f"{self.device}, {self.dtype}"
        return (
            f"<ReferenceEngine (transformers reference engine, not SGLang) "
            f"model_path={self.model_path!r} family={self.family.name!r} {state}>"
        )

    @property
    def is_shut_down(self) -> bool:
        """True once :meth:`shutdown` has freed the model."""
        return self.model is None

    def shutdown(self) -> None:
        """Free the model (idempotent), as ``sglang.Engine.shutdown`` frees the GPU.

        Example:
            >>> engine.shutdown()  # doctest: +SKIP
        """
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
            raise RuntimeError("this ReferenceEngine was shut down; start a new one")
        if unsupported:
            raise RequestFormatError(
                f"the transformers reference engine does not support {sorted(unsupported)}; "
                'it takes prompt/input_ids, image_data, sampling_params and rid (use backend="sglang" '
                "for the rest)"
            )
        requests, is_batch = self._normalize(prompt, input_ids, image_data, sampling_params, rid)
        # Check every request, load its images and run its processor before any forward pass.
        for req in requests:
            validate_image_data(
                req["image_data"] or None,
                input_ids=req["input_ids"],
                prompt=req["prompt"],
                hidden_size=self.hidden_size,
                vocab_size=self.vocab_size,
                family=self.family,
            )
        prepared = [(req, self._model_inputs(req)) for req in requests]
        with self._lock:
            outputs = [self._run(req, inputs) for req, inputs in prepared]
        return outputs if is_batch else outputs[0]

    def _normalize(
        self, prompt: Any, input_ids: Any, image_data: Any, sampling_params: Any, rid: Any
    ) -> tuple[list[dict[str, Any]], bool]:
        if (prompt is None) == (input_ids is None):
            raise RequestFormatError(
                "give exactly one of prompt= (text) or input_ids= (token ids), "
                f"got {'both' if prompt is not None else 'neither'}"
            )
        id_lists: list[Any]
        if prompt is not None:
            is_batch = isinstance(prompt, list)
            texts: list[Any] = prompt if is_batch else [prompt]
            if not texts or not all(isinstance(t, str) for t in texts):
                raise RequestFormatError(
                    f"prompt must be a str or a non-empty list of str, got {type(prompt).__name__}"
                )
            id_lists = [None] * len(texts)
        else:
            if hasattr(input_ids, "dim") and input_ids.dim() == 2 and input_ids.shape[0] > 1:
                input_ids = [row for row in input_ids]
            is_batch = _is_batch_of_ids(input_ids)
            raw = list(input_ids) if is_batch else [input_ids]
            id_lists = [validate_input_ids(x, vocab_size=self.vocab_size) for x in raw]
            texts = [None] * len(id_lists)
        n = len(texts)
        images = self._normalize_images(image_data, n, is_batch)
        params = self._normalize_sampling(sampling_params, n)
        if rid is None:
            rids = [uuid.uuid4().hex for _ in range(n)]
        elif isinstance(rid, str):
            rids = [rid] if n == 1 else [f"{rid}_{i}" for i in range(n)]
        elif isinstance(rid, list) and all(isinstance(r, str) for r in rid):
            rids = list(rid)
            if len(rids) != n:
                raise RequestFormatError(
                    f"rid has {len(rids)} entries for a batch of {n} requests; give one str per "
                    "request, one str for all, or leave rid out"
                )
        else:
            raise RequestFormatError(
                f"rid must be a str or a list of str (one per request), got {rid!r:.60}"
            )
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
            params: list[dict[str, Any]] = [{} for _ in range(n)]
        elif isinstance(sampling_params, Mapping):
            params = [dict(sampling_params) for _ in range(n)]
        elif isinstance(sampling_params, list):
            params = [{} if p is None else p for p in sampling_params]
            if len(params) != n:
                raise RequestFormatError(
                    f"sampling_params has {len(params)} entries for a batch of {n} requests; give "
                    "one dict per request, or one dict for all"
                )
        else:
            params = [sampling_params]
        for p in params:
            validate_sampling_params(p)
        params = [dict(p) for p in params]
        for p in params:
            extra = set(p) - SUPPORTED_SAMPLING_KEYS
            if extra:
                raise RequestFormatError(
                    f"the transformers reference engine does not implement sampling_params "
                    f"{sorted(extra)}; it supports {sorted(SUPPORTED_SAMPLING_KEYS)} "
                    '(use backend="sglang" for the others)'
                )
            if "max_new_tokens" in p and p["max_new_tokens"] is None:
                raise RequestFormatError(
                    "sampling_params['max_new_tokens'] is None (no limit), which the transformers "
                    "reference engine does not do; give an int, e.g. 16 (or leave it out: 128)"
                )
        # As SGLang's SamplingParams does, None stands for the default (temperature: greedy here).
        return [{k: v for k, v in p.items() if v is not None or k == "temperature"} for p in params]

    # ------------------------------------------------------------------ model inputs

    def _model_inputs(self, req: dict[str, Any]) -> dict[str, Any]:
        """Tensors for ``model.generate``: always ``input_ids``, plus the image inputs."""
        import torch

        items = req["image_data"]
        if items and isinstance(items[0], Mapping):
            return self._preprocessed_inputs(req["input_ids"], items[0])
        prompt = req["prompt"]
        if prompt is None and not items:  # text-only input_ids: used as they are, as SGLang does
            ids = torch.tensor([req["input_ids"]], dtype=torch.long)
            return self._finish_inputs({"input_ids": ids})
        if prompt is None:  # input_ids with raw images: SGLang decodes the ids back to text
            prompt = self.tokenizer.decode(req["input_ids"])
        images = [load_image(item) for item in items]
        validate_image_data(images or None, prompt=prompt)
        # As SGLang does: a prompt that starts with the BOS token gets no second one.
        bos = self.tokenizer.bos_token
        kwargs = {"add_special_tokens": False} if bos and prompt.startswith(bos) else {}
        inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt", **kwargs)
        out: dict[str, Any] = {"input_ids": inputs["input_ids"]}
        for key in self.family.generate_keys:
            if inputs.get(key) is not None:
                out[key] = inputs[key]
        return self._finish_inputs(out)

    def _preprocessed_inputs(self, ids: list[int], item: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        input_ids = torch.tensor([ids], dtype=torch.long)
        out: dict[str, Any] = {"input_ids": input_ids}
        grid_key = self.family.grid_key
        if grid_key is not None and item.get(grid_key) is not None:
            out[grid_key] = _as_tensor(item[grid_key], torch.long).reshape(-1, 3)
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
            for key in self.family.generate_keys:
                if key != grid_key and item.get(key) is not None:
                    out[key] = _as_tensor(item[key])
        return self._finish_inputs(out)

    def _finish_inputs(self, out: dict[str, Any]) -> dict[str, Any]:
        import torch

        input_ids = out["input_ids"]
        out["attention_mask"] = torch.ones_like(input_ids)
        if "pixel_values" in out:  # the Llama 4 processor hands out bfloat16 pixels
            out["pixel_values"] = out["pixel_values"].to(self.dtype)
        if self.family.mrope and self.family.grid_key in out:
            # Without mm_token_type_ids Qwen2.5-VL silently uses 1-D rope positions.
            out["mm_token_type_ids"] = (input_ids == self.image_token_id).to(torch.int)
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

    def _run(self, req: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        import torch

        start = time.perf_counter()
        params = req["sampling_params"]
        gen_config, stop_ids, greedy = self._generation_config(params)
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
        finish: dict[str, Any]
        if len(output_ids) >= max_new:
            finish = {"type": "length", "length": max_new}
        else:  # generate stops early only on a stop token
            finish = {"type": "stop", "matched": output_ids[-1] if output_ids else None}
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
    "SGLANG_SAMPLING_DEFAULTS",
    "SUPPORTED_SAMPLING_KEYS",
    "ReferenceEngine",
]
