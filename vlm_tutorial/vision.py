"""Load only the vision part of a VLM checkpoint and turn processor output into image embeddings.

:func:`load_vision_encoder` reads the vision weights, and nothing else, from a
checkpoint's safetensors: the tower ``visual.*`` of Qwen2.5-VL, or
``vision_model.*`` plus ``multi_modal_projector.*`` of Llama 4. It opens only
the shards that hold them (``model.safetensors.index.json`` says which) and
never builds the language model. The modules are transformers' own classes,
filled by transformers' own ``from_pretrained``. Any missing or unexpected
vision key raises :class:`~vlm_tutorial.errors.VisionWeightsError`, where
transformers alone would fill the gap with random weights and log a warning.

The returned :class:`VisionEncoder` maps a processor output to the tensor that
SGLang's ``precomputed_embedding`` format wants: one row per image placeholder
token, ``text_hidden_size`` columns.

For Qwen2.5-VL the encoder runs the tower's blocks itself with the loaded
weights (``attn="auto"``, :mod:`vlm_bench.qwen_tower`): windows of equal
length go through ``scaled_dot_product_attention`` as one batch, where
transformers 5.12.1 calls it once per window; ``attn="varlen"`` attends every
window in one variable-length call (CUDA), and ``compile=True`` fuses the
elementwise work with ``torch.compile``. ``attn="reference"`` runs
transformers' forward unchanged.

Example:
    >>> from vlm_tutorial.offline.tiny import tiny_model_path
    >>> encoder = load_vision_encoder(tiny_model_path("qwen2_5_vl"))  # doctest: +SKIP
    >>> embedding = encoder(processor(text=prompt, images=image, return_tensors="pt"))  # doctest: +SKIP
    >>> embedding.shape  # (number of <|image_pad|> tokens, text hidden size)  # doctest: +SKIP
    torch.Size([16, 64])
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, cast

import torch

from .errors import (
    CheckpointFileError,
    EmbeddingShapeError,
    ProcessorOutputError,
    UnknownModelFamilyError,
    VisionWeightsError,
)
from .families import FAMILIES, LLAMA4, QWEN2_5_VL, ModelFamily, detect_family
from vlm_bench.qwen_tower import QwenTower, check_attention, qwen_tower_forward

#: Checkpoint key prefixes of the vision weights, per family (from the family registry).
VISION_PREFIXES: dict[str, tuple[str, ...]] = {f.name: f.vision_prefixes for f in FAMILIES.values()}

#: The families whose tower this package can run itself (:mod:`vlm_bench.qwen_tower`).
FAST_TOWER_FAMILIES = frozenset({QWEN2_5_VL.name})

#: Values accepted by ``attn``: ``fast``, ``cudnn`` and ``varlen`` are the
#: Qwen2.5-VL fast tower's attention ``sdpa``, ``cudnn`` and ``varlen``
#: (:mod:`vlm_bench.qwen_tower`).
ATTN_MODES = ("auto", "fast", "cudnn", "varlen", "reference")
_FAST_ATTENTION = {"fast": "sdpa", "cudnn": "cudnn", "varlen": "varlen"}

_INDEX_FILE = "model.safetensors.index.json"
_SINGLE_FILE = "model.safetensors"
_CONFIG_FILE = "config.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
}
#: Bytes per element of the safetensors dtypes (for the byte counts only).
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip

#: What ``from_pretrained(..., output_loading_info=True)`` returns: the model and
#: its loading info (transformers' annotation names the model alone).
_WithLoadingInfo = tuple[torch.nn.Module, dict[str, Any]]

hf_hub_download: Callable[..., str] | None
try:  # at module level, so that tests can replace it
    from huggingface_hub import hf_hub_download
except ImportError:  # pragma: no cover - huggingface_hub is a dependency of transformers
    hf_hub_download = None


# --------------------------------------------------------------------------- checkpoint files


@dataclass(frozen=True)
class _VisionFiles:
    """Where a checkpoint's vision tensors are: key -> shard file name, plus byte counts.

    ``paths`` maps each shard name to its file, resolved and checked to lie
    inside the checkpoint folder.
    """

    folder: Path
    weight_map: dict[str, str]
    paths: dict[str, Path]
    tensor_bytes: int
    dtype: torch.dtype


def _is_hub_id(model_path: str | os.PathLike) -> bool:
    text = os.fspath(model_path)
    return not Path(text).exists() and bool(_REPO_ID.match(text))


def _read_json(path: Path) -> Any:
    """Parse the JSON file ``path``; a syntax error names the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointFileError(
            f"{str(path)!r} is not valid JSON ({exc}); the file is damaged or was cut short: "
            "download it again, or re-save the checkpoint with save_pretrained"
        ) from exc


