"""The family registry: every difference between Qwen2.5-VL and Llama 4 that the helpers need.

A *family* is an architecture (``qwen2_5_vl``, ``llama4``): its special tokens
and their ids, how a prompt marks an image, which token stands for one
embedding row, the dict that carries a precomputed embedding to SGLang, the
checkpoint prefixes of its vision weights, and the engine arguments it needs.
Other modules read these fields instead of branching on the family.

Any checkpoint of the two architectures is recognised from its
``config.json``: a local folder directly, a hub id by fetching only that file
(from the Hugging Face cache first).

Example:
    >>> from vlm_tutorial.families import get_family
    >>> llama4 = get_family("llama4")
    >>> llama4.embedding_token, llama4.token_id("<|patch|>")
    ('<|patch|>', 200092)
"""

from __future__ import annotations

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

SpecialTokens = tuple[tuple[int, str, bool], ...]
"""``(id, text, special)`` for each added token, in id order."""

#: Qwen2.5-VL's added tokens at their real ids (``tokenizer_config.json``'s
#: ``added_tokens_decoder`` of ``Qwen/Qwen2.5-VL-3B-Instruct``), with their
#: ``special`` flag. Ids below 151643 are ordinary byte-level BPE tokens.
QWEN2_5_VL_SPECIAL_TOKENS: SpecialTokens = (
    (151643, "<|endoftext|>", True),
    (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True),
    (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True),
    (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
)


def _reserved(name: str, count: int, start: int = 0) -> list[str]:
    return [f"<|{name}_reserved_special_token_{i}|>" for i in range(start, start + count)]


def _llama4_special_names() -> list[str]:
    # The order of transformers' convert_llama4_weights_to_hf.py: ids 200000..201133.
    basic = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|fim_prefix|>",
        "<|fim_middle|>",
        "<|fim_suffix|>",
    ]
    text_post_train = [
        "<|header_start|>",
        "<|header_end|>",
        "<|eom|>",
        "<|eot|>",
        "<|step|>",
        *_reserved("text_post_train", 6),
        "<|python_start|>",
        "<|python_end|>",
        "<|finetune_right_pad|>",
        *_reserved("text_post_train", 61, 6),
    ]
    vision = [
        "<|image_start|>",
        "<|image_end|>",
        "<|vision_reserved_special_token_0|>",
        "<|vision_reserved_special_token_1|>",
        "<|tile_x_separator|>",
        "<|tile_y_separator|>",
        *_reserved("vision", 4, 2),
        "<|image|>",
        "<|vision_reserved_special_token_6|>",
        "<|patch|>",
        *_reserved("vision", 1041, 7),
    ]
    return basic + text_post_train + vision


#: Llama 4's special tokens at their real ids (200000..201133), all special.
LLAMA4_SPECIAL_TOKENS: SpecialTokens = tuple(
    (200000 + i, name, True) for i, name in enumerate(_llama4_special_names())
)


