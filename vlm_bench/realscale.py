"""Real-size model folders without the real weights: configs, tokenizers, random checkpoints.

No model hub is reachable here, so the benchmark builds real-scale stand-ins
from the published configuration values:

* :data:`QWEN2_5_VL_3B`: ``config.json`` of ``Qwen/Qwen2.5-VL-3B-Instruct``
  (text: hidden 2048, 36 layers, 16 heads, 2 KV heads, MLP 11008, vocabulary
  151936, tied embeddings; vision: 32 blocks of width 1280, MLP 3420, 16
  heads, full attention in blocks 7/15/23/31, merger to 2048). The values were
  read from public copies of that file quoted in other repositories (a model
  notes page printing the config next to a per-module parameter count, and a
  C++ test that embeds "Selected Json config from Qwen2.5VL-3B"); they agree
  with each other and with the 3.75 B parameters of the model card.
* :data:`LLAMA4_SCOUT`: ``config.json`` of ``meta-llama/Llama-4-Scout-17B-16E``
  (text: hidden 5120, 48 layers, 40 heads, 8 KV heads, 16 experts, expert MLP
  8192, dense MLP 16384, vocabulary 202048; vision: 34 layers of width 1408,
  MLP 5632, 16 heads, 336 px tiles, projector 4096 -> 5120), from a public
  page that prints the config with its parameter table (109.7 B in all).
  ``text_layers`` cuts the language model to fewer decoder layers so that it
  fits one GPU; the vision tower and projector stay whole.

:func:`write_model_folder` writes ``config.json``, the processor and tokenizer
(the tiny checkpoint's byte-level tokenizer with every special token at its real
id; the real image processor settings), the chat template and the generation config, plus
random bf16 weights: none, only the vision part (``weights="vision"``), or all
of them sharded like the real checkpoint (``weights="all"``). SGLang loads such
a folder with ``load_format="dummy"`` (random weights from the config alone);
:func:`vlm_tutorial.vision.load_vision_encoder` loads its vision weights for
the client side.

Example:
    >>> cfg = real_config("qwen2_5_vl")
    >>> cfg.text_config.hidden_size, cfg.vision_config.depth
    (2048, 32)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlm_tutorial.families import get_family

#: ``Qwen/Qwen2.5-VL-3B-Instruct``'s configuration (see the module docs for the source).
QWEN2_5_VL_3B: dict[str, Any] = {
    "text": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 128000,
        "max_window_layers": 70,
        "rms_norm_eps": 1e-6,
        "sliding_window": 32768,
        "use_sliding_window": False,
        "vocab_size": 151936,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "tie_word_embeddings": True,
        # config.json: "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope",
        # "mrope_section": [16, 24, 24]}, in transformers 5's form:
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [16, 24, 24],
        },
    },
    "vision": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_channels": 3,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "top": {
        "image_token_id": 151655,
        "video_token_id": 151656,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
        "tie_word_embeddings": True,
    },
    # preprocessor_config.json: min_pixels 3136 (4 tokens), max_pixels 12845056 (16384 tokens).
    "image": {
        "min_pixels": 3136,
        "max_pixels": 12845056,
        "size": {"shortest_edge": 3136, "longest_edge": 12845056},
    },
    # The real checkpoint: model-00001-of-00002.safetensors and model-00002-of-00002
    # (about 3.98 GB and 3.53 GB), visual.* first.
    "max_shard_bytes": 4_000_000_000,
}

#: ``meta-llama/Llama-4-Scout-17B-16E``'s configuration (see the module docs for the source).
LLAMA4_SCOUT: dict[str, Any] = {
    "text": {
        "hidden_size": 5120,
        "intermediate_size": 8192,
        "intermediate_size_mlp": 16384,
        "num_hidden_layers": 48,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "num_local_experts": 16,
        "num_experts_per_tok": 1,
        "interleave_moe_layer_step": 1,
        "attention_chunk_size": 8192,
        "attn_scale": 0.1,
        "floor_scale": 8192,
        "attn_temperature_tuning": True,
        "use_qk_norm": True,
        "hidden_act": "silu",
        "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-5,
        "vocab_size": 202048,
        "bos_token_id": 200000,
        "eos_token_id": [200001, 200007, 200008],
        "pad_token_id": 200018,
        "tie_word_embeddings": False,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
        },
    },
    "vision": {
        "hidden_size": 1408,
        "intermediate_size": 5632,
        "num_hidden_layers": 34,
        "num_attention_heads": 16,
        "image_size": 336,
        "patch_size": 14,
        "num_channels": 3,
        "hidden_act": "gelu",
        "norm_eps": 1e-5,
        "pixel_shuffle_ratio": 0.5,
        "projector_input_dim": 4096,
        "projector_output_dim": 4096,
        "vision_output_dim": 4096,
        "multi_modal_projector_bias": False,
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "default",
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    },
    "top": {
        "boi_token_index": 200080,
        "eoi_token_index": 200081,
        "image_token_index": 200092,
        "tie_word_embeddings": False,
    },
    # Llama4ImageProcessor: 336 px tiles, at most 16 tiles (plus a global one).
    "image": {"size": {"height": 336, "width": 336}, "max_patches": 16},
    "max_shard_bytes": 5_000_000_000,
}

REAL_SCALE: dict[str, dict[str, Any]] = {"qwen2_5_vl": QWEN2_5_VL_3B, "llama4": LLAMA4_SCOUT}

#: Where the values above come from, written into every folder's ``realscale.json``.
SOURCES: dict[str, str] = {
    "qwen2_5_vl": (
        "config.json of Qwen/Qwen2.5-VL-3B-Instruct as quoted in public repositories (a model "
        "notes page with the config and per-module parameter counts; a C++ JSON test with the "
        "'Selected Json config from Qwen2.5VL-3B'); shards as in the hub listing "
        "(model-00001-of-00002, model-00002-of-00002)"
    ),
    "llama4": (
        "config.json of meta-llama/Llama-4-Scout-17B-16E as printed with its parameter table "
        "(109,676,279,296 parameters) on a public model notes page"
    ),
}

#: Decoder layers of Llama 4 Scout kept by default for one 80 GB GPU: about 2.2 B
#: parameters (4.4 GB in bf16) per layer, plus 4.1 GB of embeddings and 1.7 GB of
#: vision tower and projector: 8 layers come to about 41 GB of weights.
LLAMA4_ONE_GPU_LAYERS = 8

#: Marks a finished folder.
INFO_FILE = "realscale.json"


def real_config(family: str, text_layers: int | None = None) -> Any:
    """The transformers config of the real model of ``family``, optionally with fewer text layers.

    Example:
        >>> real_config("llama4", text_layers=2).text_config.num_hidden_layers
        2
    """
    import torch
    from transformers import PreTrainedConfig

    name = get_family(family).name
    spec = REAL_SCALE[name]
    text = dict(spec["text"])
    if text_layers is not None:
        if text_layers < 1 or text_layers > text["num_hidden_layers"]:
            raise ValueError(
                f"text_layers={text_layers} is outside 1..{text['num_hidden_layers']} for {name}"
            )
        text["num_hidden_layers"] = int(text_layers)
    config_class: Callable[..., PreTrainedConfig]  # takes text_config= and vision_config=
    if name == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig as config_class

        architecture = "Qwen2_5_VLForConditionalGeneration"
    else:
        from transformers import Llama4Config as config_class

        architecture = "Llama4ForConditionalGeneration"
    config = config_class(text_config=text, vision_config=dict(spec["vision"]), **spec["top"])
    config.architectures = [architecture]
    config.dtype = torch.bfloat16
    return config


def hub_key(family: str, key: str, tied: bool) -> str | None:
    """The checkpoint name of the in-memory state-dict ``key``; None if not saved (tied head).

    transformers 5 names the Qwen2.5-VL modules ``model.visual.*`` and
    ``model.language_model.*`` in memory and saves them as ``visual.*`` and
    ``model.*`` (the hub layout); Llama 4 keeps its names.

    Example:
        >>> hub_key("qwen2_5_vl", "model.visual.blocks.0.attn.qkv.weight", tied=True)
        'visual.blocks.0.attn.qkv.weight'
        >>> hub_key("qwen2_5_vl", "lm_head.weight", tied=True) is None
        True
    """
    if tied and key == "lm_head.weight":
        return None
    if get_family(family).name == "qwen2_5_vl":
        if key.startswith("model.visual."):
            return key[len("model.") :]
        if key.startswith("model.language_model."):
            return "model." + key[len("model.language_model.") :]
    return key


def checkpoint_tensors(family: str, config: Any) -> list[tuple[str, tuple[int, ...]]]:
    """``(checkpoint name, shape)`` of every tensor a ``save_pretrained`` of ``config``'s model writes.

    The model is built on the meta device (no memory); names follow :func:`hub_key`.

    Example:
        >>> names = [n for n, _ in checkpoint_tensors("qwen2_5_vl", real_config("qwen2_5_vl"))]  # doctest: +SKIP
        >>> names[0]  # doctest: +SKIP
        'visual.patch_embed.proj.weight'
    """
    import torch
    from transformers import PreTrainedModel

    name = get_family(family).name
    model_class: type[PreTrainedModel]
    if name == "qwen2_5_vl":
        from transformers import Qwen2_5_VLForConditionalGeneration as model_class
    else:
        from transformers import Llama4ForConditionalGeneration as model_class
    with torch.device("meta"):
        model = model_class(config)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out = []
    for key, tensor in model.state_dict().items():
        saved = hub_key(name, key, tied)
        if saved is not None:
            out.append((saved, tuple(tensor.shape)))
    return out


def is_vision_key(family: str, key: str) -> bool:
    """True for the tensors :func:`~vlm_tutorial.vision.load_vision_encoder` reads.

    Example:
        >>> is_vision_key("llama4", "multi_modal_projector.linear_1.weight")
        True
    """
    return key.startswith(get_family(family).vision_prefixes)


def _random_tensor(name: str, shape: tuple[int, ...], std: float, generator: Any) -> Any:
    import torch

    if len(shape) == 1 and "norm" in name and name.endswith("weight"):
        return torch.ones(shape, dtype=torch.bfloat16)
    if len(shape) == 1 and name.endswith("bias"):
        return torch.zeros(shape, dtype=torch.bfloat16)
    return torch.randn(shape, dtype=torch.bfloat16, generator=generator).mul_(std)


def plan_shards(
    tensors: list[tuple[str, tuple[int, ...]]], max_shard_bytes: int, bytes_per_value: int = 2
) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Split ``tensors`` in order into shards of at most ``max_shard_bytes`` (one tensor may exceed it).

    Example:
        >>> [len(s) for s in plan_shards([("a", (4,)), ("b", (4,)), ("c", (8,))], 16)]
        [2, 1]
    """
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in tensors:
        nbytes = bytes_per_value
        for dim in shape:
            nbytes *= dim
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return shards


