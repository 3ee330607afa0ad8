"""Build tiny checkpoints of the real architectures, offline.

A tiny checkpoint is a folder that ``from_pretrained`` and
``AutoProcessor.from_pretrained`` load like the real one: the real model
class, the real processor classes with the real preprocessing settings, the
real chat template and the real special-token ids, with a few small layers.
Every image-token count, grid, tile and prompt layout matches the real model
(text-token counts do not: the tokenizer is a byte-level stand-in).

The ``tiny`` preset is trained on toy pictures (:mod:`vlm_tutorial.offline.tiny.training`):
asked "What's shown here: <image>?" it names the colours and shapes in the
picture. Training takes minutes, so the package ships what it changed
(``weights/<family>.safetensors``, :func:`write_shipped`) and
:func:`materialise` rebuilds the checkpoint from it in about a second. The
other presets keep random weights and answer nonsense.

Example:
    >>> from vlm_tutorial.offline.tiny import tiny_model_path
    >>> path = tiny_model_path("qwen2_5_vl")  # written once, then reused
    >>> (path / "model.safetensors.index.json").is_file()
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from vlm_tutorial.families import get_family

from .presets import INIT_STD, LLAMA4_IMAGE, PRESETS, QWEN2_5_VL_IMAGE, VOCAB
from .tokenizer import WHOLE_WORDS, build_tokenizer

#: Bump when a change to this module, to the training (``training.py``) or to
#: the toy pictures (``toys.py``) changes what is written.
BUILDER_VERSION = 3

#: The file each tiny checkpoint carries to say what it is.
INFO_FILE = "tiny_model.json"


def check_preset(family: str, preset: str) -> tuple[str, dict[str, Any]]:
    """Return ``(family_name, preset_spec)``, or raise naming the valid choices.

    Example:
        >>> check_preset("llama4", "tp4")[1]["text"]["num_attention_heads"]
        4
    """
    name = get_family(family).name
    presets = PRESETS[name]
    if preset not in presets:
        raise ValueError(
            f"unknown preset {preset!r} for model family {name!r}; choose one of {sorted(presets)}"
        )
    return name, presets[preset]


def chat_template(family: str) -> str:
    """The real chat template of ``family``, read from ``templates/<family>.jinja``.

    Example:
        >>> chat_template("qwen2_5_vl").startswith("{% set image_count")
        True
    """
    name = get_family(family).name
    return resources.files(__package__).joinpath("templates", f"{name}.jinja").read_text()


def is_trained(family: str, preset: str = "tiny") -> bool:
    """Whether :func:`tiny_model_path` trains this preset on toy pictures (only ``tiny`` is).

    Example:
        >>> is_trained("llama4", "tiny"), is_trained("llama4", "tp4")
        (True, False)
    """
    return bool(check_preset(family, preset)[1].get("trained", False))


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()


def plan_hash(family: str, preset: str = "tiny", trained: bool = True) -> str:
    """A short hash of what decides a checkpoint's tensors: preset, vocabulary, template, plan.

    A change to the training code or the toy pictures bumps :data:`BUILDER_VERSION`.

    Example:
        >>> plan_hash("llama4") != plan_hash("llama4", trained=False)
        True
    """
    name, spec = check_preset(family, preset)
    payload: dict[str, Any] = {
        "builder": BUILDER_VERSION,
        "family": name,
        "preset": preset,
        "spec": spec,
        "vocab": VOCAB[name],
        "words": WHOLE_WORDS,
        "std": INIT_STD[name],
        "template": chat_template(name),
        "trained": trained,
    }
    if trained:
        from . import training

        payload["plan"] = training.PLANS[name].as_dict()
    return _digest(payload)[:10]


def _shipped_info(family: str) -> dict[str, Any] | None:
    """The info of ``family``'s shipped weights, if they exist and match today's plan."""
    from safetensors import safe_open

    path = shipped_weights(family)
    if not path.is_file():
        return None
    with safe_open(path, "pt") as f:
        info: dict[str, Any] = json.loads(f.metadata()["info"])
    return info if info.get("plan_hash") == plan_hash(family) else None


def spec_hash(family: str, preset: str, trained: bool | None = None) -> str:
    """A short hash of everything that decides a checkpoint's files, for cache folder names.

    :func:`plan_hash` and the library versions; for a trained checkpoint also
    the shipped weights it comes from, or else the torch version that trains it.

    Example:
        >>> len(spec_hash("llama4", "tiny"))
        10
    """
    import tokenizers
    import torch
    import transformers

    name, _ = check_preset(family, preset)
    trained = is_trained(name, preset) if trained is None else trained
    payload = [plan_hash(name, preset, trained), transformers.__version__, tokenizers.__version__]
    if trained:
        shipped = preset == "tiny" and _shipped_info(name) is not None
        digest = hashlib.sha256(shipped_weights(name).read_bytes()).hexdigest() if shipped else None
        payload.append(digest or torch.__version__)
    return _digest(payload)[:10]


def _qwen_config(spec: dict[str, Any]) -> Any:
    from transformers import Qwen2_5_VLConfig

    text = dict(spec["text"])
    mrope = text.pop("mrope_section")
    text.update(
        vocab_size=VOCAB["qwen2_5_vl"]["vocab_size"],
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
        bos_token_id=151643,
        eos_token_id=151645,
        tie_word_embeddings=spec["tie_word_embeddings"],
    )
    image = spec["image"]
    vision = dict(spec["vision"])
    vision.update(
        patch_size=image["patch_size"],
        temporal_patch_size=image["temporal_patch_size"],
        spatial_merge_size=image["merge_size"],
        in_channels=3,
        window_size=112,
        out_hidden_size=text["hidden_size"],
        hidden_act="silu",
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=spec["tie_word_embeddings"],
    )


def _llama4_config(spec: dict[str, Any]) -> Any:
    from transformers import Llama4Config

    text = dict(spec["text"])
    text.update(
        vocab_size=VOCAB["llama4"]["vocab_size"],
        # The notebooks pass context_length=65536 to sglang.Engine, which refuses more than this.
        max_position_embeddings=65536,
        attention_chunk_size=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        bos_token_id=200000,
        eos_token_id=[200001, 200007, 200008],
        pad_token_id=200018,
        tie_word_embeddings=spec["tie_word_embeddings"],
    )
    vision = dict(spec["vision"])
    out_dim = vision["vision_output_dim"]
    vision.update(
        image_size=spec["image"]["tile_size"],
        patch_size=spec["image"]["patch_size"],
        pixel_shuffle_ratio=0.5,
        projector_input_dim=out_dim,
        projector_output_dim=out_dim,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    if vision["intermediate_size"] * 0.5**2 != vision["hidden_size"]:
        raise ValueError(
            "Llama 4 vision intermediate_size must be hidden_size / pixel_shuffle_ratio**2"
        )
    return Llama4Config(
        text_config=text,
        vision_config=vision,
        boi_token_index=200080,
        eoi_token_index=200081,
        image_token_index=200092,
        tie_word_embeddings=spec["tie_word_embeddings"],
    )


def model_config(family: str, spec: dict[str, Any]) -> Any:
    """The transformers config of a tiny ``family`` model from its preset ``spec``."""
    return _qwen_config(spec) if family == "qwen2_5_vl" else _llama4_config(spec)


def _model_class(family: str) -> Any:
    import transformers

    name = "Qwen2_5_VL" if family == "qwen2_5_vl" else "Llama4"
    return getattr(transformers, f"{name}ForConditionalGeneration")


def _write_files(family: str, spec: dict[str, Any], out: Path) -> None:
    """Everything but the weights: config, generation config, tokenizer, processor, template."""
    config = model_config(family, spec)
    config.architectures = [_model_class(family).__name__]
    config.dtype = "bfloat16"
    config.save_pretrained(out)
    save_generation_config(family, out)
    save_tokenizer_and_processor(family, out, image=spec["image"])


def _init_weights(model: Any, std: float, seed: int) -> None:
    """Overwrite every weight matrix with N(0, std²) from a seeded generator.

    Norm scales and biases keep the model's own initialisation (ones, zeros).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * std)