@dataclass(frozen=True, eq=False)
class ModelFamily:
    """What the helpers need to know about one architecture.

    Families compare and hash by identity: there is one object per family.

    Attributes:
        name: the family key used throughout the package.
        model_type: ``config.json``'s ``model_type``.
        architecture: the transformers class of the whole model (``config.json``'s ``architectures``).
        real_model_id: the Hugging Face id the notebooks use on a GPU.
        processor_class: the transformers processor class name.
        sglang_chat_template: the name of SGLang's conversation template.
        special_tokens: ``(id, text, special)`` of every added token, at the real ids.
        vocab_size: rows of the real embedding matrix.
        bos_token: the token the tokenizer puts first (None: none).
        eos_tokens: tokens that end an answer.
        prompt_image_token: what the chat template writes for one image.
        prompt_image_marker: the token counted once per image in a prompt.
        image_start_token: opens one image in ``input_ids`` after expansion.
        image_end_token: closes it.
        embedding_token: the token repeated once per embedding row in ``input_ids``.
        embedding_format: the ``format`` of the dict that carries a precomputed embedding.
        embedding_key: the key of that dict that holds the embedding.
        embedding_extra_keys: processor-output keys that dict carries beside the embedding.
        grid_key: the processor-output key with the per-image patch grid, if any.
        spatial_merge_size: patches merged per side into one image token (grid families).
        vision_prefixes: checkpoint key prefixes of the vision weights.
        generate_keys: processor-output keys the transformers model's ``generate`` reads.
        mrope: the language model needs ``mm_token_type_ids`` for its multimodal rope.
        required_engine_args: ``sglang.Engine`` arguments needed at every size.
        real_engine_args: ``sglang.Engine`` arguments recommended for the real model.
        ignored_processor_kwargs: processor-call keywords that transformers 5.12.1
            accepts and silently ignores, each with what to pass instead.
    """

    name: str
    model_type: str
    architecture: str
    real_model_id: str
    processor_class: str
    sglang_chat_template: str
    special_tokens: SpecialTokens
    vocab_size: int
    bos_token: str | None
    eos_tokens: tuple[str, ...]
    prompt_image_token: str
    prompt_image_marker: str
    image_start_token: str
    image_end_token: str
    embedding_token: str
    embedding_format: str
    embedding_key: str
    embedding_extra_keys: tuple[str, ...]
    grid_key: str | None
    spatial_merge_size: int | None
    vision_prefixes: tuple[str, ...]
    generate_keys: tuple[str, ...]
    mrope: bool
    required_engine_args: tuple[tuple[str, Any], ...] = ()
    real_engine_args: tuple[tuple[str, Any], ...] = ()
    ignored_processor_kwargs: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"<ModelFamily {self.name}>"

    def token_id(self, text: str) -> int:
        """The real id of special token ``text``.

        Example:
            >>> QWEN2_5_VL.token_id("<|image_pad|>")
            151655
        """
        for token_id, token, _ in self.special_tokens:
            if token == text:
                return token_id
        raise KeyError(f"{text!r} is not a special token of {self.name}")

    @property
    def embedding_token_id(self) -> int:
        """The id of :attr:`embedding_token`."""
        return self.token_id(self.embedding_token)

    @property
    def first_special_id(self) -> int:
        """The lowest special-token id: every id below is an ordinary BPE token."""
        return self.special_tokens[0][0]

    def tokens_per_image(self, input_ids: Sequence[int]) -> list[int]:
        """Number of :attr:`embedding_token` ids of each image in expanded ``input_ids``.

        Example:
            >>> LLAMA4.tokens_per_image([1, 200080, 200092, 200092, 200081, 200080, 200092, 200081])
            [2, 1]
        """
        start, end = self.token_id(self.image_start_token), self.token_id(self.image_end_token)
        row = self.embedding_token_id
        counts: list[int] = []
        inside = False
        for token in input_ids:
            if token == start:
                counts.append(0)
                inside = True
            elif token == end:
                inside = False
            elif inside and token == row:
                counts[-1] += 1
        return counts

    def check_processor_kwargs(self, kwargs: Mapping[str, Any]) -> None:
        """Refuse processor-call keywords that would be silently ignored.

        Example:
            >>> QWEN2_5_VL.check_processor_kwargs({"max_pixels": 50176})
            Traceback (most recent call last):
            ...
            vlm_tutorial.errors.RequestFormatError: max_pixels= is ignored ...
        """
        for key, instead in self.ignored_processor_kwargs:
            if key in kwargs:
                raise RequestFormatError(
                    f"{key}= is ignored by the {self.processor_class} call in transformers 5 (the "
                    f"image tokens would not change); pass {instead} instead"
                )

    def prompt_images(self, prompt: str) -> int:
        """How many images a (not yet expanded) prompt asks for.

        Example:
            >>> LLAMA4.prompt_images("<|image|>What is it? <|image|>")
            2
        """
        return prompt.count(self.prompt_image_marker)

    def embedding_item(self, processor_output: Mapping[str, Any], embedding: Any) -> dict[str, Any]:
        """The ``image_data`` dict that carries a precomputed ``embedding`` to SGLang 0.5.17.

        Only what SGLang reads travels (no pixels):

        * Qwen2.5-VL: ``dict(format="precomputed_embedding", feature=embedding,
          image_grid_thw=...)``. SGLang's ``Qwen2_5_VLForConditionalGeneration``
          passes a 2-D ``feature`` through to the language model, and its
          processor reads ``image_grid_thw`` for the multimodal rope positions.
        * Llama 4: ``dict(format="processor_output", precomputed_embeddings=embedding)``.
          SGLang's ``mllama4`` runs its vision tower on a ``precomputed_embedding``
          feature and the scheduler dies; a ``processor_output`` dict whose
          ``precomputed_embeddings`` key is set skips the tower
          (``base_processor.collect_mm_items_from_processor_output``). The token
          ids come from ``generate(input_ids=...)``: SGLang reads a dict's own
          ``input_ids`` only for a request that has none.

        Example:
            >>> sorted(LLAMA4.embedding_item({"pixel_values": None}, "EMB"))
            ['format', 'precomputed_embeddings']
        """
        item: dict[str, Any] = {"format": self.embedding_format, self.embedding_key: embedding}
        for key in self.embedding_extra_keys:
            item[key] = processor_output[key]
        return item

    def engine_defaults(self, model_path: str | os.PathLike[str]) -> dict[str, Any]:
        """The family's required engine arguments, plus the real model's recommendations.

        Example:
            >>> LLAMA4.engine_defaults(LLAMA4.real_model_id)["tp_size"]
            4
            >>> LLAMA4.engine_defaults("/tmp/tiny-llama4")
            {'enable_multimodal': True}
        """
        args = dict(self.required_engine_args)
        if os.fspath(model_path) == self.real_model_id:
            args.update(self.real_engine_args)
        return args


