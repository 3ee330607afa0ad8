"""Tests of vlm_tutorial.vision: vision-only loading and image embeddings.

Every embedding is compared with what the full transformers model computes
for the same processor output, in float32 on CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from vlm_tutorial import vision
from vlm_tutorial.errors import (
    CheckpointFileError,
    EmbeddingShapeError,
    ProcessorOutputError,
    UnknownModelFamilyError,
    VisionWeightsError,
)
from vlm_tutorial.prompts import build_prompt
from vlm_tutorial.offline.tiny import tiny_model_path
from vlm_tutorial.vision import load_vision_encoder

FAMILIES = ["qwen2_5_vl", "llama4"]
INDEX = "model.safetensors.index.json"


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def processors():
    from transformers import AutoProcessor

    return {f: AutoProcessor.from_pretrained(tiny_model_path(f)) for f in FAMILIES}


def processor_output(processor, images):
    prompt = build_prompt(processor, "Describe the image.", num_images=len(images))
    return processor(text=prompt, images=images, return_tensors="pt")


@pytest.fixture(scope="module")
def inputs(processors):
    # Qwen2.5-VL: 252x168 px is 18x12 patches, 9x6 merged tokens: windows of
    # 4x4 tokens leave edge windows of other sizes, so window attention has
    # windows of several lengths; the second image has another size again.
    return {
        "qwen2_5_vl": processor_output(
            processors["qwen2_5_vl"], [noise_image(252, 168, 0), noise_image(112, 140, 1)]
        ),
        "llama4": processor_output(processors["llama4"], [noise_image(120, 60, 0)]),
    }


@pytest.fixture(scope="module")
def full_models():
    from transformers import Llama4ForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

    return {
        "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration.from_pretrained(
            tiny_model_path("qwen2_5_vl"), dtype=torch.float32
        ).eval(),
        "llama4": Llama4ForConditionalGeneration.from_pretrained(
            tiny_model_path("llama4"), dtype=torch.float32
        ).eval(),
    }


def full_model_embedding(model, family: str, batch) -> torch.Tensor:
    """What the full model scatters into its input embeddings for ``batch``'s images."""
    with torch.no_grad():
        if family == "qwen2_5_vl":
            pooled = model.model.get_image_features(
                batch["pixel_values"].float(), batch["image_grid_thw"]
            ).pooler_output
            return torch.cat(pooled)
        features = model.get_image_features(
            batch["pixel_values"].float(), vision_feature_select_strategy="default"
        ).last_hidden_state
        return model.multi_modal_projector(features.view(-1, features.size(-1)))


def image_token_count(model_path: Path, batch) -> int:
    config = json.loads((model_path / "config.json").read_text())
    token_id = config.get("image_token_id", config.get("image_token_index"))
    return int((batch["input_ids"] == token_id).sum())


# ----------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("family", FAMILIES)
def test_embedding_equals_full_model_image_features(family, inputs, full_models):
    path = tiny_model_path(family)
    encoder = load_vision_encoder(path, dtype=torch.float32)
    batch = inputs[family]
    if family == "llama4":  # the Llama 4 processor hands out bfloat16 pixels
        assert batch["pixel_values"].dtype == torch.bfloat16

    embedding = encoder(batch)

    expected = full_model_embedding(full_models[family], family, batch)
    n_tokens = image_token_count(path, batch)
    assert n_tokens > 0
    assert embedding.shape == (n_tokens, encoder.text_hidden_size)
    assert encoder.text_hidden_size == full_models[family].config.text_config.hidden_size
    assert embedding.dtype == torch.float32
    torch.testing.assert_close(embedding, expected, atol=1e-5, rtol=1e-5)