def _is_vision_param(family: str, name: str) -> bool:
    if family == "qwen2_5_vl":
        return ".visual." in f".{name}"
    return name.startswith(("vision_model.", "multi_modal_projector."))


def parameter_counts(model: Any, family: str) -> dict[str, int]:
    """``{"text": n, "vision": n}`` parameters of a loaded model (tied weights once).

    Example:
        >>> model = AutoModelForImageTextToText.from_pretrained(tiny_model_path("llama4"))  # doctest: +SKIP
        >>> parameter_counts(model, "llama4")  # doctest: +SKIP
        {'text': 12968352, 'vision': 51072}
    """
    counts = {"text": 0, "vision": 0}
    for name, param in model.named_parameters():
        counts["vision" if _is_vision_param(family, name) else "text"] += param.numel()
    return counts


def save_tokenizer_and_processor(
    family: str, out: str | os.PathLike, image: dict[str, Any] | None = None
) -> None:
    """Write the stand-in tokenizer, the chat template and the real processor classes into ``out``.

    ``image`` holds the image processor settings; the default is the real
    model's (:data:`~vlm_tutorial.offline.tiny.presets.QWEN2_5_VL_IMAGE`,
    :data:`~vlm_tutorial.offline.tiny.presets.LLAMA4_IMAGE`).

    Example:
        >>> save_tokenizer_and_processor("llama4", tmp_path)  # doctest: +SKIP
        >>> AutoProcessor.from_pretrained(tmp_path).image_processor.max_patches  # doctest: +SKIP
        16
    """
    from transformers import TokenizersBackend

    family = get_family(family).name
    folder = Path(out)
    tok = build_tokenizer(family)
    template = chat_template(family)
    processor: Any
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        settings = dict(QWEN2_5_VL_IMAGE if image is None else image)
        # eos/pad are set after the specials are in place (see the tokenizer module).
        hf_tok = TokenizersBackend(tokenizer_object=tok, model_max_length=131072)
        hf_tok.eos_token = "<|im_end|>"
        hf_tok.pad_token = "<|endoftext|>"
        processor = Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(**settings),
            tokenizer=hf_tok,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=template,
        )
        processor.save_pretrained(folder)
        # The real checkpoint names Qwen2Tokenizer; transformers rebuilds it from tokenizer.json.
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config.update(
            tokenizer_class="Qwen2Tokenizer",
            errors="replace",
            add_prefix_space=False,
            bos_token=None,
            unk_token=None,
        )
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        # Also the older key names, which other readers of the config look for.
        proc_path = folder / "processor_config.json"
        proc = json.loads(proc_path.read_text())
        proc["image_processor"].update(
            min_pixels=settings["min_pixels"], max_pixels=settings["max_pixels"]
        )
        proc_path.write_text(json.dumps(proc, indent=2, sort_keys=True) + "\n")
    else:
        from transformers import Llama4ImageProcessor, Llama4Processor

        settings = dict(LLAMA4_IMAGE if image is None else image)
        tile = settings["tile_size"]
        hf_tok = TokenizersBackend(tokenizer_object=tok, model_max_length=10485760)
        hf_tok.bos_token = "<|begin_of_text|>"
        hf_tok.eos_token = "<|eot|>"
        hf_tok.pad_token = "<|finetune_right_pad|>"
        processor = Llama4Processor(
            image_processor=Llama4ImageProcessor(
                size={"height": tile, "width": tile},
                max_patches=settings["max_patches"],
                resize_to_max_canvas=settings.get("resize_to_max_canvas", False),
                image_mean=settings.get("image_mean", LLAMA4_IMAGE["image_mean"]),
                image_std=settings.get("image_std", LLAMA4_IMAGE["image_std"]),
            ),
            tokenizer=hf_tok,
            patch_size=settings.get("patch_size", 14),
            pixel_shuffle_ratio=0.5,
            chat_template=template,
        )
        processor.save_pretrained(folder)