QWEN2_5_VL = ModelFamily(
    name="qwen2_5_vl",
    model_type="qwen2_5_vl",
    architecture="Qwen2_5_VLForConditionalGeneration",
    real_model_id="Qwen/Qwen2.5-VL-3B-Instruct",
    processor_class="Qwen2_5_VLProcessor",
    sglang_chat_template="qwen2-vl",
    special_tokens=QWEN2_5_VL_SPECIAL_TOKENS,
    vocab_size=151936,
    bos_token=None,
    eos_tokens=("<|im_end|>", "<|endoftext|>"),
    prompt_image_token="<|vision_start|><|image_pad|><|vision_end|>",
    prompt_image_marker="<|vision_start|>",
    image_start_token="<|vision_start|>",
    image_end_token="<|vision_end|>",
    embedding_token="<|image_pad|>",
    embedding_format=PRECOMPUTED_EMBEDDING,
    embedding_key="feature",
    embedding_extra_keys=("image_grid_thw",),
    grid_key="image_grid_thw",
    spatial_merge_size=2,
    # Checkpoints use the hub layout ``visual.*``; ``model.visual.*`` is how the
    # module names them in memory, accepted too.
    vision_prefixes=("visual.", "model.visual."),
    generate_keys=("pixel_values", "image_grid_thw"),
    mrope=True,
    real_engine_args=(
        # 3.75 B parameters in bf16 are 7 GiB; 0.6 of an 80 GB GPU leaves ~40 GiB of KV cache.
        ("mem_fraction_static", 0.6),
    ),
    ignored_processor_kwargs=tuple(
        (key, 'size={"shortest_edge": min_pixels, "longest_edge": max_pixels}')
        for key in ("min_pixels", "max_pixels")
    ),
)