def test_qwen_embedding_is_concatenated_over_images(inputs, full_models):
    encoder = load_vision_encoder(tiny_model_path("qwen2_5_vl"), dtype=torch.float32)
    batch = inputs["qwen2_5_vl"]
    rows = (batch["image_grid_thw"].prod(-1) // 4).tolist()
    assert len(rows) == 2 and rows[0] != rows[1]

    first = {
        "pixel_values": batch["pixel_values"][: rows[0] * 4],
        "image_grid_thw": batch["image_grid_thw"][:1],
    }
    torch.testing.assert_close(encoder(batch)[: rows[0]], encoder(first), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_dtype_none_keeps_checkpoint_dtype(family, inputs):
    encoder = load_vision_encoder(tiny_model_path(family))
    assert encoder.dtype == torch.bfloat16
    assert encoder(inputs[family]).dtype == torch.bfloat16
    # Valid twin: an explicit dtype is honoured.
    assert load_vision_encoder(tiny_model_path(family), dtype="float32").dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_llama4_rotary_buffer_stays_complex(dtype):
    from transformers.models.llama4.modeling_llama4 import Llama4VisionRotaryEmbedding

    encoder = load_vision_encoder(tiny_model_path("llama4"), dtype=dtype)
    rotary = encoder.tower.rotary_embedding
    assert rotary.freqs_ci.is_complex()
    torch.testing.assert_close(
        rotary.freqs_ci, Llama4VisionRotaryEmbedding._compute_freqs_ci(rotary.config)
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_row_count_checked_against_input_ids(family, processors, inputs):
    encoder = load_vision_encoder(tiny_model_path(family), dtype=torch.float32)
    batch = dict(inputs[family])
    other = processor_output(processors[family], [noise_image(700, 200, 3)])  # other token counts
    batch["input_ids"] = other["input_ids"]
    with pytest.raises(EmbeddingShapeError, match="embedding rows"):
        encoder(batch)


def test_qwen_needs_image_grid_thw(inputs):
    encoder = load_vision_encoder(tiny_model_path("qwen2_5_vl"))
    with pytest.raises(ValueError, match="image_grid_thw"):
        encoder({"pixel_values": inputs["qwen2_5_vl"]["pixel_values"]})


# ----------------------------------------------------------------------------- fast attention


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_path_is_bit_identical_to_reference(inputs, dtype):
    from transformers.vision_utils import get_vision_window_index

    path = tiny_model_path("qwen2_5_vl")
    fast = load_vision_encoder(path, dtype=dtype)
    reference = load_vision_encoder(path, dtype=dtype, attn="reference")
    assert (fast.attn, reference.attn, fast.compiled) == ("fast", "reference", False)
    batch = inputs["qwen2_5_vl"]
    tower = fast.tower
    _, cu_windows = get_vision_window_index(
        batch["image_grid_thw"], tower.spatial_merge_size, tower.window_size, tower.patch_size
    )
    window_lengths = set(torch.diff(cu_windows).tolist())
    assert len(cu_windows) - 1 > 4 and len(window_lengths) > 1  # several windows, several lengths

    fast_embedding, reference_embedding = fast(batch), reference(batch)
    assert fast_embedding.dtype == dtype
    assert torch.equal(fast_embedding, reference_embedding)


@pytest.mark.slow
def test_llama4_compiled_layers_agree_to_rounding(inputs):
    """compile=True compiles each encoder layer; one graph serves them all."""
    import torch._dynamo

    path = tiny_model_path("llama4")
    batch = inputs["llama4"]
    reference = load_vision_encoder(path, dtype=torch.float32)
    torch._dynamo.reset()  # no graph cached by an earlier test
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = load_vision_encoder(path, dtype=torch.float32, compile=True)
    assert compiled.compiled and not reference.compiled
    torch.testing.assert_close(compiled(batch), reference(batch), atol=1e-4, rtol=1e-4)
    new_graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs
    assert len(compiled.tower.model.layers) > 1 and new_graphs == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_device_without_gpu_raises():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        load_vision_encoder(tiny_model_path("llama4"), device="cuda")


@pytest.mark.parametrize("attn", ["fast", "varlen", "flash"])
def test_attn_argument_is_checked(attn):
    with pytest.raises(ValueError, match="attn="):
        load_vision_encoder(tiny_model_path("llama4"), attn=attn)
    # Valid twin.
    assert load_vision_encoder(tiny_model_path("llama4"), attn="auto").attn == "reference"


# ----------------------------------------------------------------------------- what is read


def linked_copy(source: Path, dest: Path) -> Path:
    """A copy of the checkpoint folder ``source``; its shards hard-linked where the disk allows.

    The shards are shared with ``source``: replace one (unlink, then write) rather than
    writing into it. The small files are real copies.
    """
    dest.mkdir(parents=True)
    for item in source.iterdir():
        if item.suffix == ".safetensors":
            try:
                os.link(item, dest / item.name)
                continue
            except OSError:  # another file system
                pass
        shutil.copy2(item, dest / item.name)
    return dest


def vision_shards(path: Path, prefixes: tuple[str, ...]) -> set[str]:
    weight_map = json.loads((path / INDEX).read_text())["weight_map"]
    return {f for k, f in weight_map.items() if k.startswith(prefixes)}


@pytest.mark.parametrize("family", FAMILIES)
def test_reads_only_the_vision_shards(family, tmp_path, processors):
    source = tiny_model_path(family, "text-heavy")
    weight_map = json.loads((source / INDEX).read_text())["weight_map"]
    wanted = vision_shards(source, vision.VISION_PREFIXES[family])
    text_only = set(weight_map.values()) - wanted
    assert text_only, "the text-heavy preset should have shards without vision weights"

    # A copy whose text-only shards are junk: opening one would fail.
    copy = linked_copy(source, tmp_path / "model")
    for name in text_only:
        (copy / name).unlink()
        (copy / name).write_bytes(b"not a safetensors file")

    encoder = load_vision_encoder(copy)
    assert encoder.files_read == sorted(wanted)
    assert not text_only & set(encoder.files_read)
    assert 0 < encoder.bytes_read <= encoder.shard_bytes
    batch = processor_output(processors[family], [noise_image(100, 80)])
    torch.testing.assert_close(encoder(batch), load_vision_encoder(source)(batch))


def test_single_file_checkpoint(tmp_path, inputs):
    source = tiny_model_path("qwen2_5_vl")
    copy = tmp_path / "single"
    shutil.copytree(source, copy)
    tensors = {}
    for shard in set(json.loads((copy / INDEX).read_text())["weight_map"].values()):
        tensors.update(load_file(copy / shard))
        (copy / shard).unlink()
    (copy / INDEX).unlink()
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})

    encoder = load_vision_encoder(copy, dtype=torch.float32)
    assert encoder.files_read == ["model.safetensors"]
    reference = load_vision_encoder(source, dtype=torch.float32)
    torch.testing.assert_close(encoder(inputs["qwen2_5_vl"]), reference(inputs["qwen2_5_vl"]))


# ----------------------------------------------------------------------------- broken checkpoints


def edited_copy(source: Path, dest: Path, edit) -> Path:
    """Copy a sharded checkpoint, applying ``edit(tensors)`` to the shard holding vision weights."""
    shutil.copytree(source, dest)
    index = json.loads((dest / INDEX).read_text())
    weight_map = index["weight_map"]
    (shard,) = {f for k, f in weight_map.items() if k.startswith(("visual.", "vision_model."))}
    tensors = load_file(dest / shard)
    edit(tensors)
    save_file(tensors, dest / shard, metadata={"format": "pt"})
    index["weight_map"] = {k: v for k, v in weight_map.items() if v != shard} | dict.fromkeys(
        tensors, shard
    )
    (dest / INDEX).write_text(json.dumps(index))
    return dest


KEYS = {
    "qwen2_5_vl": "visual.blocks.0.attn.qkv.weight",
    "llama4": "vision_model.model.layers.0.self_attn.q_proj.weight",
}
PROJECTOR_KEY = "multi_modal_projector.linear_1.weight"


@pytest.mark.parametrize("family", FAMILIES)
def test_unedited_copy_loads(family, tmp_path):
    copy = edited_copy(tiny_model_path(family), tmp_path / family, lambda tensors: None)
    assert load_vision_encoder(copy).vision_parameters > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_vision_key_raises(family, tmp_path):
    key = KEYS[family]
    copy = edited_copy(tiny_model_path(family), tmp_path / family, lambda t: t.pop(key))
    short = key.split(".", 1)[1]
    with pytest.raises(VisionWeightsError, match=rf"missing 1 vision weight\(s\): {short}"):
        load_vision_encoder(copy)


def test_missing_projector_key_raises(tmp_path):
    copy = edited_copy(tiny_model_path("llama4"), tmp_path / "m", lambda t: t.pop(PROJECTOR_KEY))
    with pytest.raises(VisionWeightsError, match="linear_1.weight"):
        load_vision_encoder(copy)


@pytest.mark.parametrize("family", FAMILIES)
def test_renamed_vision_key_raises(family, tmp_path):
    key = KEYS[family]
    renamed = key.replace("weight", "kernel")

    def rename(tensors):
        tensors[renamed] = tensors.pop(key)

    copy = edited_copy(tiny_model_path(family), tmp_path / family, rename)
    with pytest.raises(VisionWeightsError) as info:
        load_vision_encoder(copy)
    assert key.split(".", 1)[1] in str(info.value)
    assert renamed.split(".", 1)[1] in str(info.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_unexpected_vision_key_raises(family, tmp_path):
    extra = KEYS[family].replace("weight", "extra_scale")

    def add(tensors):
        tensors[extra] = torch.ones(3, dtype=torch.bfloat16)

    copy = edited_copy(tiny_model_path(family), tmp_path / family, add)
    with pytest.raises(VisionWeightsError, match=r"1 unexpected vision weight\(s\): .*extra_scale"):
        load_vision_encoder(copy)


def test_checkpoint_without_vision_weights_raises(tmp_path):
    vision_keys = vision.VISION_PREFIXES["qwen2_5_vl"]

    def drop(tensors):
        for key in [k for k in tensors if k.startswith(vision_keys)]:
            del tensors[key]

    copy = edited_copy(tiny_model_path("qwen2_5_vl"), tmp_path / "text-only", drop)
    with pytest.raises(VisionWeightsError, match="holds no vision weights"):
        load_vision_encoder(copy)


def test_not_a_vlm_folder_raises(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UnknownModelFamilyError, match="llama"):
        load_vision_encoder(tmp_path)


def test_folder_without_config_raises(tmp_path):
    with pytest.raises(UnknownModelFamilyError, match="config.json"):
        load_vision_encoder(tmp_path)


# ----------------------------------------------------------------------------- untrusted files


def the_vision_shard(folder: Path) -> str:
    (shard,) = vision_shards(folder, vision.VISION_PREFIXES["qwen2_5_vl"])
    return shard


def repoint_vision_keys(folder: Path, name: str) -> None:
    """Make the index of ``folder`` place every vision key in the file ``name``."""
    index = json.loads((folder / INDEX).read_text())
    shard = the_vision_shard(folder)
    index["weight_map"] = {k: (name if v == shard else v) for k, v in index["weight_map"].items()}
    (folder / INDEX).write_text(json.dumps(index))


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A fresh folder as tempfile's temporary directory, to see what a load leaves in it."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_an_index_entry_with_dotdot_is_refused(tmp_path, private_tmp):
    # The vision shard sits beside the checkpoint folder; "../" in the index points there.
    copy = linked_copy(tiny_model_path("qwen2_5_vl"), tmp_path / "ckpt")
    shard = the_vision_shard(copy)
    (copy / shard).rename(tmp_path / "outside.safetensors")
    repoint_vision_keys(copy, "../outside.safetensors")
    with pytest.raises(CheckpointFileError) as info:
        load_vision_encoder(copy)
    message = str(info.value)
    assert str(copy / INDEX) in message and "'../outside.safetensors'" in message
    assert list(private_tmp.iterdir()) == []  # no staging folder, no link left behind
    # The valid twin: the same shard inside the folder, under another name, loads.
    (tmp_path / "outside.safetensors").rename(copy / "renamed.safetensors")
    repoint_vision_keys(copy, "renamed.safetensors")
    assert load_vision_encoder(copy).files_read == ["renamed.safetensors"]
    assert list(private_tmp.iterdir()) == []  # the staging folder is removed


@pytest.mark.parametrize(
    "name", ["/etc/hostname", "sub/../../x.safetensors", "..\\x.safetensors", ""]
)
def test_an_index_entry_outside_the_folder_is_refused(name, tmp_path):
    copy = linked_copy(tiny_model_path("qwen2_5_vl"), tmp_path / "ckpt")
    repoint_vision_keys(copy, name)
    with pytest.raises(
        CheckpointFileError, match="not a file inside the checkpoint folder"
    ) as info:
        load_vision_encoder(copy)
    assert repr(name) in str(info.value) and str(copy / INDEX) in str(info.value)


def test_an_index_entry_in_a_subfolder_loads(tmp_path, private_tmp):
    copy = linked_copy(tiny_model_path("qwen2_5_vl"), tmp_path / "ckpt")
    shard = the_vision_shard(copy)
    (copy / "shards").mkdir()
    (copy / shard).rename(copy / "shards" / shard)
    repoint_vision_keys(copy, f"shards/{shard}")
    assert load_vision_encoder(copy).files_read == [f"shards/{shard}"]
    assert list(private_tmp.iterdir()) == []


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    copy = linked_copy(tiny_model_path("qwen2_5_vl"), tmp_path / "ckpt")
    shard = the_vision_shard(copy)
    (copy / shard).rename(tmp_path / shard)
    (copy / shard).symlink_to(tmp_path / shard)
    with pytest.raises(CheckpointFileError, match="outside the checkpoint folder") as info:
        load_vision_encoder(copy)
    assert repr(shard) in str(info.value) and str(copy / INDEX) in str(info.value)
    # The valid twin: a link to a file inside the folder is fine.
    (copy / shard).unlink()
    (tmp_path / shard).rename(copy / "real.safetensors")
    (copy / shard).symlink_to("real.safetensors")
    assert load_vision_encoder(copy).files_read == [shard]


def test_a_config_link_out_of_the_folder_is_refused(tmp_path):
    copy = linked_copy(tiny_model_path("qwen2_5_vl"), tmp_path / "ckpt")
    (copy / "config.json").rename(tmp_path / "config.json")
    (copy / "config.json").symlink_to(tmp_path / "config.json")
    with pytest.raises(CheckpointFileError, match="'config.json' is a link to"):
        load_vision_encoder(copy)


def test_a_hub_cache_snapshot_with_links_to_its_blobs_loads(tmp_path, inputs):
    # huggingface_hub's cache: snapshots/<revision>/<file> are links to ../../blobs/<hash>.
    source = tiny_model_path("qwen2_5_vl")
    repo = tmp_path / "hub" / "models--org--tiny"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    linked_copy(source, repo / "blobs")
    for item in (repo / "blobs").iterdir():
        (snapshot / item.name).symlink_to(Path("..", "..", "blobs", item.name))
    encoder = load_vision_encoder(snapshot, dtype=torch.float32)
    reference = load_vision_encoder(source, dtype=torch.float32)
    torch.testing.assert_close(encoder(inputs["qwen2_5_vl"]), reference(inputs["qwen2_5_vl"]))


def overwrite_header(path: Path, data: bytes) -> None:
    """Replace the first ``len(data)`` bytes of ``path`` (a copy, not a hard link)."""
    content = path.read_bytes()
    path.unlink()
    path.write_bytes(data + content[len(data) :])


@pytest.mark.parametrize(
    "damage",
    ["huge header length", "header length past the end", "not json", "cut short", "empty"],
)
def test_a_damaged_safetensors_file_names_the_file(damage, tmp_path):
    copy = linked_copy(tiny_model_path("qwen2_5_vl"), tmp_path / "ckpt")
    path = copy / the_vision_shard(copy)
    (header_length,) = struct.unpack("<Q", path.read_bytes()[:8])
    if damage == "huge header length":
        overwrite_header(path, struct.pack("<Q", 2**63))
    elif damage == "header length past the end":
        overwrite_header(path, struct.pack("<Q", path.stat().st_size))
    elif damage == "not json":
        overwrite_header(path, struct.pack("<Q", header_length) + b"{nope")
    else:
        content = path.read_bytes()
        path.unlink()
        path.write_bytes(content[: len(content) // 2] if damage == "cut short" else b"")
    with pytest.raises(CheckpointFileError, match="not a readable safetensors file") as info:
        load_vision_encoder(copy)
    assert str(path) in str(info.value)


def test_a_damaged_single_file_checkpoint_names_the_file(tmp_path):
    copy = tmp_path / "single"
    copy.mkdir()
    shutil.copy(tiny_model_path("qwen2_5_vl") / "config.json", copy)
    (copy / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(CheckpointFileError, match="model.safetensors"):
        load_vision_encoder(copy)


@pytest.mark.parametrize("name", [INDEX, "config.json"])
def test_invalid_json_names_the_file(name, tmp_path):
    copy = linked_copy(tiny_model_path("qwen2_5_vl"), tmp_path / "ckpt")
    text = (copy / name).read_text()
    (copy / name).unlink()
    (copy / name).write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointFileError, match="is not valid JSON") as info:
        load_vision_encoder(copy)
    assert str(copy / name) in str(info.value)


@pytest.mark.parametrize("content", [[], {"metadata": {}}, {"weight_map": {"visual.x": 3}}])
def test_an_index_without_a_weight_map_names_the_file(content, tmp_path):
    copy = linked_copy(tiny_model_path("qwen2_5_vl"), tmp_path / "ckpt")
    (copy / INDEX).unlink()
    (copy / INDEX).write_text(json.dumps(content))
    with pytest.raises(CheckpointFileError, match="'weight_map'") as info:
        load_vision_encoder(copy)
    assert str(copy / INDEX) in str(info.value)


def test_hub_index_entries_are_checked_before_any_shard_is_fetched(tmp_path, monkeypatch):
    source = linked_copy(tiny_model_path("qwen2_5_vl"), tmp_path / "src")
    repoint_vision_keys(source, "../../secret.safetensors")
    hub = FakeHub(source, tmp_path / "cache")
    monkeypatch.setattr(vision, "hf_hub_download", hub)
    with pytest.raises(CheckpointFileError, match="'../../secret.safetensors'"):
        load_vision_encoder("org/evil-index")
    assert hub.requested == ["config.json", INDEX]


# ----------------------------------------------------------------------------- processor output


def test_a_processor_output_of_the_other_family_is_refused(inputs):
    encoders = {f: load_vision_encoder(tiny_model_path(f), dtype=torch.float32) for f in FAMILIES}
    with pytest.raises(ProcessorOutputError, match=r"llama4 encoder takes \(n, 3, 336, 336\)"):
        encoders["llama4"](inputs["qwen2_5_vl"])
    with pytest.raises(ProcessorOutputError, match=r"qwen2_5_vl encoder takes \(n, 1176\)"):
        encoders["qwen2_5_vl"](inputs["llama4"])
    # The valid twins.
    for family in FAMILIES:
        assert encoders[family](inputs[family]).shape[1] == encoders[family].text_hidden_size


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g[0], r"shape \(images, 3\), got torch.int64 \(3,\)"),
        (lambda g: g[:, :2], r"shape \(images, 3\)"),
        (lambda g: g.float(), "must be integers"),
        (lambda g: g * torch.tensor([0, 1, 1]), "must be positive"),
        (lambda g: g + torch.tensor([0, 1, 0]), "multiples of 2"),
        (lambda g: g * torch.tensor([1, 2, 1]), "pixel_values holds"),
    ],
    ids=["one row", "two columns", "floats", "zero frames", "odd height", "too many patches"],
)
def test_a_bad_image_grid_thw_is_refused(edit, message, inputs):
    encoder = load_vision_encoder(tiny_model_path("qwen2_5_vl"), dtype=torch.float32)
    batch = dict(inputs["qwen2_5_vl"])
    batch["image_grid_thw"] = edit(batch["image_grid_thw"])
    with pytest.raises(ProcessorOutputError, match=message):
        encoder(batch)


def test_processor_output_without_pixel_values_is_refused():
    encoder = load_vision_encoder(tiny_model_path("llama4"))
    with pytest.raises(ProcessorOutputError, match="no 'pixel_values'"):
        encoder({"input_ids": torch.tensor([[1, 2]])})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_a_cuda_device_without_gpu_fails_before_any_file_is_read(tmp_path, monkeypatch):
    def no_reading(*args, **kwargs):
        raise AssertionError("a checkpoint file was read")

    monkeypatch.setattr(vision, "_read_json", no_reading)
    monkeypatch.setattr(vision, "_tensor_infos", no_reading)
    for device in ("cuda:0", "cuda", torch.device("cuda", 1)):
        with pytest.raises(ValueError, match="no CUDA GPU"):
            load_vision_encoder(tiny_model_path("qwen2_5_vl"), device=device)


# ----------------------------------------------------------------------------- hub downloads


class FakeHub:
    """Stands in for ``hf_hub_download``: serves files of a local folder, records the requests."""

    def __init__(self, source: Path, cache: Path) -> None:
        self.source, self.cache, self.requested = source, cache, []

    def __call__(self, repo_id: str, filename: str, revision: str | None = None) -> str:
        from huggingface_hub.errors import EntryNotFoundError

        self.requested.append(filename)
        if not (self.source / filename).is_file():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        target = self.cache / repo_id.replace("/", "--") / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.source / filename, target)
        return str(target)


