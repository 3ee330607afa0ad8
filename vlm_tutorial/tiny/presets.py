"""Sizes of the tiny checkpoints, and the real special tokens each family keeps.

Everything here is plain data: :data:`PRESETS` maps a family name to its
presets, each preset to the keyword arguments of the text config, the vision
config and the image processor (always the real model's settings), and says
whether it is trained on toy pictures (only ``tiny`` is). The special-token
tables give every token the id it has in the real checkpoint, so that ids
read from a tiny model's ``input_ids`` mean what they mean for the real model.

Example:
    >>> from vlm_tutorial.tiny.presets import PRESETS
    >>> sorted(PRESETS["llama4"])
    ['text-heavy', 'tiny', 'tp4']
"""

from __future__ import annotations

from typing import Any

#: Qwen2.5-VL's added tokens at their real ids (``tokenizer_config.json``'s
#: ``added_tokens_decoder`` of ``Qwen/Qwen2.5-VL-3B-Instruct``), with their
#: ``special`` flag. Ids below 151643 are ordinary byte-level BPE tokens.
QWEN2_5_VL_SPECIAL_TOKENS: tuple[tuple[int, str, bool], ...] = (
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
LLAMA4_SPECIAL_TOKENS: tuple[tuple[int, str, bool], ...] = tuple(
    (200000 + i, name, True) for i, name in enumerate(_llama4_special_names())
)

#: Per family: the real ``vocab_size`` (embedding rows) and the id where the
#: special tokens start (every id below is an ordinary BPE token).
VOCAB: dict[str, dict[str, int]] = {
    "qwen2_5_vl": {"vocab_size": 151936, "first_special_id": 151643},
    "llama4": {"vocab_size": 202048, "first_special_id": 200000},
}

#: Standard deviation of the random weight matrices of the untrained presets:
#: at the usual 0.02 a random tiny model answers with one token repeated.
INIT_STD: dict[str, float] = {"qwen2_5_vl": 0.25, "llama4": 0.5}

#: Qwen2.5-VL's image processor, as in ``preprocessor_config.json`` of
#: ``Qwen/Qwen2.5-VL-3B-Instruct``: 4 to 16384 image tokens per image (one
#: token per 28x28 pixels), CLIP's mean and std.
QWEN2_5_VL_IMAGE: dict[str, Any] = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "merge_size": 2,
    "temporal_patch_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}

#: Llama 4 Scout's image processor (``preprocessor_config.json`` of
#: ``meta-llama/Llama-4-Scout-17B-16E-Instruct``): 336x336 tiles of 14 px
#: patches (144 ``<|patch|>`` tokens a tile after the 2x2 pixel shuffle), at
#: most 16 tiles plus a global tile, never upscaled past one tile.
LLAMA4_IMAGE: dict[str, Any] = {
    "tile_size": 336,
    "patch_size": 14,
    "max_patches": 16,
    "resize_to_max_canvas": False,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}

#: Size presets per family: ``PRESETS[family][preset]`` holds the config overrides.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "qwen2_5_vl": {
        "tiny": {
            "text": {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                # Sums to head_dim / 2 = 16. The width section comes last and
                # gets the lowest frequencies; [1, 1, 14] leaves it frequencies
                # that tell left from right across a picture.
                "mrope_section": [1, 1, 14],
            },
            "vision": {
                "depth": 2,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_heads": 2,
                "fullatt_block_indexes": [1],
            },
            "image": QWEN2_5_VL_IMAGE,
            "tie_word_embeddings": True,
            "trained": True,
        },
        "text-heavy": {
            "text": {
                "hidden_size": 512,
                "intermediate_size": 1536,
                "num_hidden_layers": 4,
                "num_attention_heads": 8,
                "num_key_value_heads": 2,
                "mrope_section": [8, 12, 12],  # head_dim 64
            },
            "vision": {
                "depth": 4,
                "hidden_size": 128,
                "intermediate_size": 256,
                "num_heads": 4,
                "fullatt_block_indexes": [1, 3],
            },
            "image": QWEN2_5_VL_IMAGE,
            "tie_word_embeddings": True,
        },
    },
    "llama4": {
        "tiny": {
            "text": {
                "hidden_size": 64,
                "intermediate_size": 64,
                "intermediate_size_mlp": 128,
                "num_hidden_layers": 2,
                # No query/key norm, as in Llama 4 Maverick: with Scout's norm
                # a two-layer model's attention scores stay within
                # +-sqrt(head_dim) and it learns its answers far too slowly.
                # (Scout's NoPE layer is every fourth one, the layer index
                # SGLang hard-codes, so two layers both use rope.)
                "use_qk_norm": False,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 32,
                "num_local_experts": 4,
                "num_experts_per_tok": 1,
                "interleave_moe_layer_step": 1,
            },
            "vision": {
                "hidden_size": 64,
                "intermediate_size": 256,  # hidden_size / pixel_shuffle_ratio**2
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "vision_output_dim": 64,
            },
            "image": LLAMA4_IMAGE,
            "tie_word_embeddings": False,
            "trained": True,
        },
        "text-heavy": {
            "text": {
                "hidden_size": 256,
                "intermediate_size": 256,
                "intermediate_size_mlp": 512,
                "num_hidden_layers": 4,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "head_dim": 64,
                "num_local_experts": 4,
                "num_experts_per_tok": 1,
                "interleave_moe_layer_step": 1,
            },
            "vision": {
                "hidden_size": 128,
                "intermediate_size": 512,
                "num_hidden_layers": 4,
                "num_attention_heads": 4,
                "vision_output_dim": 128,
            },
            "image": LLAMA4_IMAGE,
            "tie_word_embeddings": False,
        },
        "tp4": {
            # Heads, KV heads, experts and intermediate sizes divide by 4.
            "text": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "intermediate_size_mlp": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 4,
                "head_dim": 16,
                "num_local_experts": 4,
                "num_experts_per_tok": 1,
                "interleave_moe_layer_step": 1,
            },
            "vision": {
                "hidden_size": 64,
                "intermediate_size": 256,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "vision_output_dim": 64,
            },
            "image": LLAMA4_IMAGE,
            "tie_word_embeddings": False,
        },
    },
}

__all__ = [
    "PRESETS",
    "VOCAB",
    "INIT_STD",
    "QWEN2_5_VL_IMAGE",
    "LLAMA4_IMAGE",
    "QWEN2_5_VL_SPECIAL_TOKENS",
    "LLAMA4_SPECIAL_TOKENS",
]
