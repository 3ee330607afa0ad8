"""The family registry: tokens, embedding items, engine defaults, and recognising checkpoints."""

from __future__ import annotations

import json

import pytest

from vlm_tutorial.errors import UnknownModelFamilyError
from vlm_tutorial.families import (
    FAMILIES,
    LLAMA4,
    QWEN2_5_VL,
    detect_family,
    family_from_model_type,
    get_family,
)


def test_get_family():
    assert get_family("qwen2_5_vl") is QWEN2_5_VL
    assert get_family(LLAMA4) is LLAMA4
    with pytest.raises(UnknownModelFamilyError, match="supported: \\['llama4', 'qwen2_5_vl'\\]"):
        get_family("llava")


def test_families_are_hashable_singletons():
    assert {QWEN2_5_VL: 1, LLAMA4: 2}[LLAMA4] == 2
    assert len({QWEN2_5_VL, LLAMA4, get_family("llama4")}) == 2


@pytest.mark.parametrize(
    ("source", "family"),
    [
        ("Qwen/Qwen2.5-VL-3B-Instruct", QWEN2_5_VL),
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", LLAMA4),
        ("llama4", LLAMA4),
    ],
)
def test_detect_family_from_names(source, family):
    assert detect_family(source) is family


def test_detect_family_from_checkpoints_and_processors(tiny_paths, processors):
    assert detect_family(tiny_paths["qwen2_5_vl"]) is QWEN2_5_VL
    assert detect_family(tiny_paths["llama4"]) is LLAMA4
    assert detect_family(processors["llama4"]) is LLAMA4
    assert detect_family(processors["qwen2_5_vl"]) is QWEN2_5_VL


@pytest.mark.parametrize(
    ("config", "family"),
    [
        ({"model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"]}, QWEN2_5_VL),
        ({"architectures": ["Llama4ForConditionalGeneration"]}, LLAMA4),
    ],
)
def test_any_local_checkpoint_of_the_architectures_is_recognised(tmp_path, config, family):
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert detect_family(tmp_path) is family
    assert detect_family(str(tmp_path)) is family


