"""Tests of vlm_tutorial.offline.tiny: tiny offline checkpoints of the real architectures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from tests.real_ids import REAL_SPECIAL_IDS
from vlm_tutorial.errors import UnknownModelFamilyError
from vlm_tutorial.offline.tiny import PRESETS, build_tiny_model, tiny_model_path
from vlm_tutorial.offline.tiny.builder import INFO_FILE, check_preset, spec_hash

FAMILIES = ["qwen2_5_vl", "llama4"]

MESSAGES = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What's shown here: "},
            {"type": "image"},
            {"type": "text", "text": "?"},
        ],
    }
]

# The prompts SGLang's VLM query docs print for MESSAGES.
EXPECTED_PROMPT = {
    "qwen2_5_vl": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat's shown here: <|vision_start|><|image_pad|><|vision_end|>?<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "llama4": (
        "<|begin_of_text|><|header_start|>user<|header_end|>\n\n"
        "What's shown here: <|image|>?<|eot|><|header_start|>assistant<|header_end|>\n\n"
    ),
}


EXPECTED_CLASSES = {
    "qwen2_5_vl": (
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen2_5_VLProcessor",
        "Qwen2VLImageProcessor",
    ),
    "llama4": ("Llama4ForConditionalGeneration", "Llama4Processor", "Llama4ImageProcessor"),
}

VOCAB_SIZE = {"qwen2_5_vl": 151936, "llama4": 202048}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family's tiny checkpoint with random weights (no training), built once for this module."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("tiny")
    return {family: build_tiny_model(family, root / family, train=False) for family in FAMILIES}


@pytest.fixture(scope="module")
def loaded(built: dict[str, Path]) -> dict[str, tuple]:
    """(processor, float32 model) per family, loaded from disk like a real checkpoint."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return {
        family: (
            AutoProcessor.from_pretrained(path),
            AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval(),
        )
        for family, path in built.items()
    }


