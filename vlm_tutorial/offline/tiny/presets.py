"""Sizes of the tiny checkpoints.

Everything here is plain data: :data:`PRESETS` maps a family name to its
presets, each preset to the keyword arguments of the text config, the vision
config and the image processor (always the real model's settings), and says
whether it is trained on toy pictures (only ``tiny`` is). The special tokens,
at the ids they have in the real checkpoints, are the family registry's
(:attr:`vlm_tutorial.families.ModelFamily.special_tokens`).

Example:
    >>> from vlm_tutorial.offline.tiny.presets import PRESETS
    >>> sorted(PRESETS["llama4"])
    ['text-heavy', 'tiny', 'tp4']
"""

from __future__ import annotations

from typing import Any

from vlm_tutorial.families import FAMILIES

#: Per family: the real ``vocab_size`` (embedding rows) and the id where the
#: special tokens start (every id below is an ordinary BPE token), as the
#: family registry gives them.
VOCAB: dict[str, dict[str, int]] = {
    family.name: {
        "vocab_size": family.vocab_size,
        "first_special_id": min(token_id for token_id, _, _ in family.special_tokens),
    }
    for family in FAMILIES.values()
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
