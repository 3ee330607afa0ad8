"""Special-token ids of the real checkpoints, shared by the registry and tiny-model tests.

From the Hub models' tokenizer_config.json and config.json (Qwen2.5-VL: image_token_id 151655,
vision_start/end 151652/151653; Llama 4: boi/eoi 200080/200081, image_token_index 200092).
"""

REAL_SPECIAL_IDS = {
    "qwen2_5_vl": {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|object_ref_start|>": 151646,
        "<|box_start|>": 151648,
        "<|quad_end|>": 151651,
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|vision_pad|>": 151654,
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
        "<tool_call>": 151657,
        "</tool_call>": 151658,
        "<|fim_prefix|>": 151659,
        "<|file_sep|>": 151664,
    },
    "llama4": {
        "<|begin_of_text|>": 200000,
        "<|end_of_text|>": 200001,
        "<|header_start|>": 200005,
        "<|header_end|>": 200006,
        "<|eom|>": 200007,
        "<|eot|>": 200008,
        "<|python_start|>": 200016,
        "<|finetune_right_pad|>": 200018,
        "<|image_start|>": 200080,
        "<|image_end|>": 200081,
        "<|tile_x_separator|>": 200084,
        "<|tile_y_separator|>": 200085,
        "<|image|>": 200090,
        "<|patch|>": 200092,
        "<|vision_reserved_special_token_1047|>": 201133,
    },
}