def _fill_hub_cache(cache, repo_id: str, config: dict) -> None:
    """The layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<rev>/config.json}."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))


def test_hub_ids_are_recognised_from_the_cached_config_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fill_hub_cache(tmp_path, "Qwen/Qwen2.5-VL-7B-Instruct", {"model_type": "qwen2_5_vl"})
    _fill_hub_cache(tmp_path, "org/some-llava", {"model_type": "llava"})
    assert detect_family("Qwen/Qwen2.5-VL-7B-Instruct") is QWEN2_5_VL
    with pytest.raises(UnknownModelFamilyError, match="model_type 'llava'.*Llama4ForConditionalGeneration"):
        detect_family("org/some-llava")
    # Not in the cache, and the hub is out of reach: one clear error, no traceback from the hub client.
    with pytest.raises(UnknownModelFamilyError, match="neither in the Hugging Face cache nor downloadable"):
        detect_family("meta-llama/Llama-4-Maverick-17B-128E-Instruct")


def test_detect_family_rejects_other_models(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(UnknownModelFamilyError, match="model_type 'llava'.*supported: Qwen2_5_VL"):
        detect_family(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UnknownModelFamilyError, match="config.json is not valid JSON"):
        detect_family(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(UnknownModelFamilyError, match="folder without a config.json"):
        detect_family(tmp_path)
    with pytest.raises(UnknownModelFamilyError, match="neither an existing checkpoint folder"):
        detect_family(str(tmp_path / "missing" / "deeper"))
    with pytest.raises(UnknownModelFamilyError, match="cannot tell the model family of a int"):
        detect_family(3)
    assert family_from_model_type("qwen2_5_vl") is QWEN2_5_VL


def test_real_llama4_gets_tensor_parallel_and_a_tiny_one_does_not(tiny_paths):
    real = LLAMA4.engine_defaults(LLAMA4.real_model_id)
    assert real["tp_size"] == 4 and real["enable_multimodal"] is True
    assert real["context_length"] == 65536
    assert LLAMA4.engine_defaults(tiny_paths["llama4"]) == {"enable_multimodal": True}
    assert QWEN2_5_VL.engine_defaults(tiny_paths["qwen2_5_vl"]) == {}


def test_llama4_memory_fraction_holds_scouts_weights_on_80_gb_gpus():
    # 109 B bf16 parameters over tp_size GPUs must fit in mem_fraction_static of an 80 GB GPU,
    # with room left for a KV cache of at least one full context.
    args = LLAMA4.engine_defaults(LLAMA4.real_model_id)
    weights_per_gpu = 109e9 * 2 / args["tp_size"]
    static = args["mem_fraction_static"] * 80e9
    kv_per_token = 48 * (8 // args["tp_size"]) * 128 * 2 * 2  # layers x KV heads x dims x (k, v) x bf16
    assert static - weights_per_gpu > args["context_length"] * kv_per_token


def test_embedding_tokens_match_the_tiny_checkpoints(processors):
    for name, proc in processors.items():
        family = get_family(name)
        assert proc.tokenizer.convert_tokens_to_ids(family.embedding_token) == family.embedding_token_id
        assert type(proc).__name__ == family.processor_class
        for token_id, text, _ in family.special_tokens[:40]:
            assert proc.tokenizer.convert_tokens_to_ids(text) == token_id


def test_tokens_per_image_counts_each_image(processors, image):
    from PIL import Image

    from vlm_tutorial.prompts import build_prompt
    from vlm_bench.requests import run_processor

    small = image.resize((image.width // 4, image.height // 4), Image.Resampling.BICUBIC)
    for name, proc in processors.items():
        family = FAMILIES[name]
        prompt = build_prompt(proc, "Compare <image> with <image>.", num_images=2)
        ids = run_processor(proc, prompt, [image, small])["input_ids"][0].tolist()
        alone = [
            run_processor(proc, build_prompt(proc, "<image>"), [im])["input_ids"][0]
            .tolist()
            .count(family.embedding_token_id)
            for im in (image, small)
        ]
        assert family.tokens_per_image(ids) == alone
        assert alone[0] > alone[1] > 0


def test_embedding_items_carry_only_what_sglang_reads():
    inputs = {"pixel_values": "PIXELS", "image_grid_thw": "GRID", "input_ids": "IDS"}
    assert QWEN2_5_VL.embedding_item(inputs, "EMB") == {
        "format": "precomputed_embedding",
        "feature": "EMB",
        "image_grid_thw": "GRID",
    }
    assert LLAMA4.embedding_item(inputs, "EMB") == {
        "format": "processor_output",
        "precomputed_embeddings": "EMB",
    }


def test_a_processor_keyword_transformers_ignores_is_refused_with_the_fix(processors):
    """transformers 5 ignores max_pixels= at call time: the grid would silently stay the same."""
    from vlm_tutorial.errors import RequestFormatError
    from vlm_tutorial.images import example_image
    from vlm_tutorial.prompts import build_prompt
    from vlm_bench.requests import run_processor

    processor = processors["qwen2_5_vl"]
    prompt = build_prompt(processor, "What's shown here: <image>?")
    image = example_image()
    budget = image.width * image.height // 4
    # The keyword really is ignored by the processor itself...
    plain = processor(text=[prompt], images=[image], return_tensors="pt")
    ignored = processor(text=[prompt], images=[image], max_pixels=budget, return_tensors="pt")
    assert ignored["image_grid_thw"].tolist() == plain["image_grid_thw"].tolist()
    # ...so the helper refuses it, naming what works, and what works changes the grid.
    with pytest.raises(RequestFormatError, match=r'max_pixels= is ignored.*size=\{"shortest_edge"'):
        run_processor(processor, prompt, [image], max_pixels=budget)
    smaller = run_processor(
        processor, prompt, [image], size={"shortest_edge": 3136, "longest_edge": budget}
    )
    assert smaller["image_grid_thw"].prod() < plain["image_grid_thw"].prod()
