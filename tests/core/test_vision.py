"""Tests of vlm_tutorial.vision: vision-only loading, and embeddings equal to transformers' own.

Every checkpoint below is written in ``tmp_path`` from a tiny model's tensors: the vision
tensors in ``vision.safetensors``, the others in ``text.safetensors``, listed by an index. A
test that must not read the text shard replaces it with junk.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from vlm_tutorial.errors import (
    CheckpointFileError,
    EmbeddingShapeError,
    ProcessorOutputError,
    VisionWeightsError,
)
from vlm_tutorial.families import get_family
from vlm_tutorial.offline.tiny import tiny_model_path
from vlm_tutorial.prompts import build_prompt
from vlm_tutorial.vision import load_vision_encoder

FAMILIES = ["qwen2_5_vl", "llama4"]
INDEX = "model.safetensors.index.json"
Tensors = dict[str, torch.Tensor]


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def procs():
    from transformers import AutoProcessor

    return {f: AutoProcessor.from_pretrained(tiny_model_path(f)) for f in FAMILIES}


def processor_output(processor, images):
    prompt = build_prompt(processor, "Describe the image.", num_images=len(images))
    return processor(text=prompt, images=images, return_tensors="pt")


@pytest.fixture(scope="module")
def inputs(procs):
    # Qwen2.5-VL: two images of different sizes, so two grids of different lengths.
    return {
        "qwen2_5_vl": processor_output(procs["qwen2_5_vl"], [noise(252, 168), noise(112, 140, 1)]),
        "llama4": processor_output(procs["llama4"], [noise(120, 60)]),
    }


@pytest.fixture(scope="module")
def tensors() -> dict[str, Tensors]:
    """Every tensor of each tiny checkpoint, whatever its shard layout."""
    return {
        f: {k: v for p in tiny_model_path(f).glob("*.safetensors") for k, v in load_file(p).items()}
        for f in FAMILIES
    }


def write_checkpoint(
    family: str,
    tensors: Tensors,
    dest: Path,
    edit: Callable[[Tensors], object] | None = None,
    rename: Callable[[str], str] = str,
) -> Path:
    """Write ``tensors`` as a two-shard checkpoint: ``edit`` changes the vision tensors."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_model_path(family) / "config.json", dest)
    prefixes = get_family(family).vision_prefixes
    vision = {rename(k): v for k, v in tensors.items() if k.startswith(prefixes)}
    if edit is not None:
        edit(vision)
    text = {k: v for k, v in tensors.items() if not k.startswith(prefixes)}
    save_file(vision, dest / "vision.safetensors", metadata={"format": "pt"})
    save_file(text, dest / "text.safetensors", metadata={"format": "pt"})
    weight_map = dict.fromkeys(text, "text.safetensors") | dict.fromkeys(
        vision, "vision.safetensors"
    )
    (dest / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dest


def set_index_name(folder: Path, old: str, new: str) -> None:
    index = json.loads((folder / INDEX).read_text())
    index["weight_map"] = {k: new if v == old else v for k, v in index["weight_map"].items()}
    (folder / INDEX).write_text(json.dumps(index))


# ----------------------------------------------------------------------------- embeddings


@pytest.fixture(scope="module")
def full_models():
    from transformers import Llama4ForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

    return {
        f: cls.from_pretrained(tiny_model_path(f), dtype=torch.float32).eval()
        for f, cls in [
            ("qwen2_5_vl", Qwen2_5_VLForConditionalGeneration),
            ("llama4", Llama4ForConditionalGeneration),
        ]
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_embedding_equals_the_full_transformers_model(family, inputs, full_models):
    batch, model = inputs[family], full_models[family]
    encoder = load_vision_encoder(tiny_model_path(family), dtype=torch.float32)
    embedding = encoder(batch)

    with torch.no_grad():
        if family == "qwen2_5_vl":
            pixels, grid = batch["pixel_values"], batch["image_grid_thw"]
            expected = model.model.visual(pixels, grid_thw=grid).pooler_output
            features = model.get_image_features(pixels, grid).pooler_output
            torch.testing.assert_close(embedding, torch.cat(features))
        else:
            assert batch["pixel_values"].dtype == torch.bfloat16  # the processor's own dtype
            hidden = model.vision_model(batch["pixel_values"].float()).last_hidden_state
            expected = model.multi_modal_projector(hidden.flatten(0, -2))
    torch.testing.assert_close(embedding, expected)
    config = model.config
    token_id = config.image_token_id if family == "qwen2_5_vl" else config.image_token_index
    rows = int((batch["input_ids"] == token_id).sum())
    assert embedding.shape == (rows, model.config.text_config.hidden_size) and rows > 0
    assert encoder.text_hidden_size == model.config.text_config.hidden_size


@pytest.mark.parametrize("family", FAMILIES)
def test_the_module_is_the_checkpoints_own_transformers_module(family):
    from transformers.models.llama4.modeling_llama4 import Llama4MultiModalProjector
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VisionTransformerPretrainedModel,
    )

    module = load_vision_encoder(tiny_model_path(family)).module
    if family == "qwen2_5_vl":
        assert isinstance(module, Qwen2_5_VisionTransformerPretrainedModel)
    else:
        assert type(module.vision_model).__name__ == "Llama4VisionModel"
        assert isinstance(module.multi_modal_projector, Llama4MultiModalProjector)


@pytest.mark.parametrize("family", FAMILIES)
def test_dtype_none_keeps_the_checkpoints_dtype(family, inputs, tensors):
    assert {t.dtype for t in tensors[family].values()} == {torch.bfloat16}
    encoder = load_vision_encoder(tiny_model_path(family))
    assert (encoder.dtype, encoder.device) == (torch.bfloat16, torch.device("cpu"))
    assert encoder(inputs[family]).dtype == torch.bfloat16
    assert load_vision_encoder(tiny_model_path(family), dtype="float32").dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_llama4_rotary_buffer_stays_complex(dtype):
    from transformers.models.llama4.modeling_llama4 import Llama4VisionRotaryEmbedding

    encoder = load_vision_encoder(tiny_model_path("llama4"), dtype=dtype)
    rotary = encoder.module.vision_model.rotary_embedding
    assert rotary.freqs_ci.is_complex()
    torch.testing.assert_close(
        rotary.freqs_ci, Llama4VisionRotaryEmbedding._compute_freqs_ci(rotary.config)
    )


# ----------------------------------------------------------------------------- what is read


@pytest.mark.parametrize("family", FAMILIES)
def test_only_the_vision_shard_is_read(family, tensors, inputs, tmp_path):
    folder = write_checkpoint(family, tensors[family], tmp_path / "ckpt")
    expected = load_vision_encoder(folder)(inputs[family])
    (folder / "text.safetensors").write_bytes(b"junk: reading this file would fail")
    torch.testing.assert_close(load_vision_encoder(folder)(inputs[family]), expected)


def test_in_memory_qwen_key_names_load_alike(tensors, inputs, tmp_path):
    hub = write_checkpoint("qwen2_5_vl", tensors["qwen2_5_vl"], tmp_path / "hub")
    memory = write_checkpoint(
        "qwen2_5_vl", tensors["qwen2_5_vl"], tmp_path / "mem", rename=lambda k: f"model.{k}"
    )
    assert any(
        k.startswith("model.visual.")
        for k in json.loads((memory / INDEX).read_text())["weight_map"]
    )
    batch = inputs["qwen2_5_vl"]
    torch.testing.assert_close(load_vision_encoder(memory)(batch), load_vision_encoder(hub)(batch))


def test_a_single_file_checkpoint_loads(tensors, inputs, tmp_path):
    folder = tmp_path / "single"
    folder.mkdir()
    shutil.copy(tiny_model_path("qwen2_5_vl") / "config.json", folder)
    save_file(tensors["qwen2_5_vl"], folder / "model.safetensors", metadata={"format": "pt"})
    batch = inputs["qwen2_5_vl"]
    expected = load_vision_encoder(tiny_model_path("qwen2_5_vl"))(batch)
    torch.testing.assert_close(load_vision_encoder(folder)(batch), expected)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache in ``tmp_path``; returns a function giving a snapshot folder."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def snapshot(repo_id: str) -> Path:
        repo = tmp_path / "hub" / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("0" * 40)
        return repo / "snapshots" / ("0" * 40)

    return snapshot


def test_a_hub_id_reads_only_the_vision_shard_from_the_cache(hub_cache, tensors, inputs):
    # The cache lacks the text shard: fetching it, offline, would fail.
    folder = write_checkpoint("llama4", tensors["llama4"], hub_cache("org/tiny-llama4"))
    (folder / "text.safetensors").unlink()
    expected = load_vision_encoder(tiny_model_path("llama4"))(inputs["llama4"])
    torch.testing.assert_close(load_vision_encoder("org/tiny-llama4")(inputs["llama4"]), expected)


def test_a_hub_index_naming_a_file_outside_is_refused(hub_cache, tensors):
    folder = write_checkpoint("qwen2_5_vl", tensors["qwen2_5_vl"], hub_cache("org/evil"))
    set_index_name(folder, "vision.safetensors", "../../../../secret.safetensors")
    with pytest.raises(CheckpointFileError, match="secret.safetensors'.*not a file inside"):
        load_vision_encoder("org/evil")


# ----------------------------------------------------------------------------- bad checkpoints


@pytest.mark.parametrize(
    "name", ["../vision.safetensors", "/etc/hostname", "sub/../../x.safetensors", "..\\x", ""]
)
def test_an_index_name_outside_the_folder_is_refused(name, tensors, tmp_path):
    folder = write_checkpoint("qwen2_5_vl", tensors["qwen2_5_vl"], tmp_path / "ckpt")
    set_index_name(folder, "vision.safetensors", name)
    with pytest.raises(CheckpointFileError, match="not a file inside the checkpoint") as info:
        load_vision_encoder(folder)
    assert repr(name) in str(info.value) and str(folder / INDEX) in str(info.value)


def test_an_index_name_in_a_subfolder_loads(tensors, tmp_path):
    folder = write_checkpoint("qwen2_5_vl", tensors["qwen2_5_vl"], tmp_path / "ckpt")
    (folder / "sub").mkdir()
    (folder / "vision.safetensors").rename(folder / "sub" / "v.safetensors")
    set_index_name(folder, "vision.safetensors", "sub/v.safetensors")
    assert load_vision_encoder(folder).text_hidden_size > 0


@pytest.mark.parametrize("content", ["{not json", "[]", '{"metadata": {}}', '{"weight_map": 3}'])
def test_a_damaged_index_names_the_file(content, tensors, tmp_path):
    folder = write_checkpoint("qwen2_5_vl", tensors["qwen2_5_vl"], tmp_path / "ckpt")
    (folder / INDEX).write_text(content)
    with pytest.raises(CheckpointFileError, match=str(folder / INDEX)):
        load_vision_encoder(folder)


@pytest.mark.parametrize("damage", ["huge header length", "not json", "cut short", "empty"])
def test_a_damaged_safetensors_file_names_the_file(damage, tensors, tmp_path):
    folder = write_checkpoint("qwen2_5_vl", tensors["qwen2_5_vl"], tmp_path / "ckpt")
    path = folder / "vision.safetensors"
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    damaged = {
        "huge header length": struct.pack("<Q", 2**62) + data[8:],
        "not json": data[:8] + b"{nope" + data[13:],
        "cut short": data[: 8 + length + 10],
        "empty": b"",
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(CheckpointFileError, match="not a readable safetensors file") as info:
        load_vision_encoder(folder)
    assert str(path) in str(info.value)


VISION_KEY = {
    "qwen2_5_vl": "visual.blocks.0.attn.qkv.weight",
    "llama4": "vision_model.model.layers.0.self_attn.q_proj.weight",
}


def drop(key: str) -> Callable[[Tensors], object]:
    return lambda t: t.pop(key)


def add(key: str) -> Callable[[Tensors], object]:
    return lambda t: t.update({key: torch.ones(3, dtype=torch.bfloat16)})


def reshape(key: str) -> Callable[[Tensors], object]:
    return lambda t: t.update({key: t[key][:-1]})


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("edit", "message"),
    [(drop, "missing"), (add, "unexpected"), (reshape, "shape")],
    ids=["missing", "unexpected", "wrong shape"],
)
def test_vision_weights_that_do_not_fit_the_config_are_refused(
    family, edit, message, tensors, tmp_path
):
    key = VISION_KEY[family]
    extra = key.replace("weight", "extra") if edit is add else key
    folder = write_checkpoint(family, tensors[family], tmp_path / "ckpt", edit=edit(extra))
    with pytest.raises(VisionWeightsError, match=message):
        load_vision_encoder(folder)


@pytest.mark.parametrize("edit", [drop, add, reshape], ids=["missing", "unexpected", "shape"])
def test_llama4_projector_weights_that_do_not_fit_are_refused(edit, tensors, tmp_path):
    key = "multi_modal_projector.linear_1.weight"
    key = key.replace("weight", "extra") if edit is add else key
    folder = write_checkpoint("llama4", tensors["llama4"], tmp_path / "ckpt", edit=edit(key))
    with pytest.raises(VisionWeightsError, match="linear_1"):
        load_vision_encoder(folder)


def test_a_checkpoint_without_vision_weights_is_refused(tensors, tmp_path):
    folder = write_checkpoint(
        "qwen2_5_vl", tensors["qwen2_5_vl"], tmp_path / "ckpt", edit=dict.clear
    )
    with pytest.raises(VisionWeightsError, match="holds no vision weights"):
        load_vision_encoder(folder)


@pytest.mark.parametrize("dtype", ["float33", "int8", "torch.long", "cuda"])
def test_an_unknown_dtype_is_refused(dtype):
    with pytest.raises(ValueError, match=f"dtype={dtype!r}"):
        load_vision_encoder(tiny_model_path("qwen2_5_vl"), dtype=dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without GPU")
@pytest.mark.parametrize("device", ["cuda:0", "cuda", torch.device("cuda", 1)])
def test_a_gpu_device_without_gpu_is_refused_before_loading(device, tmp_path):
    # The folder does not exist: the device is refused before any file is looked at.
    with pytest.raises(ValueError, match="no CUDA GPU"):
        load_vision_encoder(tmp_path / "nothing here", device=device)


# ----------------------------------------------------------------------------- processor output


def test_a_processor_output_of_the_other_family_is_refused(inputs):
    for family, other in [("llama4", "qwen2_5_vl"), ("qwen2_5_vl", "llama4")]:
        encoder = load_vision_encoder(tiny_model_path(family))
        with pytest.raises(ProcessorOutputError, match=f"the {family} encoder takes"):
            encoder(inputs[other])
        assert encoder(inputs[family]).shape[1] == encoder.text_hidden_size  # the valid twin


@pytest.mark.parametrize(
    "edit",
    [
        lambda g: None,
        lambda g: g[0],
        lambda g: g.float(),
        lambda g: g * torch.tensor([0, 1, 1]),
        lambda g: g + torch.tensor([0, 1, 0]),
        lambda g: g * torch.tensor([1, 2, 1]),
    ],
    ids=["absent", "one row", "floats", "zero frames", "odd height", "too many patches"],
)
def test_a_bad_image_grid_thw_is_refused(edit, inputs):
    encoder = load_vision_encoder(tiny_model_path("qwen2_5_vl"))
    batch = dict(inputs["qwen2_5_vl"])
    batch["image_grid_thw"] = edit(batch["image_grid_thw"])
    with pytest.raises(ProcessorOutputError, match="image_grid_thw"):
        encoder(batch)


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_are_checked_against_the_embedding_tokens_of_input_ids(family, procs, inputs):
    encoder = load_vision_encoder(tiny_model_path(family))
    batch = dict(inputs[family])
    batch["input_ids"] = processor_output(procs[family], [noise(700, 200)])["input_ids"]
    with pytest.raises(EmbeddingShapeError, match="embedding rows"):
        encoder(batch)
    with pytest.raises(ProcessorOutputError, match="no 'pixel_values'"):
        encoder({"input_ids": batch["input_ids"]})