@pytest.mark.parametrize("family", FAMILIES)
def test_hub_id_downloads_only_vision_shards(family, tmp_path, monkeypatch, processors):
    source = tiny_model_path(family, "text-heavy")
    hub = FakeHub(source, tmp_path)
    monkeypatch.setattr(vision, "hf_hub_download", hub)

    encoder = load_vision_encoder(f"org/{family}-text-heavy")

    wanted = sorted(vision_shards(source, vision.VISION_PREFIXES[family]))
    assert hub.requested == ["config.json", INDEX, *wanted]
    batch = processor_output(processors[family], [noise_image(64, 64)])
    torch.testing.assert_close(encoder(batch), load_vision_encoder(source)(batch))


def test_hub_single_file_checkpoint_downloads_it(tmp_path, monkeypatch):
    source = tmp_path / "src"
    shutil.copytree(tiny_model_path("qwen2_5_vl"), source)
    tensors = {}
    for shard in set(json.loads((source / INDEX).read_text())["weight_map"].values()):
        tensors.update(load_file(source / shard))
    (source / INDEX).unlink()
    save_file(tensors, source / "model.safetensors", metadata={"format": "pt"})
    hub = FakeHub(source, tmp_path / "cache")
    monkeypatch.setattr(vision, "hf_hub_download", hub)

    load_vision_encoder("org/single-file")
    assert hub.requested == ["config.json", INDEX, "model.safetensors"]


def test_hub_download_failure_names_the_id(monkeypatch):
    def offline(repo_id, filename, revision=None):
        raise ConnectionError("no network")

    monkeypatch.setattr(vision, "hf_hub_download", offline)
    with pytest.raises(OSError, match="'org/missing' is not a local folder"):
        load_vision_encoder("org/missing")


def test_hub_non_vlm_fetches_only_config(tmp_path, monkeypatch):
    source = tmp_path / "src"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "llama"}))
    hub = FakeHub(source, tmp_path / "cache")
    monkeypatch.setattr(vision, "hf_hub_download", hub)

    with pytest.raises(UnknownModelFamilyError):
        load_vision_encoder("org/text-model")
    assert hub.requested == ["config.json"]