def example_like_image() -> Image.Image:
    img = Image.new("RGB", (96, 64), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([8, 8, 44, 40], fill="red")
    draw.ellipse([52, 18, 90, 58], fill="blue")
    return img


def processed(processor, family: str, image: Image.Image | None = None):
    prompt = processor.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    image = example_like_image() if image is None else image
    kwargs = {"add_special_tokens": False} if family == "llama4" else {}
    inputs = processor(text=[prompt], images=[image], return_tensors="pt", **kwargs)
    if family == "llama4":
        inputs["pixel_values"] = inputs["pixel_values"].float()  # the processor returns bf16
    return inputs


def tensors(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(path.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


def assert_text_and_vision_shards(path: Path, family: str) -> None:
    """Two shards and an index, like the real checkpoints; the vision weights alone in the second."""
    index = json.loads((path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert sorted(p.name for p in path.glob("*.safetensors")) == shards
    vision = ("visual.",) if family == "qwen2_5_vl" else ("vision_model.", "multi_modal_projector.")
    for key, shard in index["weight_map"].items():
        assert (shard == shards[1]) == key.startswith(vision), key
    assert index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for t in tensors(path).values()
    )


# --- names and presets -------------------------------------------------------


def test_unknown_family_is_rejected_before_building(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelFamilyError, match="qwen2_5_vl"):
        build_tiny_model("qwen", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_unknown_preset_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'text-heavy', 'tiny', 'tp4'"):
        build_tiny_model("llama4", tmp_path / "x", preset="huge")
    with pytest.raises(ValueError, match="tp4"):
        tiny_model_path("llama4", preset="tp5")
    with pytest.raises(ValueError, match="'text-heavy', 'tiny'"):
        check_preset("qwen2_5_vl", "tp4")  # only Llama 4 has a tensor-parallel preset


@pytest.mark.parametrize(("family", "preset"), [(f, p) for f in PRESETS for p in PRESETS[f]])
def test_every_preset_is_a_valid_choice(family: str, preset: str) -> None:
    assert check_preset(family, preset)[0] == family


def test_presets_keep_sglang_constraints() -> None:
    for spec in PRESETS["qwen2_5_vl"].values():
        text, vision = spec["text"], spec["vision"]
        head_dim = text["hidden_size"] // text["num_attention_heads"]
        assert sum(text["mrope_section"]) == head_dim // 2
        assert vision["hidden_size"] != 1176 and text["hidden_size"] != 1176
    for spec in PRESETS["llama4"].values():
        vision = spec["vision"]
        assert vision["intermediate_size"] == vision["hidden_size"] / 0.5**2
        assert spec["text"]["hidden_size"] != 1176
    tp4 = PRESETS["llama4"]["tp4"]["text"]
    for key in (
        "num_attention_heads",
        "num_key_value_heads",
        "num_local_experts",
        "intermediate_size",
        "intermediate_size_mlp",
    ):
        assert tp4[key] % 4 == 0, key
    assert PRESETS["llama4"]["tp4"]["vision"]["num_attention_heads"] % 4 == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_text_heavy_is_mostly_text(family: str) -> None:
    """Sizes from a meta-device model: no weights are allocated."""
    from transformers import Llama4ForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

    from vlm_tutorial.offline.tiny.builder import model_config, parameter_counts

    model_class = (
        Qwen2_5_VLForConditionalGeneration
        if family == "qwen2_5_vl"
        else Llama4ForConditionalGeneration
    )
    sizes = {}
    for preset in ("tiny", "text-heavy"):
        with torch.device("meta"):
            model = model_class(model_config(family, PRESETS[family][preset]))
        sizes[preset] = {k: 2 * n for k, n in parameter_counts(model, family).items()}  # bf16 bytes
    heavy = sizes["text-heavy"]
    assert 150e6 <= heavy["text"] <= 300e6, heavy
    assert 1e6 <= heavy["vision"] <= 5e6, heavy
    # The real vocabulary at hidden size 64: 20 MB (tied) and 52 MB of bfloat16 rows.
    assert sizes["tiny"]["text"] < 60e6 and sizes["tiny"]["vision"] < 1e6, sizes["tiny"]


# --- the folder ----------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_folder_is_sharded_bf16_with_an_index(built: dict[str, Path], family: str) -> None:
    path = built[family]
    assert_text_and_vision_shards(path, family)
    config = json.loads((path / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    assert {t.dtype for t in tensors(path).values()} == {torch.bfloat16}
    info = json.loads((path / INFO_FILE).read_text())
    assert info["family"] == family and info["seed"] == 0


def test_same_seed_same_tensors_other_seed_differs(built: dict[str, Path], tmp_path: Path) -> None:
    first = built["qwen2_5_vl"]
    again = build_tiny_model("qwen2_5_vl", tmp_path / "again", seed=0, train=False)
    other = build_tiny_model("qwen2_5_vl", tmp_path / "other", seed=1, train=False)
    for shard in first.glob("*.safetensors"):
        assert (again / shard.name).read_bytes() == shard.read_bytes(), shard.name
    a, b = tensors(first), tensors(other)
    assert a.keys() == b.keys()
    for key in ("model.embed_tokens.weight", "visual.patch_embed.proj.weight"):
        assert not torch.equal(a[key], b[key]), key


# --- loading -----------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_loads_offline_with_the_real_classes(loaded: dict[str, tuple], family: str) -> None:
    processor, model = loaded[family]
    model_name, processor_name, image_processor_name = EXPECTED_CLASSES[family]
    assert type(model).__name__ == model_name
    assert type(processor).__name__ == processor_name
    assert type(processor.image_processor).__name__ == image_processor_name
    assert model.dtype == torch.float32


@pytest.mark.parametrize("family", FAMILIES)
def test_special_tokens_sit_at_their_real_ids(loaded: dict[str, tuple], family: str) -> None:
    tokenizer = loaded[family][0].tokenizer
    for token, token_id in REAL_SPECIAL_IDS[family].items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id, token
        assert tokenizer.convert_ids_to_tokens(token_id) == token
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id], token


def test_eos_pad_bos_match_the_real_checkpoints(loaded: dict[str, tuple]) -> None:
    qwen = loaded["qwen2_5_vl"][0].tokenizer
    assert (qwen.eos_token, qwen.eos_token_id, qwen.pad_token_id, qwen.bos_token) == (
        "<|im_end|>",
        151645,
        151643,
        None,
    )
    llama = loaded["llama4"][0].tokenizer
    assert (llama.bos_token_id, llama.eos_token_id, llama.pad_token_id) == (200000, 200008, 200018)
    config = loaded["llama4"][1].config
    assert (config.boi_token_index, config.eoi_token_index, config.image_token_index) == (
        200080,
        200081,
        200092,
    )
    assert loaded["qwen2_5_vl"][1].config.image_token_id == 151655


@pytest.mark.parametrize("family", FAMILIES)
def test_every_model_id_decodes(loaded: dict[str, tuple], family: str) -> None:
    processor, model = loaded[family]
    vocab_size = model.config.get_text_config().vocab_size
    assert vocab_size == VOCAB_SIZE[family]
    assert len(processor.tokenizer) == vocab_size
    ids = [0, 255, 256, 1000, VOCAB_SIZE[family] - 300, vocab_size - 1]
    assert all(processor.tokenizer.convert_ids_to_tokens(i) is not None for i in ids)
    assert processor.tokenizer.decode([vocab_size - 1]).strip()


@pytest.mark.parametrize("family", FAMILIES)
def test_text_round_trips(loaded: dict[str, tuple], family: str) -> None:
    tokenizer = loaded[family][0].tokenizer
    text = "Grüße, 世界! What's shown here: 42?\n"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("family", FAMILIES)
def test_answer_and_question_words_are_one_token_each(
    loaded: dict[str, tuple], family: str
) -> None:
    tokenizer = loaded[family][0].tokenizer
    answer = "a red circle and a blue square; a yellow triangle"
    ids = tokenizer.encode(answer, add_special_tokens=False)
    pieces = ["a", " red", " circle", " and", " a", " blue", " square", ";", " a", " yellow"]
    assert [tokenizer.decode([i]) for i in ids] == [*pieces, " triangle"]
    assert len(tokenizer.encode(" green", add_special_tokens=False)) == 1
    question = tokenizer.encode("What's shown here: ", add_special_tokens=False)
    assert [tokenizer.decode([i]) for i in question] == ["What", "'s", " shown", " here", ":", " "]
    # Ordinary text still round-trips through the byte-level pieces.
    assert tokenizer.decode(tokenizer.encode("reds circled", add_special_tokens=False)) == (
        "reds circled"
    )
    assert all(i < 1000 for i in ids)  # word pieces sit right after the 256 byte tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_chat_template_renders_the_real_prompt(loaded: dict[str, tuple], family: str) -> None:
    processor = loaded[family][0]
    prompt = processor.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert prompt == EXPECTED_PROMPT[family]
    assert (
        processor.tokenizer.apply_chat_template(
            MESSAGES, add_generation_prompt=True, tokenize=False
        )
        == prompt
    )


# --- the real preprocessing -----------------------------------------------------
# Expected values come from the published rules, written out here: Qwen2-VL's
# smart_resize (qwen-vl-utils, preprocessor_config.json of Qwen2.5-VL-3B:
# min_pixels 3136, max_pixels 12845056, patch 14, merge 2) and Llama 4's
# tiling (336 px tiles, at most 16, the canvas needing the least upscaling,
# else the least downscaling, ties to the smaller canvas; a global tile when
# there are several).


def qwen_grid(width: int, height: int) -> tuple[int, int, int]:
    factor, min_pixels, max_pixels = 28, 3136, 12845056
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return 1, h_bar // 14, w_bar // 14


def llama4_tiles(width: int, height: int) -> tuple[int, int]:
    canvases = [(a, b) for a in range(1, 17) for b in range(1, 17) if a * b <= 16]
    scales = {c: min(336 * c[0] / height, 336 * c[1] / width) for c in canvases}
    up = [s for s in scales.values() if s >= 1]
    best = min(up) if up else max(scales.values())
    return min((c for c in canvases if scales[c] == best), key=lambda c: c[0] * c[1])


SIZES = [
    (448, 336),
    (96, 64),
    (1000, 700),
    (300, 900),
]  # (width, height); the first is the example's


def test_preprocessing_rules_above_give_the_known_values() -> None:
    """The example image: 192 Qwen tokens on a 24x32 grid; two Llama 4 tiles side by side."""
    assert qwen_grid(448, 336) == (1, 24, 32)
    assert llama4_tiles(448, 336) == (1, 2)
    assert llama4_tiles(96, 64) == (1, 1) and llama4_tiles(1000, 700) == (3, 3)


@pytest.mark.parametrize("family", FAMILIES)
def test_processor_settings_are_the_real_ones(built: dict[str, Path], family: str) -> None:
    config = json.loads((built[family] / "processor_config.json").read_text())
    image = config.get("image_processor", config)
    model = json.loads((built[family] / "config.json").read_text())
    if family == "qwen2_5_vl":
        assert image["min_pixels"] == 3136 and image["max_pixels"] == 12845056
        assert (image["patch_size"], image["merge_size"], image["temporal_patch_size"]) == (
            14,
            2,
            2,
        )
        assert image["image_mean"] == [0.48145466, 0.4578275, 0.40821073]
        assert image["image_std"] == [0.26862954, 0.26130258, 0.27577711]
        vision = model["vision_config"]
        assert (
            vision["patch_size"],
            vision["spatial_merge_size"],
            vision["temporal_patch_size"],
        ) == (
            14,
            2,
            2,
        )
    else:
        assert image["size"] == {"height": 336, "width": 336}
        assert image["max_patches"] == 16 and image["resize_to_max_canvas"] is False
        assert image["image_mean"] == [0.5, 0.5, 0.5] and image["image_std"] == [0.5, 0.5, 0.5]
        assert config["patch_size"] == 14
        vision = model["vision_config"]
        assert (vision["image_size"], vision["patch_size"]) == (336, 14)


@pytest.mark.parametrize("size", SIZES)
def test_qwen_image_tokens_follow_smart_resize(loaded: dict[str, tuple], size) -> None:
    processor, model = loaded["qwen2_5_vl"]
    image = Image.new("RGB", size, "white")
    inputs = processed(processor, "qwen2_5_vl", image)
    grid = qwen_grid(*size)
    assert inputs["image_grid_thw"].tolist() == [list(grid)]
    patches = grid[1] * grid[2]
    assert tuple(inputs["pixel_values"].shape) == (patches, 3 * 2 * 14 * 14)
    n_pad = int((inputs["input_ids"][0] == 151655).sum())
    assert n_pad == patches // 4
    if size == (448, 336):
        with torch.no_grad():
            emb = model.model.visual(
                inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]
            ).pooler_output
        assert tuple(emb.shape) == (192, model.config.text_config.hidden_size)


@pytest.mark.parametrize("size", SIZES)
def test_llama4_tiles_follow_the_tiling_rule(loaded: dict[str, tuple], size) -> None:
    processor, model = loaded["llama4"]
    image = Image.new("RGB", size, "white")
    inputs = processed(processor, "llama4", image)
    rows, cols = llama4_tiles(*size)
    tiles = rows * cols + (1 if rows * cols > 1 else 0)  # plus the global tile
    assert tuple(inputs["pixel_values"].shape) == (tiles, 3, 336, 336)
    ids = inputs["input_ids"][0]
    assert int((ids == 200092).sum()) == 144 * tiles  # (336 / 14)^2 patches / 4 per tile
    assert int((ids == 200090).sum()) == 1 and int((ids == 200080).sum()) == 1
    assert int((ids == 200084).sum()) == (rows * (cols - 1) if tiles > 1 else 0)
    assert int((ids == 200085).sum()) == (rows if tiles > 1 else 0)
    if size == (448, 336):
        with torch.no_grad():
            hidden = model.vision_model(inputs["pixel_values"]).last_hidden_state
            emb = model.multi_modal_projector(hidden.reshape(-1, hidden.shape[-1]))
        assert emb.shape == (432, model.config.text_config.hidden_size)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generation_is_not_degenerate(loaded: dict[str, tuple], family: str) -> None:
    processor, model = loaded[family]
    inputs = processed(processor, family)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    assert len(new) == 12
    assert len(set(new)) >= 3, new


# --- cache and command line ------------------------------------------------------


def test_tiny_model_path_builds_once_and_reuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlm_tutorial.offline.tiny import training

    # A two-step plan: this test is about the cache, not about what is learned.
    quick = training.TrainingPlan(
        examples=2, layout_pairs=0, notebook_copies=1, vision_steps=1, language_steps=1
    )
    monkeypatch.setitem(training.PLANS, "qwen2_5_vl", quick)
    monkeypatch.setenv("VLM_TUTORIAL_CACHE", str(tmp_path / "cache"))
    first = tiny_model_path("qwen2_5_vl")
    assert first.parent == tmp_path / "cache"
    assert first.name == f"qwen2_5_vl-tiny-{spec_hash('qwen2_5_vl', 'tiny')}"
    stamp = (first / INFO_FILE).stat().st_mtime_ns
    assert tiny_model_path("qwen2_5_vl") == first
    assert (first / INFO_FILE).stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]  # no temp folder left
    assert json.loads((first / INFO_FILE).read_text())["trained"] is True
    assert spec_hash("llama4", "tiny") != spec_hash("llama4", "tp4")
    # Another training plan is another checkpoint.
    before = spec_hash("qwen2_5_vl", "tiny")
    monkeypatch.setitem(training.PLANS, "qwen2_5_vl", training.TrainingPlan(vision_steps=2))
    assert spec_hash("qwen2_5_vl", "tiny") != before
    assert spec_hash("qwen2_5_vl", "tiny", trained=False) != spec_hash("qwen2_5_vl", "tiny")


def test_trained_checkpoints_round_trip_through_shipped_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_shipped keeps what training changed; materialise rebuilds every file but the info."""
    from vlm_tutorial.offline.tiny import training
    from vlm_tutorial.offline.tiny.builder import materialise, write_shipped

    quick = training.TrainingPlan(
        examples=2, layout_pairs=0, notebook_copies=1, vision_steps=1, language_steps=1
    )
    monkeypatch.setitem(training.PLANS, "llama4", quick)
    trained = build_tiny_model("llama4", tmp_path / "trained", train=True)
    weights = write_shipped(trained, tmp_path / "weights")
    assert weights.name == "llama4.safetensors"
    stored = load_file(weights)
    rows = stored["language_model.lm_head.weight.rows"]
    assert rows.shape[1] == 64 and 10 < rows.shape[0] < 1000  # the task's tokens only
    assert "language_model.lm_head.weight" not in stored
    rebuilt = materialise("llama4", tmp_path / "rebuilt", weights=weights)
    for file in trained.iterdir():
        if file.name != INFO_FILE:
            assert file.read_bytes() == (rebuilt / file.name).read_bytes(), file.name
    assert_text_and_vision_shards(rebuilt, "llama4")
    # Weights from another training plan are refused, with the command that rebuilds them.
    monkeypatch.setitem(training.PLANS, "llama4", training.TrainingPlan(vision_steps=2))
    with pytest.raises(ValueError, match="--write-weights"):
        materialise("llama4", tmp_path / "stale", weights=weights)


def test_shipped_weights_are_small_current_safetensors() -> None:
    from safetensors import safe_open

    from vlm_tutorial.offline.tiny.builder import plan_hash, shipped_weights

    folder = shipped_weights("llama4").parent
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{f}.safetensors" for f in sorted(FAMILIES)
    ]
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 10 * 2**20
    for family in FAMILIES:
        with safe_open(shipped_weights(family), "pt") as f:
            info = json.loads(f.metadata()["info"])
        # A change to the preset or the training plan needs new weights (see the retrain test).
        assert info["plan_hash"] == plan_hash(family), family
        assert info["family"] == family and info["trained"] and info["seed"] == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_path_unpacks_the_shipped_weights_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    from vlm_tutorial.offline.tiny import training

    def no_training(*args, **kwargs):
        raise AssertionError("tiny_model_path trained instead of using the shipped weights")

    monkeypatch.setattr(training, "train_model", no_training)
    monkeypatch.setenv("VLM_TUTORIAL_CACHE", str(tmp_path))
    path = tiny_model_path(family)
    info = json.loads((path / INFO_FILE).read_text())
    assert info["trained"] and info["shipped"] == f"{family}.safetensors"
    assert_text_and_vision_shards(path, family)
    weights = tensors(path)
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert weights[next(k for k in weights if "embed_tokens" in k)].shape[0] == VOCAB_SIZE[family]
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path).get_text_config()
    assert config.max_position_embeddings >= (65536 if family == "llama4" else 32768)


def test_cli_writes_a_loadable_folder(tmp_path: Path) -> None:
    out = tmp_path / "cli-llama4"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlm_tutorial.offline.tiny",
            "llama4",
            str(out),
            "--seed",
            "3",
            "--no-train",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    assert str(out) in result.stdout
    assert "parameters: text" in result.stdout and "vision" in result.stdout
    assert "MiB" in result.stdout and "built in" in result.stdout
    assert "random weights" in result.stdout
    from transformers import AutoConfig, AutoProcessor

    assert AutoConfig.from_pretrained(out).model_type == "llama4"
    assert AutoProcessor.from_pretrained(out).tokenizer.convert_tokens_to_ids("<|patch|>") == 200092
    info = json.loads((out / INFO_FILE).read_text())
    assert info["seed"] == 3 and info["trained"] is False


def test_only_the_tiny_preset_can_be_trained(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no training plan"):
        build_tiny_model("llama4", tmp_path / "x", preset="tp4", train=True)
    assert not (tmp_path / "x").exists()


def test_cli_rejects_a_bad_preset(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlm_tutorial.offline.tiny",
            "qwen2_5_vl",
            str(tmp_path / "x"),
            "--preset",
            "tp4",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 2
    assert "'text-heavy', 'tiny'" in result.stderr