def save_generation_config(family: str, out: str | os.PathLike) -> None:
    """Write the real checkpoint's ``generation_config.json`` (bos, eos and pad ids) into ``out``.

    Example:
        >>> save_generation_config("qwen2_5_vl", tmp_path)  # doctest: +SKIP
    """
    from transformers import GenerationConfig

    if get_family(family).name == "qwen2_5_vl":
        gen = GenerationConfig(
            bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643
        )
    else:
        gen = GenerationConfig(
            bos_token_id=200000, eos_token_id=[200001, 200007, 200008], pad_token_id=200018
        )
    gen.save_pretrained(out)


@contextmanager
def _quiet_progress() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def folder_size(path: str | os.PathLike) -> int:
    """Total bytes of the files under ``path``.

    Example:
        >>> folder_size(tiny_model_path("qwen2_5_vl")) > 1_000_000  # doctest: +SKIP
        True
    """
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _initial_rows(family: str, seed: int) -> dict[str, Any]:
    """The embedding and output matrices (bfloat16) of the ``tiny`` model before training.

    The model's own initialisation under ``torch.manual_seed(seed)``, as
    :func:`build_tiny_model` starts it: training changes only the rows of the
    tokens it uses, and this rebuilds the others. Keys: ``embed_tokens``, ``lm_head``.
    """
    import torch

    name, spec = check_preset(family, "tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _model_class(name)(model_config(name, spec))
    layers = {
        "embed_tokens": model.get_input_embeddings(),
        "lm_head": model.get_output_embeddings(),
    }
    return {key: layer.weight.detach().to(torch.bfloat16) for key, layer in layers.items()}


def read_tensors(folder: Path) -> dict[str, Any]:
    """Every tensor of the ``*.safetensors`` files in ``folder``."""
    from safetensors.torch import load_file

    return {
        k: v for shard in sorted(folder.glob("*.safetensors")) for k, v in load_file(shard).items()
    }


def _save_sharded(tensors: dict[str, Any], out: Path, family: str) -> None:
    """Write the text weights and the vision weights in two shards, with their index file.

    The vision-only loader (:func:`vlm_tutorial.vision.load_vision_encoder`)
    then reads the small second shard only, as it does for the real checkpoints.
    """
    from safetensors.torch import save_file

    prefixes = get_family(family).vision_prefixes
    vision = {k for k in tensors if k.startswith(prefixes)}
    weight_map = {}
    for i, keys in enumerate((sorted(set(tensors) - vision), sorted(vision))):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: tensors[k].contiguous() for k in keys}, out / shard, {"format": "pt"})
        weight_map.update(dict.fromkeys(keys, shard))
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": size}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def shipped_weights(family: str) -> Path:
    """The trained weights shipped with the package for ``family``'s ``tiny`` preset.

    Example:
        >>> shipped_weights("llama4").name
        'llama4.safetensors'
    """
    name = get_family(family).name
    return Path(str(resources.files(__package__).joinpath("weights", f"{name}.safetensors")))


