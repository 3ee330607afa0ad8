"""The family registry: every difference between Qwen2.5-VL and Llama 4 that the helpers need.

>>> get_family("llama4").embedding_token, LLAMA4.token_id("<|patch|>")
('<|patch|>', 200092)
"""

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RequestFormatError, UnknownModelFamilyError

#: How ``processor_output`` and ``precomputed_embedding`` dicts name their format.
PROCESSOR_OUTPUT = "processor_output"
PRECOMPUTED_EMBEDDING = "precomputed_embedding"

_Tokens = tuple[tuple[int, str, bool], ...]
#: Qwen2.5-VL's added tokens from id 151643 (the 3B's tokenizer_config.json); 14 special.
_QWEN2_5_VL_TOKENS = (
    "endoftext im_start im_end object_ref_start object_ref_end box_start box_end quad_start "
    "quad_end vision_start vision_end vision_pad image_pad video_pad <tool_call> </tool_call> "
    "fim_prefix fim_middle fim_suffix fim_pad repo_name file_sep"
)
#: Llama 4's special tokens from id 200000 (transformers' convert_llama4_weights_to_hf.py);
#: T6 is the next 6 <|text_post_train_reserved_special_token_N|>, V2 the next 2 vision ones.
_LLAMA4_TOKENS = (
    "begin_of_text end_of_text fim_prefix fim_middle fim_suffix header_start header_end eom eot "
    "step T6 python_start python_end finetune_right_pad T61 image_start image_end V2 "
    "tile_x_separator tile_y_separator V4 image V1 patch V1041"
)


def _special_tokens(first_id: int, layout: str, n_special: int | None = None) -> _Tokens:
    """Expand a layout: ``word`` is ``<|word|>``, ``<x>`` stays, ``T``/``V`` + n are reserved."""
    names: list[str] = []
    for word in layout.split():
        if word[0] in "TV" and word[1:].isdigit():
            kind = "text_post_train" if word[0] == "T" else "vision"
            done = sum(f"<|{kind}_reserved" in name for name in names)
            names += [f"<|{kind}_reserved_special_token_{done + i}|>" for i in range(int(word[1:]))]
        else:
            names.append(word if word.startswith("<") else f"<|{word}|>")
    special = [n_special is None or i < n_special for i in range(len(names))]
    return tuple(zip(range(first_id, first_id + len(names)), names, special, strict=True))


