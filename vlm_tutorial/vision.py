"""Load only the vision part of a VLM checkpoint and turn processor output into image embeddings.

Only the vision tensors are read, from the shards ``model.safetensors.index.json`` names for them
(for Llama 4 Scout about 1 GB instead of over 200 GB), into the checkpoint's own transformers
classes: the embedding is what the full model computes.
"""

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from .errors import (
    CheckpointFileError,
    EmbeddingShapeError,
    ProcessorOutputError,
    VisionWeightsError,
)
from .families import ModelFamily, detect_family, is_hub_id

_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"
_RESAVE = "download it again, or re-save the checkpoint with save_pretrained"


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A floating-point torch dtype from a dtype or its name (``"bfloat16"``); None stays None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype={dtype!r} is not a floating-point torch dtype; try 'bfloat16'")
    return resolved


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A torch device (None: the CPU); a CUDA device is refused when torch sees no GPU."""
    resolved = torch.device("cpu" if device is None else device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(resolved)!r}, but torch sees no CUDA GPU here; use 'cpu'")
    return resolved


def _open(path: Path) -> Any:
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(str(path), framework="pt")
    except (SafetensorError, OSError) as exc:
        raise CheckpointFileError(
            f"{str(path)!r} is not a readable safetensors file ({exc}); {_RESAVE}"
        ) from exc


def _vision_shards(folder: Path, family: ModelFamily) -> dict[str, str]:
    index = folder / _INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (ValueError, AttributeError) as exc:  # not JSON, or not a JSON object
            raise CheckpointFileError(f"{str(index)!r} is not valid: {exc}; {_RESAVE}") from None
        if not isinstance(weight_map, dict):
            raise CheckpointFileError(f"{str(index)!r} has no 'weight_map' object; {_RESAVE}")
        for key, name in weight_map.items():
            pure = PurePosixPath(str(name).replace("\\", "/"))
            if not isinstance(name, str) or not name or pure.is_absolute() or ".." in pure.parts:
                raise CheckpointFileError(
                    f"{str(index)!r} places {key!r} in {name!r}, which is not a file inside the "
                    "checkpoint folder (names must be relative, without '..'); refusing to read "
                    "it. Download the index again from the model's source"
                )
    elif (folder / _SINGLE).is_file():
        with _open(folder / _SINGLE) as f:
            weight_map = dict.fromkeys(f.keys(), _SINGLE)
    else:
        raise VisionWeightsError(f"no {_INDEX} or {_SINGLE} in {str(folder)!r}; {_RESAVE}")
    vision = {k: v for k, v in weight_map.items() if k.startswith(family.vision_prefixes)}
    if not vision:
        raise VisionWeightsError(
            f"{str(folder)!r} holds no vision weights (no tensor name starts with "
            f"{' or '.join(family.vision_prefixes)}): is it a text-only export?"
        )
    return vision


def _read_tensors(folder: Path, shards: Mapping[str, str]) -> dict[str, torch.Tensor]:
    tensors = {}
    for shard in sorted(set(shards.values())):
        with _open(folder / shard) as f:
            for key in (k for k, v in shards.items() if v == shard):
                if key not in f.keys():  # noqa: SIM118 (a safe_open handle has no __contains__)
                    raise VisionWeightsError(
                        f"{_INDEX} of {str(folder)!r} places {key!r} in {shard!r}, which does "
                        f"not hold it; {_RESAVE}"
                    )
                tensors[key] = f.get_tensor(key)
    return tensors


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    def fetch(filename: str) -> Path:
        return Path(hf_hub_download(repo_id, filename, revision=revision))

    family = detect_family(repo_id)  # a clear error for a bad id, before any weights
    folder = fetch("config.json").parent
    try:
        fetch(_INDEX)
    except EntryNotFoundError:  # a single-file checkpoint has no index
        fetch(_SINGLE)
        return folder
    for shard in sorted(set(_vision_shards(folder, family).values())):
        fetch(shard)
    return folder


def _strip(tensors: dict[str, torch.Tensor], *prefixes: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(p): v for k, v in tensors.items() for p in prefixes if k.startswith(p)}


def _pretrained(cls: Any, config: Any, state: dict[str, torch.Tensor], dtype: torch.dtype) -> Any:
    """``cls.from_pretrained`` from ``state``, quietly; weights that do not fit the config raise."""
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        module, info = cls.from_pretrained(
            None,
            config=config,
            state_dict=state,
            dtype=dtype,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported in info, and refused below
        )
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()
    kinds = {"missing_keys": "missing", "unexpected_keys": "unexpected", "mismatched_keys": "shape"}
    if found := [f"{kinds[k]}: {sorted(map(str, info[k]))[:8]}" for k in kinds if info.get(k)]:
        raise VisionWeightsError(
            f"the {cls.__name__} weights do not fit the checkpoint's config.json "
            f"({'; '.join(found)}); refusing to fill the gap with random weights: {_RESAVE}"
        )
    return module


class Llama4Vision(torch.nn.Module):
    """Llama 4's ``vision_model`` and ``multi_modal_projector``, named as in the full model."""

    def __init__(self, vision_model: torch.nn.Module, multi_modal_projector: torch.nn.Module):
        super().__init__()
        self.vision_model = vision_model
        self.multi_modal_projector = multi_modal_projector