def _read_index(index: Path) -> dict[str, str]:
    """The ``weight_map`` of ``model.safetensors.index.json``, checked to map names to shard names."""
    content = _read_json(index)
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(key, str) and isinstance(name, str) for key, name in weight_map.items()
    ):
        raise CheckpointFileError(
            f"{str(index)!r} has no 'weight_map' object mapping tensor names to shard file "
            "names; download it again, or re-save the checkpoint with save_pretrained"
        )
    for key, name in weight_map.items():
        _check_shard_name(name, key, index)
    return dict(weight_map)


def _check_shard_name(name: str, key: str, index: Path) -> None:
    """Refuse an index entry that is not a relative path inside the checkpoint folder."""
    pure = PurePosixPath(name)
    inside = (
        bool(name)
        and not pure.is_absolute()
        and ".." not in pure.parts
        and "\\" not in name  # a Windows separator, as in "..\\x"
        and not PureWindowsPath(name).drive
    )
    if not inside:
        raise CheckpointFileError(
            f"{str(index)!r} places tensor {key!r} in {name!r}, which is not a file inside the "
            "checkpoint folder (shard names must be relative, without '..'); refusing to read "
            "it. Download the index again from the model's source"
        )


def _inside_roots(folder: Path) -> tuple[Path, ...]:
    """Folders a checkpoint file may resolve into: the checkpoint folder, and for a
    huggingface_hub cache snapshot (``models--org--name/snapshots/<revision>``),
    the repository's ``blobs`` folder its links point to."""
    root = folder.resolve()
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        return root, root.parent.parent / "blobs"
    return (root,)


def _checked_file(folder: Path, name: str, listed_in: str | None = None) -> Path:
    """``folder / name`` resolved, refused unless it lies inside the checkpoint folder."""
    path = (folder / name).resolve()
    if not any(path.is_relative_to(root) for root in _inside_roots(folder)):
        where = f", listed in {listed_in}," if listed_in else ""
        raise CheckpointFileError(
            f"{name!r}{where} is a link to {str(path)!r}, outside the checkpoint folder "
            f"{str(folder)!r}; refusing to read it. Copy the file into the checkpoint folder "
            "instead of linking it"
        )
    return path