@dataclass(frozen=True, eq=False)
class ModelFamily:
    """What the helpers need to know about one architecture; one object per family."""

    name: str  # the family key, config.json's model_type: "qwen2_5_vl" or "llama4"
    architecture: str  # config.json's architectures[0]: the transformers class of the model
    real_model_id: str  # the Hugging Face id the notebooks use on a GPU
    processor_class: str  # the transformers processor class name
    sglang_chat_template: str  # the name of SGLang's conversation template
    special_tokens: _Tokens  # (id, text, special) of every added token, at the real ids
    vocab_size: int  # rows of the real embedding matrix
    prompt_image_token: str  # what the chat template writes for one image
    prompt_image_marker: str  # the token counted once per image in an unexpanded prompt
    image_start_token: str  # opens one image in input_ids after the processor expanded it
    embedding_token: str  # repeated once per embedding row in expanded input_ids
    embedding_format: str  # the format of the dict that carries a precomputed embedding,
    embedding_key: str  # its key that holds the embedding,
    embedding_extra_keys: tuple[str, ...]  # and the processor-output keys it carries too
    grid_key: str | None  # the processor-output key of the per-image patch grid, if any
    spatial_merge_size: int | None  # patches merged per side into one image token (grids)
    vision_prefixes: tuple[str, ...]  # checkpoint key prefixes of the vision weights
    generate_keys: tuple[str, ...]  # processor-output keys transformers' generate() reads
    mrope: bool  # the language model needs mm_token_type_ids for its multimodal rope
    engine_args: Mapping[str, Any]  # the tutorial's sglang.Engine arguments, real model

    def __repr__(self) -> str:
        return f"<ModelFamily {self.name}>"

    def token_id(self, text: str) -> int:
        """The real id of special token ``text``, e.g. 151655 for Qwen's ``<|image_pad|>``."""
        for token_id, token, _ in self.special_tokens:
            if token == text:
                return token_id
        raise KeyError(f"{text!r} is not a special token of {self.name}")

    @property
    def embedding_token_id(self) -> int:
        """The id of :attr:`embedding_token`."""
        return self.token_id(self.embedding_token)

    def tokens_per_image(self, input_ids: Sequence[int]) -> list[int]:
        """Number of :attr:`embedding_token` ids of each image in expanded ``input_ids``:

        >>> LLAMA4.tokens_per_image([1, 200080, 200092, 200092, 200081, 200080, 200092, 200081])
        [2, 1]
        """
        start, row = self.token_id(self.image_start_token), self.embedding_token_id
        counts: list[int] = []
        for token in input_ids:
            if token == start:
                counts.append(0)
            elif token == row and counts:
                counts[-1] += 1
        return counts

    def check_processor_kwargs(self, kwargs: Mapping[str, Any]) -> None:
        """Refuse Qwen's ``min_pixels=``/``max_pixels=``: transformers 5.12.1 ignores them."""
        for key in sorted({"min_pixels", "max_pixels"} & set(kwargs) if self.grid_key else ()):
            raise RequestFormatError(
                f"{key}={kwargs[key]!r} is ignored by the {self.processor_class} call in "
                "transformers 5 (the image tokens would not change); pass "
                'size={"shortest_edge": min_pixels, "longest_edge": max_pixels} instead'
            )

    def engine_args_for(self, model_path: str | os.PathLike[str]) -> dict[str, Any]:
        """A copy of :attr:`engine_args`; any checkpoint but the real one gets ``tp_size`` 1:

        >>> LLAMA4.engine_args_for("/tmp/tiny-llama4")["tp_size"]
        1
        """
        args = dict(self.engine_args)
        if "tp_size" in args and os.fspath(model_path) != self.real_model_id:
            args["tp_size"] = 1
        return args


QWEN2_5_VL = ModelFamily(
    name="qwen2_5_vl",
    architecture="Qwen2_5_VLForConditionalGeneration",
    real_model_id="Qwen/Qwen2.5-VL-3B-Instruct",
    processor_class="Qwen2_5_VLProcessor",
    sglang_chat_template="qwen2-vl",
    special_tokens=_special_tokens(151643, _QWEN2_5_VL_TOKENS, n_special=14),
    vocab_size=151936,
    prompt_image_token="<|vision_start|><|image_pad|><|vision_end|>",
    prompt_image_marker="<|vision_start|>",
    image_start_token="<|vision_start|>",
    embedding_token="<|image_pad|>",
    embedding_format=PRECOMPUTED_EMBEDDING,
    embedding_key="feature",
    embedding_extra_keys=("image_grid_thw",),
    grid_key="image_grid_thw",
    spatial_merge_size=2,
    vision_prefixes=("visual.", "model.visual."),  # on disk; as transformers names them
    generate_keys=("pixel_values", "image_grid_thw"),
    mrope=True,
    engine_args={
        "mem_fraction_static": 0.6,  # 80 GB: 7 GiB weights + ~40 GiB KV cache; fits 141 GB too
        "disable_radix_cache": True,  # else a repeated image skips the vision path
        "log_level": "warning",  # SGLang's info lines would drown the notebook's output
    },
)

LLAMA4 = ModelFamily(
    name="llama4",
    architecture="Llama4ForConditionalGeneration",
    real_model_id="meta-llama/Llama-4-Scout-17B-16E-Instruct",
    processor_class="Llama4Processor",
    sglang_chat_template="llama-4",
    special_tokens=_special_tokens(200000, _LLAMA4_TOKENS),
    vocab_size=202048,
    prompt_image_token="<|image|>",
    prompt_image_marker="<|image|>",
    image_start_token="<|image_start|>",
    embedding_token="<|patch|>",
    embedding_format=PROCESSOR_OUTPUT,  # a precomputed_embedding kills SGLang 0.5.17's scheduler
    embedding_key="precomputed_embeddings",
    embedding_extra_keys=(),
    grid_key=None,
    spatial_merge_size=None,
    vision_prefixes=("vision_model.", "multi_modal_projector."),
    generate_keys=("pixel_values",),
    mrope=False,
    engine_args={
        "enable_multimodal": True,  # else SGLang 0.5.17 silently ignores Llama 4's images
        "tp_size": 4,  # Scout's 203 GiB of bf16 weights on four 80 GB cards: 51 GiB each
        "context_length": 65536,  # the native 10M tokens would ask for far too much KV cache
        "mem_fraction_static": 0.7,  # 55 of 78 GiB: 51 GiB weights + KV; 0.8 OOMs CUDA graphs
        "disable_radix_cache": True,  # else a repeated image skips the vision path
        "log_level": "warning",  # SGLang's info lines would drown the notebook's output
    },
)

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (QWEN2_5_VL, LLAMA4)}