class VisionEncoder:
    """The checkpoint's vision module, called on a processor output: one row per image token.

    ``module`` is the transformers module (for Llama 4 a :class:`Llama4Vision`);
    ``text_hidden_size`` is the embedding's width; ``device`` and ``dtype`` are the weights'.
    """

    def __init__(self, family: ModelFamily, module: torch.nn.Module, text_hidden_size: int):
        self.family, self.module, self.text_hidden_size = family, module, text_hidden_size
        vision: Any = getattr(module, "vision_model", module).config
        self.pixel_shape = (  # one row per patch (Qwen2.5-VL), or per tile (Llama 4)
            (vision.in_channels * vision.temporal_patch_size * vision.patch_size**2,)
            if family.grid_key is not None
            else (vision.num_channels, vision.image_size, vision.image_size)
        )

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    def __call__(self, processor_output: Mapping[str, Any]) -> torch.Tensor:
        """Embed the images of ``processor_output``, the processor's whole output."""
        fix = "make it with this checkpoint's processor and pass its whole output"
        if not isinstance(processor_output, Mapping) or "pixel_values" not in processor_output:
            raise ProcessorOutputError(f"no 'pixel_values' in the processor output given; {fix}")
        pixels = torch.as_tensor(processor_output["pixel_values"])
        if tuple(pixels.shape[1:]) != self.pixel_shape:
            raise ProcessorOutputError(
                f"pixel_values has shape {tuple(pixels.shape)}, but the {self.family.name} encoder "
                f"takes (n, {', '.join(map(str, self.pixel_shape))}): another model's output? {fix}"
            )
        pixels = pixels.to(self.device, self.dtype)  # Llama 4's processor gives bfloat16
        module: Any = self.module
        with torch.inference_mode():
            if self.family.grid_key is None:
                features = module.vision_model(pixels).last_hidden_state
                embedding = module.multi_modal_projector(features.flatten(0, -2))
            else:
                grid = self._grid(processor_output, len(pixels), fix)
                embedding = module(pixels, grid_thw=grid).pooler_output
        ids, token = processor_output.get("input_ids"), self.family.embedding_token_id
        tokens = len(embedding) if ids is None else int((torch.as_tensor(ids) == token).sum())
        if tokens != len(embedding):
            raise EmbeddingShapeError(
                f"the images give {len(embedding)} embedding rows, but input_ids holds {tokens} "
                f"{self.family.embedding_token} tokens; {fix}"
            )
        return embedding

    def _grid(self, processor_output: Mapping[str, Any], rows: int, fix: str) -> torch.Tensor:
        key, merge = str(self.family.grid_key), self.family.spatial_merge_size or 1
        value = processor_output.get(key)
        grid = torch.as_tensor([] if value is None else value)
        if (
            grid.ndim != 2
            or grid.shape[1] != 3
            or grid.is_floating_point()
            or bool((grid <= 0).any() or (grid[:, 1:] % merge).any())
            or int(grid.prod(-1).sum()) != rows
        ):
            raise ProcessorOutputError(
                f"{key} must be one positive integer (t, h, w) row per image, h and w multiples of "
                f"{merge}, with t*h*w summing to the {rows} rows of pixel_values; got "
                f"{value!r}; {fix}"
            )
        return grid.to(self.device)


def load_vision_encoder(
    model_path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
) -> VisionEncoder:
    """Load only the vision weights of a Qwen2.5-VL or Llama 4 checkpoint folder or hub id.

    >>> encoder = load_vision_encoder("Qwen/Qwen2.5-VL-3B-Instruct", device="cuda")  # doctest: +SKIP
    >>> encoder(processor(text=prompt, images=[image], return_tensors="pt")).shape  # doctest: +SKIP
    torch.Size([192, 2048])
    """
    from transformers import AutoConfig

    target_dtype, target_device = resolve_dtype(dtype), resolve_device(device)
    text = os.fspath(model_path)
    folder = _download(text, revision) if is_hub_id(text) else Path(text)
    family = detect_family(folder)
    config = AutoConfig.from_pretrained(folder)
    tensors = _read_tensors(folder, _vision_shards(folder, family))
    dtype = target_dtype or next(t.dtype for t in tensors.values() if t.is_floating_point())
    # Built in the target dtype, never cast after: Module.to(dtype=...) drops the imaginary part
    # of Llama 4's complex freqs_ci buffer (and building on the meta device loses it).
    module: torch.nn.Module
    if family.grid_key is not None:  # Qwen2.5-VL: hub keys visual.*, in memory model.visual.*
        from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen

        state = _strip(tensors, *family.vision_prefixes)
        module = _pretrained(
            qwen.Qwen2_5_VisionTransformerPretrainedModel, config.vision_config, state, dtype
        )
    else:
        from transformers.models.llama4 import modeling_llama4 as llama4

        tower = _pretrained(
            llama4.Llama4VisionModel, config.vision_config, _strip(tensors, "vision_model."), dtype
        )
        projector = llama4.Llama4MultiModalProjector(config).to(dtype)  # Linear layers: safe
        try:
            projector.load_state_dict(_strip(tensors, "multi_modal_projector."))
        except RuntimeError as exc:  # missing, unexpected or mis-shaped weights
            raise VisionWeightsError(f"{str(folder)!r}: {exc}; {_RESAVE}") from exc
        module = Llama4Vision(tower, projector)
    module.to(device=target_device).eval()  # the device only: the dtype is already right
    return VisionEncoder(family, module, config.text_config.hidden_size)