def write_random_weights(
    tensors: list[tuple[str, tuple[int, ...]]],
    out: Path,
    max_shard_bytes: int,
    seed: int = 0,
    std: float = 0.02,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write random bf16 ``tensors`` as ``model-0000i-of-0000n.safetensors`` plus the index.

    One shard is in memory at a time. Matrices are N(0, std²), norm scales
    ones, biases zeros. Returns the index (``metadata.total_size``, ``weight_map``).

    Example:
        >>> write_random_weights([("w", (2, 2))], tmp_path, 10**9)["weight_map"]  # doctest: +SKIP
        {'w': 'model-00001-of-00001.safetensors'}
    """
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    shards = plan_shards(tensors, max_shard_bytes)
    weight_map: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        data = {}
        for name, shape in shard:
            data[name] = _random_tensor(name, shape, std, generator)
            total += data[name].numel() * 2
            weight_map[name] = file
            if progress is not None:
                progress(data[name].numel() * 2)
        save_file(data, str(out / file), metadata={"format": "pt"})
        del data
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def _write_processor(name: str, out: Path) -> None:
    """The tiny checkpoint's tokenizer (the real special-token ids), chat template, generation
    config and processor, with the real model's image processor settings."""
    from vlm_tutorial.offline.tiny import tiny_model_path

    tiny = tiny_model_path(name)
    for file in tiny.iterdir():
        if file.suffix in (".json", ".jinja") and file.name not in _NOT_PROCESSOR:
            shutil.copyfile(file, out / file.name)
    path = out / "processor_config.json"
    config = json.loads(path.read_text())
    config["image_processor"].update(REAL_SCALE[name]["image"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


#: The files of a tiny checkpoint that are not its tokenizer and processor.
_NOT_PROCESSOR = ("config.json", "model.safetensors.index.json", "tiny_model.json")


def write_model_folder(
    family: str,
    out: str | os.PathLike,
    *,
    weights: str = "vision",
    text_layers: int | None = None,
    max_shard_bytes: int | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write a real-scale folder of ``family`` into ``out`` and return its path.

    Args:
        weights: ``"none"`` (config, tokenizer and processor only), ``"vision"``
            (plus random vision weights, indexed so that SGLang's Llama 4 sees a
            vision tower), or ``"all"`` (a whole random bf16 checkpoint, sharded
            like the real one).
        text_layers: keep only this many decoder layers (Llama 4 on one GPU).
        max_shard_bytes: shard size (default: the real checkpoint's).

    Example:
        >>> write_model_folder("qwen2_5_vl", "/tmp/qwen-3b", weights="all")  # doctest: +SKIP
        PosixPath('/tmp/qwen-3b')
    """
    if weights not in ("none", "vision", "all"):
        raise ValueError(f"weights={weights!r}; use 'none', 'vision' or 'all'")
    name = get_family(family).name
    start = time.perf_counter()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    config = real_config(name, text_layers)
    config.save_pretrained(folder)
    _write_processor(name, folder)
    shard_bytes = max_shard_bytes or REAL_SCALE[name]["max_shard_bytes"]
    index = None
    if weights != "none":
        tensors = checkpoint_tensors(name, config)
        if weights == "vision":
            tensors = [t for t in tensors if is_vision_key(name, t[0])]
        index = write_random_weights(tensors, folder, shard_bytes, seed=seed, progress=progress)
    info = {
        "family": name,
        "weights": weights,
        "text_layers": config.text_config.num_hidden_layers,
        "real_text_layers": REAL_SCALE[name]["text"]["num_hidden_layers"],
        "seed": seed,
        "weight_bytes": index["metadata"]["total_size"] if index else 0,
        "source": SOURCES[name],
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return folder


def parameter_count(family: str, config: Any) -> dict[str, int]:
    """``{"vision": n, "text": n, "total": n}`` parameters saved in a checkpoint of ``config``.

    Example:
        >>> parameter_count("qwen2_5_vl", real_config("qwen2_5_vl"))["total"] > 3_700_000_000  # doctest: +SKIP
        True
    """
    counts = {"vision": 0, "text": 0}
    for key, shape in checkpoint_tensors(family, config):
        n = 1
        for dim in shape:
            n *= dim
        counts["vision" if is_vision_key(family, key) else "text"] += n
    counts["total"] = counts["vision"] + counts["text"]
    return counts


def realscale_folder(family: str, text_layers: int | None = None, root: Path | None = None) -> Path:
    """A cached real-scale folder with random vision weights (for ``load_format="dummy"``).

    Built once under :func:`vlm_tutorial.offline.tiny.cache_root` (about 1.3 GB for
    Qwen2.5-VL-3B's vision tower, 1.7 GB for Llama 4 Scout's tower and projector),
    then reused.

    Example:
        >>> realscale_folder("qwen2_5_vl")  # doctest: +SKIP
        PosixPath('/root/.cache/vlm_tutorial/qwen2_5_vl-realscale-...')
    """
    import transformers

    from vlm_tutorial.offline.tiny import cache_root

    name = get_family(family).name
    if name == "llama4" and text_layers is None:
        text_layers = LLAMA4_ONE_GPU_LAYERS
    payload = json.dumps(
        [REAL_SCALE[name], text_layers, transformers.__version__, 1], sort_keys=True
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
    base = root or cache_root()
    target = base / f"{name}-realscale-L{text_layers or 'all'}-{digest}"
    if (target / INFO_FILE).is_file():
        return target
    base.mkdir(parents=True, exist_ok=True)
    with _staging(base, target.name) as tmp:
        write_model_folder(name, tmp, weights="vision", text_layers=text_layers)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / INFO_FILE).is_file():
                raise
    return target


class _staging:
    """A temporary folder next to ``target``, removed on exit unless renamed away."""

    def __init__(self, base: Path, name: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=base))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)


__all__ = [
    "LLAMA4_ONE_GPU_LAYERS",
    "LLAMA4_SCOUT",
    "QWEN2_5_VL_3B",
    "REAL_SCALE",
    "SOURCES",
    "checkpoint_tensors",
    "hub_key",
    "is_vision_key",
    "parameter_count",
    "plan_shards",
    "real_config",
    "realscale_folder",
    "write_model_folder",
    "write_random_weights",
]