def is_hub_id(text: str | os.PathLike[str]) -> bool:
    """True for ``owner/name`` text that is no existing local path, e.g. ``"Qwen/Qwen2.5-VL"``."""
    text = os.fspath(text)
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text)) and not Path(text).exists()


def is_checkpoint_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder that holds a ``config.json``, as ``save_pretrained`` writes it."""
    return (Path(path).expanduser() / "config.json").is_file()


def get_family(name: str | ModelFamily) -> ModelFamily:
    """The family called ``name`` (``"qwen2_5_vl"`` or ``"llama4"``)."""
    if isinstance(name, ModelFamily):
        return name
    if isinstance(name, str) and name in FAMILIES:
        return FAMILIES[name]
    raise UnknownModelFamilyError(f"unknown model family {name!r}; supported: {sorted(FAMILIES)}")


def family_of_processor(processor: Any) -> ModelFamily | None:
    """The family whose processor class ``processor`` is, or None."""
    name = type(processor).__name__
    return next((f for f in FAMILIES.values() if f.processor_class == name), None)


def _family_of_config(path: Path, where: str) -> ModelFamily:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UnknownModelFamilyError(
            f"{where} is no readable JSON ({exc}); re-download the checkpoint or fix the file"
        ) from None
    config = config if isinstance(config, dict) else {}
    model_type, architectures = config.get("model_type"), config.get("architectures") or []
    for family in FAMILIES.values():
        if model_type == family.name or family.architecture in architectures:
            return family
    supported = ", ".join(f"{f.architecture} (model_type {f.name})" for f in FAMILIES.values())
    raise UnknownModelFamilyError(
        f"{where} describes model_type {model_type!r} (architectures {architectures!r}), which "
        f"this tutorial does not cover; supported: {supported}"
    )


def _hub_config(repo_id: str) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        return Path(cached)
    try:
        return Path(hf_hub_download(repo_id, "config.json"))
    except Exception as exc:  # network, auth, offline mode, missing repo: all say the same
        raise UnknownModelFamilyError(
            f"{repo_id!r} is no local folder, and its config.json is neither in the Hugging Face "
            f"cache nor downloadable ({type(exc).__name__}); check the id, run `hf auth login` "
            "for a gated model, or download the checkpoint and pass its folder"
        ) from None


def detect_family(model: Any) -> ModelFamily:
    """The family of a checkpoint folder, a hub id (by its config.json), a name or a processor:

    >>> detect_family("Qwen/Qwen2.5-VL-3B-Instruct").name
    'qwen2_5_vl'
    """
    if (by_processor := family_of_processor(model)) is not None:
        return by_processor
    if not isinstance(model, (str, os.PathLike)):
        raise UnknownModelFamilyError(
            f"cannot tell the model family of a {type(model).__name__}; pass a folder or a hub id"
        )
    text = os.fspath(model)
    for family in FAMILIES.values():
        if text in (family.name, family.real_model_id):
            return family
    if is_checkpoint_folder(text):
        config = Path(text).expanduser() / "config.json"
        return _family_of_config(config, str(config))
    if is_hub_id(text):
        return _family_of_config(_hub_config(text), f"{text}'s config.json")
    what = "a folder without a config.json" if Path(text).expanduser().is_dir() else "no folder"
    raise UnknownModelFamilyError(
        f"{text!r} is {what}, and no hub id like {QWEN2_5_VL.real_model_id!r}; pass the folder "
        f"save_pretrained wrote, a hub id, or a family name from {sorted(FAMILIES)}"
    )