LLAMA4 = ModelFamily(
    name="llama4",
    model_type="llama4",
    architecture="Llama4ForConditionalGeneration",
    real_model_id="meta-llama/Llama-4-Scout-17B-16E-Instruct",
    processor_class="Llama4Processor",
    sglang_chat_template="llama-4",
    special_tokens=LLAMA4_SPECIAL_TOKENS,
    vocab_size=202048,
    bos_token="<|begin_of_text|>",
    eos_tokens=("<|eot|>", "<|eom|>", "<|end_of_text|>"),
    prompt_image_token="<|image|>",
    prompt_image_marker="<|image|>",
    image_start_token="<|image_start|>",
    image_end_token="<|image_end|>",
    embedding_token="<|patch|>",
    embedding_format=PROCESSOR_OUTPUT,
    embedding_key="precomputed_embeddings",
    embedding_extra_keys=(),
    grid_key=None,
    spatial_merge_size=None,
    vision_prefixes=("vision_model.", "multi_modal_projector."),
    generate_keys=("pixel_values",),
    mrope=False,
    # SGLang 0.5.17 turns multimodal input off for llama4 unless asked: the image
    # would be silently ignored.
    required_engine_args=(("enable_multimodal", True),),
    real_engine_args=(
        # 109 B parameters in bf16 (203 GiB) need four 80 GB GPUs: 51 GiB each.
        ("tp_size", 4),
        # 0.8 of 80 GB is 64 GiB per GPU: the weights plus ~13 GiB of KV cache.
        ("mem_fraction_static", 0.8),
        # The 10M-token native context would ask for far more KV cache than a tutorial needs.
        ("context_length", 65536),
    ),
)

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (QWEN2_5_VL, LLAMA4)}

_CONFIG_FILE = "config.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def supported() -> str:
    """The supported architectures, for error messages.

    Example:
        >>> supported()
        'Qwen2_5_VLForConditionalGeneration (model_type qwen2_5_vl), Llama4ForConditionalGeneration (model_type llama4)'
    """
    return ", ".join(f"{f.architecture} (model_type {f.model_type})" for f in FAMILIES.values())


def family_of_processor(processor: Any) -> ModelFamily | None:
    """The family whose processor class ``processor`` is, or None.

    Example:
        >>> family_of_processor(object()) is None
        True
    """
    name = type(processor).__name__
    return next((f for f in FAMILIES.values() if f.processor_class == name), None)


def get_family(name: str | ModelFamily) -> ModelFamily:
    """Return the family called ``name`` (``"qwen2_5_vl"`` or ``"llama4"``).

    Example:
        >>> get_family("qwen2_5_vl").embedding_token
        '<|image_pad|>'
    """
    if isinstance(name, ModelFamily):
        return name
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise UnknownModelFamilyError(
            f"unknown model family {name!r}; supported: {sorted(FAMILIES)}"
        ) from None


def family_from_config(config: Mapping[str, Any], where: str = "the config") -> ModelFamily:
    """The family of a ``config.json`` dict, by its ``model_type`` (or its ``architectures``).

    Example:
        >>> family_from_config({"model_type": "qwen2_5_vl"}).name
        'qwen2_5_vl'
    """
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    for family in FAMILIES.values():
        if model_type == family.model_type or family.architecture in architectures:
            return family
    raise UnknownModelFamilyError(
        f"{where} describes model_type {model_type!r} (architectures {list(architectures)}), "
        f"which this tutorial does not cover; supported: {supported()}"
    )