def write_shipped(checkpoint: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Store what training changed in the trained ``checkpoint`` as ``dest/<family>.safetensors``.

    Every tensor except the embedding and output matrices is kept whole; of
    those, only the rows that differ from :func:`_initial_rows`, with their ids.

    Example:
        >>> write_shipped(build_tiny_model("llama4", tmp_path / "l4", train=True), tmp_path)  # doctest: +SKIP
        PosixPath('.../llama4.safetensors')
    """
    import torch
    from safetensors.torch import save_file

    folder = Path(checkpoint)
    info = json.loads((folder / INFO_FILE).read_text())
    if not info["trained"] or info["preset"] != "tiny":
        raise ValueError(f"{folder} is not a trained 'tiny' checkpoint; build one with train=True")
    shipped, initial = {}, _initial_rows(info["family"], info["seed"])
    for key, tensor in read_tensors(folder).items():
        if key.endswith(("embed_tokens.weight", "lm_head.weight")):
            init = initial[key.split(".")[-2]]
            ids = torch.nonzero((tensor != init).any(dim=1)).squeeze(1)
            shipped[f"{key}.rows"], shipped[f"{key}.ids"] = tensor[ids], ids.to(torch.int32)
        else:
            shipped[key] = tensor
    out = Path(dest) / f"{info['family']}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(shipped, out, {"info": json.dumps(info, sort_keys=True)})
    return out


def materialise(family: str, out_dir: str | os.PathLike, weights: Path | None = None) -> Path:
    """Write ``family``'s trained ``tiny`` checkpoint from its shipped weights (a few seconds).

    The result has the same files, tensor for tensor, as the build that
    :func:`write_shipped` stored.

    Example:
        >>> materialise("qwen2_5_vl", tmp_path / "qwen")  # doctest: +SKIP
    """
    from safetensors import safe_open

    name, spec = check_preset(family, "tiny")
    weights = shipped_weights(name) if weights is None else Path(weights)
    with safe_open(weights, "pt") as f:
        info = json.loads(f.metadata()["info"])
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
    if info["family"] != name or info.get("plan_hash") != plan_hash(name):
        raise ValueError(
            f"{weights} was trained for another plan or family than today's {name!r} 'tiny' "
            f"preset; rebuild it: python -m vlm_tutorial.offline.tiny {name} OUT_DIR "
            f"--write-weights {weights.parent}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    initial = _initial_rows(name, info["seed"])
    for key in [k.removesuffix(".rows") for k in tensors if k.endswith(".rows")]:
        tensors[key] = initial[key.split(".")[-2]].clone()
        tensors[key][tensors.pop(f"{key}.ids").long()] = tensors.pop(f"{key}.rows")
    _write_files(name, spec, out)
    _save_sharded(tensors, out, name)
    info.update(spec_hash=spec_hash(name, "tiny"), shipped=weights.name)
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return out


def build_tiny_model(
    family: str,
    out_dir: str | os.PathLike,
    preset: str = "tiny",
    seed: int = 0,
    train: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write a tiny checkpoint of ``family`` into ``out_dir`` and return its path.

    The ``tiny`` preset (seed 0) comes from its shipped weights
    (:func:`materialise`); ``train=True`` trains it on toy pictures instead
    (:mod:`vlm_tutorial.offline.tiny.training`, minutes; ``log`` receives
    progress lines). The other presets, and ``train=False``, keep random weights.

    The same arguments give the same tensors on one machine. Weights are
    saved in bfloat16 as a text shard and a vision shard with
    ``model.safetensors.index.json``, like the real checkpoints.

    Example:
        >>> path = build_tiny_model("llama4", tmp_path / "llama4", train=False)  # doctest: +SKIP
        >>> json.loads((path / "config.json").read_text())["model_type"]  # doctest: +SKIP
        'llama4'
    """
    name, spec = check_preset(family, preset)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    trained = is_trained(name, preset) if train is None else bool(train)
    if trained and not spec.get("trained", False):
        raise ValueError(
            f"preset {preset!r} of {name!r} has no training plan; only the 'tiny' preset is "
            "trained (pass train=None or train=False)"
        )
    if train is None and trained and preset == "tiny" and seed == 0 and _shipped_info(name):
        return materialise(name, out_dir)
    start = time.perf_counter()

    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_files(name, spec, out)
    torch.manual_seed(seed)
    model = _model_class(name)(model_config(name, spec))
    report = None
    if trained:
        from transformers import AutoProcessor

        from .training import PLANS, train_model

        # Trained from the model's own initialisation, through the processor just written.
        processor = AutoProcessor.from_pretrained(out)
        plan = dataclasses.replace(PLANS[name], seed=seed)
        report = train_model(model, processor, name, plan, log=log)
    else:
        _init_weights(model, INIT_STD[name], seed)
    counts = parameter_counts(model, name)
    # Parameters only: Module.to() would also cast Llama 4's complex rope buffer.
    for param in model.parameters():
        param.data = param.data.to(torch.bfloat16)
    # save_pretrained names the tensors as the real checkpoints do; they are then resharded.
    with tempfile.TemporaryDirectory(dir=out) as tmp, _quiet_progress():
        model.save_pretrained(tmp)
        _save_sharded(read_tensors(Path(tmp)), out, name)

    info = {
        "family": name,
        "preset": preset,
        "seed": seed,
        "trained": trained,
        "builder_version": BUILDER_VERSION,
        "spec_hash": spec_hash(name, preset, trained),
        "plan_hash": plan_hash(name, preset, trained),
        "parameters": counts,
        "training": None if report is None else report.as_dict(),
        "build_seconds": round(time.perf_counter() - start, 3),
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return out


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cache_root() -> Path:
    """Where :func:`tiny_model_path` keeps checkpoints: ``$VLM_TUTORIAL_CACHE`` or ``~/.cache/vlm_tutorial``.

    Example:
        >>> os.environ["VLM_TUTORIAL_CACHE"] = "/tmp/vlm-cache"
        >>> cache_root()
        PosixPath('/tmp/vlm-cache')
    """
    env = os.environ.get("VLM_TUTORIAL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vlm_tutorial"


def tiny_model_path(family: str, preset: str = "tiny") -> Path:
    """Return a cached tiny checkpoint of ``family``, building it (seed 0) the first time.

    The folder is named ``<family>-<preset>-<hash>``; a change of builder,
    preset, shipped weights or library version gives a new hash, hence a
    fresh build (seconds; said on stderr). The build goes to a temporary
    folder that is renamed into place, so a half-written checkpoint is never
    reused.

    Example:
        >>> tiny_model_path("qwen2_5_vl").name.startswith("qwen2_5_vl-tiny-")
        True
    """
    name, _ = check_preset(family, preset)
    root = cache_root()
    target = root / f"{name}-{preset}-{spec_hash(name, preset)}"
    if (target / INFO_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        shipped = preset == "tiny" and _shipped_info(name) is not None
        if shipped or is_trained(name, preset):
            what = (
                "from its shipped weights" if shipped else "training it on toy pictures (minutes)"
            )
            _say(f"building the tiny {name} checkpoint {what}, once, into {target}")
        build_tiny_model(name, tmp, preset=preset, seed=0, log=_say)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / INFO_FILE).is_file():  # not a concurrent build that won
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