def _tensor_infos(path: Path) -> dict[str, tuple[str, int]]:
    """``{name: (dtype, bytes)}`` for every tensor of a safetensors file, from its header only.

    ``safe_open`` parses the header, refusing a header length over its own
    limit (100 MB) or past the end of the file; no tensor data is read.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            infos = {}
            for key in f.keys():  # noqa: SIM118 (a safe_open handle, not a dict)
                view = f.get_slice(key)
                dtype = view.get_dtype()
                infos[key] = (dtype, math.prod(view.get_shape()) * _DTYPE_BYTES.get(dtype, 0))
            return infos
    except (SafetensorError, OSError) as exc:
        raise CheckpointFileError(
            f"{str(path)!r} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
            "it is damaged or was cut short: download it again, or re-save the checkpoint "
            "with save_pretrained(..., safe_serialization=True)"
        ) from exc


def _weight_map(folder: Path) -> tuple[dict[str, str], str | None]:
    """Map every tensor name of the checkpoint in ``folder`` to the file that holds it.

    Returns the map and the index file that lists the shards (None for a
    single ``model.safetensors``).
    """
    index = folder / _INDEX_FILE
    if index.is_file():
        return _read_index(_checked_file(folder, _INDEX_FILE)), repr(str(index))
    single = folder / _SINGLE_FILE
    if single.is_file():
        return dict.fromkeys(_tensor_infos(_checked_file(folder, _SINGLE_FILE)), _SINGLE_FILE), None
    raise VisionWeightsError(
        f"no safetensors weights in {str(folder)!r}: expected {_INDEX_FILE} or {_SINGLE_FILE}; "
        "save the model with save_pretrained(..., safe_serialization=True)"
    )


def _vision_keys(weight_map: Mapping[str, str], family: ModelFamily) -> dict[str, str]:
    return {k: v for k, v in weight_map.items() if k.startswith(family.vision_prefixes)}


def _vision_files(folder: Path, family: ModelFamily) -> _VisionFiles:
    """Find the vision tensors of ``folder`` and read the headers of the shards holding them."""
    weight_map, listed_in = _weight_map(folder)
    vision_map = _vision_keys(weight_map, family)
    if not vision_map:
        raise VisionWeightsError(
            f"{str(folder)!r} holds no vision weights: no tensor name starts with "
            f"{' or '.join(family.vision_prefixes)}; is this a text-only export of a "
            f"{family.name} model?"
        )
    tensor_bytes = 0
    dtypes: Counter[torch.dtype] = Counter()
    paths: dict[str, Path] = {}
    for shard in sorted(set(vision_map.values())):
        if not (folder / shard).is_file():
            raise VisionWeightsError(
                f"shard {shard!r} listed in {_INDEX_FILE} for vision weights is missing from "
                f"{str(folder)!r}; download it again"
            )
        paths[shard] = _checked_file(folder, shard, listed_in)
        infos = _tensor_infos(paths[shard])
        for key, file in vision_map.items():
            if file != shard:
                continue
            if key not in infos:
                raise VisionWeightsError(
                    f"{_INDEX_FILE} places vision weight {key!r} in {shard!r}, but that file "
                    "does not hold it: the index and the shards disagree"
                )
            dtype_name, size = infos[key]
            tensor_bytes += size
            dtype = _SAFETENSORS_DTYPES.get(dtype_name)
            if dtype is not None:
                dtypes[dtype] += size
    dtype = dtypes.most_common(1)[0][0] if dtypes else torch.float32
    return _VisionFiles(folder, vision_map, paths, tensor_bytes, dtype)


def _checkpoint_family(folder: Path) -> ModelFamily:
    """The family named by ``folder/config.json``; a damaged config names the file."""
    _read_json(_checked_file(folder, _CONFIG_FILE))
    return detect_family(folder)


def _download_vision_files(repo_id: str, revision: str | None) -> Path:
    """Download config, index and only the shards holding vision weights; return the local folder."""
    if hf_hub_download is None:  # pragma: no cover
        raise ImportError(
            "downloading from the hub needs huggingface_hub: pip install huggingface_hub"
        )

    from huggingface_hub.errors import EntryNotFoundError

    def fetch(filename: str) -> Path:
        return Path(hf_hub_download(repo_id, filename, revision=revision))

    try:
        folder = fetch(_CONFIG_FILE).parent
    except Exception as exc:
        raise OSError(
            f"{repo_id!r} is not a local folder, and fetching its config.json from the hub "
            f"failed ({type(exc).__name__}: {exc}); check the path, or the id and your network"
        ) from exc
    family = _checkpoint_family(folder)  # fail on a non-VLM before fetching any weights
    try:
        index = fetch(_INDEX_FILE)
    except EntryNotFoundError:  # a single-file checkpoint has no index
        fetch(_SINGLE_FILE)
        return folder
    weight_map = _read_index(index)  # shard names are checked before any is fetched
    for shard in sorted(set(_vision_keys(weight_map, family).values())):
        fetch(shard)
    return folder


@contextlib.contextmanager
def _staged_checkpoint(files: _VisionFiles, config_dir: Path) -> Iterator[Path]:
    """A temporary folder that shows ``from_pretrained`` only the vision shards.

    It holds ``config.json`` and links to the shards with vision weights, with an
    index listing only the vision keys, so transformers opens no other shard.
    Every link is inside the temporary folder and points to a file checked to
    lie inside the checkpoint folder.
    """
    with tempfile.TemporaryDirectory(prefix="vision-") as tmp:
        stage = Path(tmp)
        config = _checked_file(config_dir, _CONFIG_FILE)
        os.symlink(config, stage / _CONFIG_FILE)
        for shard, path in files.paths.items():
            link = stage / shard
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, link)
        if set(files.weight_map.values()) != {_SINGLE_FILE}:
            index = {"metadata": {}, "weight_map": files.weight_map}
            (stage / _INDEX_FILE).write_text(json.dumps(index))
        yield stage


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report; this module checks the keys itself and raises."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _check_keys(found: set[str], expected: set[str], where: str) -> None:
    """Raise :class:`VisionWeightsError` unless the checkpoint keys equal the module's keys."""
    missing = sorted(expected - found)
    unexpected = sorted(found - expected)
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} vision weight(s): {', '.join(missing[:8])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected vision weight(s): {', '.join(unexpected[:8])}")
    raise VisionWeightsError(
        f"{where}: {'; '.join(parts)}. The checkpoint does not match the architecture in its "
        "config.json; refusing to fill the gap with random weights. Re-download or re-export "
        "the checkpoint."
    )


def _check_loading_info(info: Mapping[str, Any], folder: Path) -> None:
    """Second line of defence: what ``from_pretrained`` itself reports as not loaded."""
    problems = {k: sorted(map(str, info.get(k) or ())) for k in ("missing_keys", "mismatched_keys")}
    if any(problems.values()):
        raise VisionWeightsError(
            f"{str(folder)!r}: transformers could not load every vision weight: {problems}"
        )


def _module_keys(cls: type, config: Any) -> set[str]:
    """State-dict keys of ``cls(config)``, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        module = cls(config)
    return set(module.state_dict())


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


# --------------------------------------------------------------------------- the encoder


class VisionEncoder:
    """A vision tower (plus projector) that turns processor output into image embeddings.

    Call it with what the model's processor returned (``pixel_values``, and
    ``image_grid_thw`` for Qwen2.5-VL). It returns a ``(num_image_tokens,
    text_hidden_size)`` tensor on :attr:`device`, in :attr:`dtype`.

    Attributes:
        family: the :class:`~vlm_tutorial.families.ModelFamily`.
        device: where the weights live.
        dtype: the precision of the weights (the checkpoint's unless asked otherwise).
        text_hidden_size: the language model's hidden size (embedding width).
        image_token_id: the token repeated once per embedding row in ``input_ids``.
        vision_parameters: number of parameters loaded.
        files_read: the shard files opened, relative to the checkpoint folder.
        bytes_read: bytes of vision tensors read from them.
        shard_bytes: total size of the shard files opened.
        attn: ``"fast"``, ``"cudnn"``, ``"varlen"`` or ``"reference"`` (the attention path in use).
        compiled: whether the tower runs through ``torch.compile`` (Qwen2.5-VL: the
            fast tower's steps; Llama 4: each encoder layer).
        pixel_shape: the shape of ``pixel_values`` after its first dimension, as
            this checkpoint's processor makes it (``None``: not checked).

    Example:
        >>> encoder = load_vision_encoder(path)  # doctest: +SKIP
        >>> encoder(processor(text=prompt, images=image, return_tensors="pt")).shape  # doctest: +SKIP
        torch.Size([16, 64])
    """

    def __init__(
        self,
        *,
        family: ModelFamily,
        tower: torch.nn.Module,
        projector: torch.nn.Module | None,
        text_hidden_size: int,
        image_token_id: int,
        attn: str,
        files_read: list[str],
        bytes_read: int,
        shard_bytes: int,
        pixel_shape: tuple[int, ...] | None = None,
        compile: bool = False,
    ) -> None:
        self.family = family
        self.tower = tower
        self.projector = projector
        self.text_hidden_size = text_hidden_size
        self.image_token_id = image_token_id
        self.attn = attn
        self.files_read = files_read
        self.bytes_read = bytes_read
        self.shard_bytes = shard_bytes
        self.pixel_shape = pixel_shape
        self.compiled = compile
        self._fast = (
            QwenTower(tower, attention=_FAST_ATTENTION[attn], compile=compile)
            if attn in _FAST_ATTENTION
            else None
        )
        if compile and self._fast is None:
            _compile_layers(tower)
        modules = [tower] + ([projector] if projector is not None else [])
        self.vision_parameters = sum(p.numel() for m in modules for p in m.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.tower.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.tower.parameters()).dtype

    def __repr__(self) -> str:
        return (
            f"VisionEncoder(family={self.family.name!r}, device={str(self.device)!r}, "
            f"dtype={self.dtype}, attn={self.attn!r}, compiled={self.compiled}, "
            f"vision_parameters={self.vision_parameters})"
        )

    def __call__(self, processor_output: Mapping[str, Any]) -> torch.Tensor:
        """Embed the images of ``processor_output``; one row per image placeholder token."""
        if not isinstance(processor_output, Mapping):
            raise TypeError(
                f"expected the processor's output (a BatchFeature or dict with 'pixel_values'), "
                f"got {type(processor_output).__name__}"
            )
        if "pixel_values" not in processor_output:
            raise ProcessorOutputError(
                f"processor output has no 'pixel_values' (keys: {sorted(processor_output)}); "
                "call the processor with images=..."
            )
        pixel_values = torch.as_tensor(processor_output["pixel_values"])
        self._check_processor_output(pixel_values, processor_output)
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            if self.projector is None:  # Qwen2.5-VL: the merger inside the tower projects
                embedding = self._qwen(pixel_values, processor_output)
            else:  # Llama 4: the vision model, then the multi-modal projector
                features = self.tower(pixel_values).last_hidden_state
                embedding = self.projector(features.flatten(0, -2))
        self._check_rows(embedding, processor_output)
        return embedding

    def _check_processor_output(
        self, pixel_values: torch.Tensor, processor_output: Mapping[str, Any]
    ) -> None:
        """Refuse pixels shaped for another model, and an ``image_grid_thw`` that does not fit them."""
        fix = (
            "make it with this checkpoint's processor (AutoProcessor.from_pretrained of the "
            "path given to load_vision_encoder) and pass its whole output"
        )
        shape = tuple(pixel_values.shape)
        if self.pixel_shape is not None and shape[1:] != self.pixel_shape:
            expected = ", ".join(map(str, ("n", *self.pixel_shape)))
            raise ProcessorOutputError(
                f"pixel_values has shape {shape}, but this {self.family.name} encoder takes "
                f"({expected}): was it made by another model's processor? Fix: {fix}"
            )
        if "image_grid_thw" not in self.family.embedding_extra_keys:
            return
        grid = processor_output.get("image_grid_thw")
        if grid is None:
            raise ProcessorOutputError(
                f"{self.family.name} processor output needs 'image_grid_thw' beside "
                f"'pixel_values' (keys given: {sorted(processor_output)}); {fix}"
            )
        grid = torch.as_tensor(grid)
        merge = int(getattr(self.tower, "spatial_merge_size", 1))
        problem = None
        if grid.ndim != 2 or grid.shape[1] != 3 or grid.is_floating_point() or grid.is_complex():
            problem = f"must be integers of shape (images, 3), got {grid.dtype} {tuple(grid.shape)}"
        elif bool((grid <= 0).any()):
            problem = f"must be positive, got {grid.tolist()}"
        elif bool((grid[:, 1:] % merge).any()):
            problem = f"heights and widths must be multiples of {merge}, got {grid.tolist()}"
        elif int(grid.prod(-1).sum()) != shape[0]:
            problem = (
                f"says {int(grid.prod(-1).sum())} patches in all ({grid.tolist()}), but "
                f"pixel_values holds {shape[0]} rows"
            )
        if problem:
            raise ProcessorOutputError(f"image_grid_thw {problem}; {fix}")

    def _qwen(
        self, pixel_values: torch.Tensor, processor_output: Mapping[str, Any]
    ) -> torch.Tensor:
        grid_thw = processor_output.get("image_grid_thw")
        if grid_thw is None:
            raise ValueError(
                "Qwen2.5-VL processor output needs 'image_grid_thw' beside 'pixel_values'; "
                "pass the processor's whole output"
            )
        grid_thw = torch.as_tensor(grid_thw).to(self.device)
        if self._fast is not None:
            return self._fast(pixel_values, grid_thw)
        pooled = self.tower(pixel_values, grid_thw=grid_thw).pooler_output
        return torch.cat(pooled) if isinstance(pooled, (tuple, list)) else pooled

    def _check_rows(self, embedding: torch.Tensor, processor_output: Mapping[str, Any]) -> None:
        input_ids = processor_output.get("input_ids")
        if input_ids is None:
            return
        expected = int((torch.as_tensor(input_ids) == self.image_token_id).sum())
        if expected != embedding.shape[0]:
            raise EmbeddingShapeError(
                f"the images give {embedding.shape[0]} embedding rows but input_ids holds "
                f"{expected} {self.family.embedding_token} tokens (id {self.image_token_id}); was "
                "this processor output made by this checkpoint's processor?"
            )


def _compile_layers(tower: torch.nn.Module) -> None:
    """``torch.compile`` each encoder layer of ``tower`` (``tower.model.layers``, Llama 4's).

    The layers share their code, so one compiled graph serves them all
    (regional compilation): far shorter to compile than the whole tower.
    """
    layers = getattr(getattr(tower, "model", None), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(
            f"compile=True: {type(tower).__name__} has no encoder layers at .model.layers"
        )
    for layer in layers:
        layer.compile()


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype={dtype!r} is not a floating-point torch dtype; try torch.bfloat16")
    return resolved


def _load_qwen(
    files: _VisionFiles, stage: Path, config: Any, dtype: torch.dtype
) -> torch.nn.Module:
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VisionTransformerPretrainedModel as Tower,
    )

    found = {_strip(k, QWEN2_5_VL.vision_prefixes) for k in files.weight_map}
    _check_keys(found, _module_keys(Tower, config.vision_config), f"{str(files.folder)!r}")
    with _quiet_transformers():
        tower, info = cast(
            _WithLoadingInfo,
            Tower.from_pretrained(
                stage,
                config=config.vision_config,
                key_mapping={r"^model\.visual\.": "", r"^visual\.": ""},
                dtype=dtype,
                output_loading_info=True,
            ),
        )
    _check_loading_info(info, files.folder)
    return tower


def _load_llama4(
    files: _VisionFiles, stage: Path, config: Any, dtype: torch.dtype
) -> tuple[torch.nn.Module, torch.nn.Module]:
    from safetensors import safe_open
    from transformers.models.llama4.modeling_llama4 import (
        Llama4MultiModalProjector,
        Llama4VisionModel,
    )

    tower_keys = {k for k in files.weight_map if k.startswith("vision_model.")}
    proj_keys = {k for k in files.weight_map if k.startswith("multi_modal_projector.")}
    where = f"{str(files.folder)!r}"
    _check_keys(
        {k.removeprefix("vision_model.") for k in tower_keys},
        _module_keys(Llama4VisionModel, config.vision_config),
        where,
    )
    projector_expected = _module_keys(Llama4MultiModalProjector, config)
    _check_keys(
        {k.removeprefix("multi_modal_projector.") for k in proj_keys}, projector_expected, where
    )

    # Built by from_pretrained directly in ``dtype``: ``.to(dtype=...)`` afterwards
    # would drop the imaginary part of the complex rotary buffer ``freqs_ci``.
    with _quiet_transformers():
        tower, info = cast(
            _WithLoadingInfo,
            Llama4VisionModel.from_pretrained(
                stage,
                config=config.vision_config,
                key_mapping={r"^vision_model\.": ""},
                dtype=dtype,
                output_loading_info=True,
            ),
        )
    _check_loading_info(info, files.folder)

    projector = Llama4MultiModalProjector(config).to(dtype)  # plain Linear layers: safe to cast
    state = {}
    by_shard: dict[str, list[str]] = {}
    for key in sorted(proj_keys):
        by_shard.setdefault(files.weight_map[key], []).append(key)
    for shard, keys in by_shard.items():
        with safe_open(str(files.paths[shard]), framework="pt") as f:
            for key in keys:
                state[key.removeprefix("multi_modal_projector.")] = f.get_tensor(key).to(dtype)
    projector.load_state_dict(state, strict=True)
    projector.eval()
    return tower, projector


def _qwen_vision(
    files: _VisionFiles, stage: Path, config: Any, dtype: torch.dtype
) -> tuple[torch.nn.Module, torch.nn.Module | None, tuple[int, ...]]:
    vision = config.vision_config
    # One pixel_values row per patch: channels x frames x patch x patch values.
    rows = (vision.in_channels * vision.temporal_patch_size * vision.patch_size**2,)
    return _load_qwen(files, stage, config, dtype), None, rows


def _llama4_vision(
    files: _VisionFiles, stage: Path, config: Any, dtype: torch.dtype
) -> tuple[torch.nn.Module, torch.nn.Module | None, tuple[int, ...]]:
    vision = config.vision_config
    tower, projector = _load_llama4(files, stage, config, dtype)
    return tower, projector, (vision.num_channels, vision.image_size, vision.image_size)  # tiles


#: Per family: load the vision modules; return (tower, projector or None, pixel_values shape).
_LOADERS = {QWEN2_5_VL.name: _qwen_vision, LLAMA4.name: _llama4_vision}


def load_vision_encoder(
    model_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    *,
    attn: str = "auto",
    compile: bool = False,
    revision: str | None = None,
) -> VisionEncoder:
    """Load only the vision weights of a Qwen2.5-VL or Llama 4 checkpoint.

    Args:
        model_path: a checkpoint folder, or a hub id (then only ``config.json``,
            the index and the shards holding vision weights are downloaded).
        device: where to put the weights (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        dtype: weight dtype; ``None`` keeps the checkpoint's.
        attn: ``"auto"`` (batched window attention for Qwen2.5-VL, transformers'
            forward for Llama 4), ``"fast"`` (Qwen2.5-VL only), ``"cudnn"``
            (the same on CUDA, with SDPA's cuDNN kernels), ``"varlen"``
            (Qwen2.5-VL on CUDA, bfloat16 or float16: one variable-length
            attention call per block) or ``"reference"`` (transformers' forward
            unchanged).
        compile: ``torch.compile`` the encoder (fused elementwise work): the
            Qwen2.5-VL fast tower's steps, or Llama 4's encoder layers. The first
            call of a process compiles (tens of seconds). Equal to the eager
            encoder to rounding, not bit for bit.
        revision: hub revision, for hub ids.

    Only files inside the checkpoint folder are read: an index entry with
    ``..`` or an absolute name, or a link leading out of the folder, is
    refused (links of a huggingface_hub cache snapshot to its ``blobs``
    folder are fine). Headers are read with ``safetensors.safe_open``.

    Raises:
        UnknownModelFamilyError: not a Qwen2.5-VL or Llama 4 checkpoint.
        VisionWeightsError: vision weights missing, incomplete or unexpected.
        CheckpointFileError: a damaged ``config.json``, index or safetensors
            header, or a file outside the checkpoint folder.
        ValueError: ``device`` is a GPU but none is visible (checked before
            any file is read), or a bad ``attn`` or ``dtype``.

    Example:
        >>> encoder = load_vision_encoder("Qwen/Qwen2.5-VL-3B-Instruct", device="cuda")  # doctest: +SKIP
        >>> encoder.files_read  # doctest: +SKIP
        ['model-00001-of-00002.safetensors']
    """
    from transformers import AutoConfig

    if attn not in ATTN_MODES:
        raise ValueError(f"attn={attn!r} is not one of {ATTN_MODES}")
    target_dtype = _resolve_dtype(dtype)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} but torch sees no CUDA GPU here; use device='cpu'"
        )

    if _is_hub_id(model_path):
        folder = _download_vision_files(os.fspath(model_path), revision)
    else:
        folder = Path(model_path)
        if not (folder / _CONFIG_FILE).is_file():
            raise UnknownModelFamilyError(
                f"{os.fspath(model_path)!r} is not a checkpoint folder (no config.json there) nor a "
                "hub id like 'Qwen/Qwen2.5-VL-3B-Instruct'; pass a folder written by save_pretrained"
            )
    family = _checkpoint_family(folder)
    fast_tower = family.name in FAST_TOWER_FAMILIES
    if attn in _FAST_ATTENTION and not fast_tower:
        raise ValueError(
            f"attn={attn!r} exists for Qwen2.5-VL only, not {family.name}; use attn='auto'"
        )
    mode = "fast" if fast_tower and attn == "auto" else attn
    mode = "reference" if mode == "auto" else mode
    if compile and mode == "reference" and fast_tower:
        raise ValueError(
            "compile=True compiles the Qwen2.5-VL fast tower, and attn='reference' runs "
            "transformers' forward instead: use attn='auto' (or 'fast', 'cudnn', 'varlen')"
        )

    files = _vision_files(folder, family)
    load_dtype = target_dtype or files.dtype
    if mode in _FAST_ATTENTION:
        check_attention(_FAST_ATTENTION[mode], device, load_dtype)
    config = AutoConfig.from_pretrained(folder)
    shards = sorted(set(files.weight_map.values()))
    with _staged_checkpoint(files, folder) as stage:
        tower, projector, pixel_shape = _LOADERS[family.name](files, stage, config, load_dtype)
    # Move only the device: the dtype is already right (see _load_llama4).
    tower.to(device=device).eval()
    if projector is not None:
        projector.to(device=device)
    return VisionEncoder(
        family=family,
        tower=tower,
        projector=projector,
        text_hidden_size=config.text_config.hidden_size,
        image_token_id=family.embedding_token_id,
        attn=mode,
        compile=compile,
        files_read=shards,
        bytes_read=files.tensor_bytes,
        shard_bytes=sum(files.paths[s].stat().st_size for s in shards),
        pixel_shape=pixel_shape,
    )


__all__ = [
    "ATTN_MODES",
    "VISION_PREFIXES",
    "VisionEncoder",
    "load_vision_encoder",
    "qwen_tower_forward",
]