def family_from_model_type(model_type: str) -> ModelFamily:
    """Map a ``config.json`` ``model_type`` to its family.

    Example:
        >>> family_from_model_type("llama4").name
        'llama4'
    """
    return family_from_config({"model_type": model_type}, f"model_type {model_type!r}")


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a ``config.json``; errors name the file.

    Example:
        >>> read_config_file(Path("/nonexistent/config.json"))
        Traceback (most recent call last):
        ...
        vlm_tutorial.errors.UnknownModelFamilyError: cannot read /nonexistent/config.json: ...
    """
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UnknownModelFamilyError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); re-download the "
            "checkpoint or fix the file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UnknownModelFamilyError(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise UnknownModelFamilyError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value


def is_hub_id(text: str) -> bool:
    """True for text shaped like ``owner/name`` that is not an existing local path.

    Example:
        >>> is_hub_id("Qwen/Qwen2.5-VL-7B-Instruct"), is_hub_id("/tmp")
        (True, False)
    """
    return bool(_REPO_ID.match(text)) and not Path(text).exists()


def hub_config_path(repo_id: str, revision: str | None = None) -> Path:
    """``config.json`` of hub model ``repo_id``: from the local cache, else downloaded alone.

    Example:
        >>> hub_config_path("Qwen/Qwen2.5-VL-7B-Instruct")  # doctest: +SKIP
        PosixPath('.../snapshots/.../config.json')
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, _CONFIG_FILE, revision=revision)
    if isinstance(cached, str):
        return Path(cached)
    try:
        return Path(hf_hub_download(repo_id, _CONFIG_FILE, revision=revision))
    except Exception as exc:  # network, auth, offline mode, missing repo: all say the same
        raise UnknownModelFamilyError(
            f"{repo_id!r} is not a local folder, and its config.json is neither in the Hugging "
            f"Face cache nor downloadable ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
            "Check the path or the model id; for a gated model run `hf auth login`; on an offline "
            "machine download the checkpoint first and pass its folder"
        ) from None


def detect_family(model: Any) -> ModelFamily:
    """Return the family of a checkpoint folder, a hub id, a family name, a config or a processor.

    A folder is recognised by its ``config.json``; a hub id by its
    ``config.json`` from the Hugging Face cache or, failing that, downloaded
    alone (the two real model ids need neither). Anything else raises
    :class:`~vlm_tutorial.errors.UnknownModelFamilyError` naming the supported
    architectures.

    Example:
        >>> detect_family("Qwen/Qwen2.5-VL-3B-Instruct").name
        'qwen2_5_vl'
    """
    if isinstance(model, ModelFamily):
        return model
    model_type = getattr(model, "model_type", None)
    if isinstance(model_type, str):
        return family_from_model_type(model_type)
    by_processor = family_of_processor(model)
    if by_processor is not None:
        return by_processor
    if not isinstance(model, (str, os.PathLike)):
        raise UnknownModelFamilyError(
            f"cannot tell the model family of a {type(model).__name__}; pass a checkpoint "
            "folder, a model id, a transformers config or processor"
        )
    text = os.fspath(model)
    if text in FAMILIES:
        return FAMILIES[text]
    for family in FAMILIES.values():
        if text == family.real_model_id:
            return family
    path = Path(text).expanduser()
    if path.is_dir():
        config = path / _CONFIG_FILE
        if not config.is_file():
            raise UnknownModelFamilyError(
                f"{text!r} is a folder without a config.json, so not a checkpoint; pass the "
                "folder that save_pretrained wrote"
            )
        return family_from_config(read_config_file(config), str(config))
    if is_hub_id(text):
        config = hub_config_path(text)
        return family_from_config(read_config_file(config), f"{text}'s config.json")
    raise UnknownModelFamilyError(
        f"{text!r} is neither an existing checkpoint folder nor a hub id like "
        f"'Qwen/Qwen2.5-VL-3B-Instruct'; supported architectures: {supported()}"
    )


__all__ = [
    "PROCESSOR_OUTPUT",
    "PRECOMPUTED_EMBEDDING",
    "ModelFamily",
    "family_of_processor",
    "FAMILIES",
    "QWEN2_5_VL",
    "LLAMA4",
    "QWEN2_5_VL_SPECIAL_TOKENS",
    "LLAMA4_SPECIAL_TOKENS",
    "supported",
    "get_family",
    "family_from_config",
    "family_from_model_type",
    "read_config_file",
    "is_hub_id",
    "hub_config_path",
    "detect_family",
]
