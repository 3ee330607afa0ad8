"""The family registry: real token ids, engine arguments, and recognising checkpoints."""

from __future__ import annotations

import ast
import inspect
import json
import sys

import pytest

from tests.real_ids import REAL_SPECIAL_IDS
from vlm_tutorial import families
from vlm_tutorial.errors import RequestFormatError, UnknownModelFamilyError
from vlm_tutorial.families import (
    FAMILIES,
    LLAMA4,
    QWEN2_5_VL,
    detect_family,
    get_family,
    is_checkpoint_folder,
    is_hub_id,
)

QWEN_ID = "Qwen/Qwen2.5-VL-3B-Instruct"
SCOUT_ID = "meta-llama/Llama-4-Scout-17B-16E-Instruct"


def test_families_imports_nothing_but_errors_and_the_standard_library():
    """The registry sits at the bottom: huggingface_hub only lazily, to read a hub config."""
    tree = ast.parse(inspect.getsource(families))
    top_level = set(tree.body)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            assert (node.level, node.module) == (1, "errors"), ast.dump(node)
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            if root == "huggingface_hub":
                assert node not in top_level, "huggingface_hub must be imported lazily"
            else:
                assert root in sys.stdlib_module_names, f"families imports {name}"


def test_get_family():
    assert get_family("qwen2_5_vl") is QWEN2_5_VL
    assert get_family(LLAMA4) is LLAMA4
    for bad in ("llava", None, ["llama4"]):
        with pytest.raises(UnknownModelFamilyError, match=r"supported: \['llama4', 'qwen2_5_vl'\]"):
            get_family(bad)


def test_families_are_hashable_singletons_with_a_short_repr():
    assert {QWEN2_5_VL: 1, LLAMA4: 2}[LLAMA4] == 2
    assert len({QWEN2_5_VL, LLAMA4, get_family("llama4")}) == 2
    assert repr(LLAMA4) == "<ModelFamily llama4>"


@pytest.mark.parametrize("name", FAMILIES)
def test_special_tokens_sit_at_the_real_ids(name):
    family = FAMILIES[name]
    for text, token_id in REAL_SPECIAL_IDS[name].items():
        assert family.token_id(text) == token_id, text
    ids = [token_id for token_id, _, _ in family.special_tokens]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous, in order
    assert len({text for _, text, _ in family.special_tokens}) == len(ids)  # no name twice
    assert ids[-1] < family.vocab_size
    with pytest.raises(KeyError, match="not a special token"):
        family.token_id("<|nope|>")


def test_only_qwens_tool_and_fim_tokens_are_not_special():
    plain = {text for _, text, special in QWEN2_5_VL.special_tokens if not special}
    assert "<tool_call>" in plain and "<|fim_pad|>" in plain and len(plain) == 8
    assert all(special for _, _, special in LLAMA4.special_tokens)
    assert len(LLAMA4.special_tokens) == 1134


def test_embedding_tokens_match_the_tiny_checkpoints(processors):
    for name, proc in processors.items():
        family = get_family(name)
        assert (
            proc.tokenizer.convert_tokens_to_ids(family.embedding_token)
            == family.embedding_token_id
        )
        assert type(proc).__name__ == family.processor_class


# --------------------------------------------------------------------------- engine arguments


def test_engine_args_are_the_tutorials_values_for_the_real_models():
    """The values of the shared contract, which the notebooks write out literally."""
    assert dict(QWEN2_5_VL.engine_args) == {
        "mem_fraction_static": 0.6,
        "disable_radix_cache": True,
        "log_level": "warning",
    }
    assert dict(LLAMA4.engine_args) == {
        "enable_multimodal": True,
        "tp_size": 4,
        "context_length": 65536,
        "mem_fraction_static": 0.7,
        "disable_radix_cache": True,
        "log_level": "warning",
    }


@pytest.mark.parametrize("family", [QWEN2_5_VL, LLAMA4], ids=lambda f: f.name)
def test_engine_args_for_copies_and_gives_other_checkpoints_one_gpu(family, tmp_path):
    real = family.engine_args_for(family.real_model_id)
    assert real == dict(family.engine_args)
    real["log_level"] = "debug"
    assert family.engine_args["log_level"] == "warning"  # a copy: the registry is unchanged
    for other in (tmp_path, str(tmp_path), "someone/" + family.real_model_id.split("/")[1]):
        args = family.engine_args_for(other)
        assert args.get("tp_size", 1) == 1
        assert {k: v for k, v in args.items() if k != "tp_size"} == {
            k: v for k, v in family.engine_args.items() if k != "tp_size"
        }
    assert ("tp_size" in family.engine_args_for(tmp_path)) == ("tp_size" in family.engine_args)


# What the cards leave usable: an H100 80 GB about 78 GiB, an H200 141 GB about 139 GiB.
@pytest.mark.parametrize("card_bytes", [78 * 2**30, 139 * 2**30], ids=["80GB", "141GB"])
@pytest.mark.parametrize(
    ("family", "params", "layers", "kv_heads", "context"),
    [(QWEN2_5_VL, 3.75e9, 36, 2, 128000), (LLAMA4, 109e9, 48, 8, None)],
    ids=["qwen2_5_vl", "llama4"],
)
def test_memory_fraction_holds_the_weights_and_a_full_context(
    family, params, layers, kv_heads, context, card_bytes
):
    """bf16 weights split over tp_size GPUs, plus the KV cache of one full context, fit."""
    args = family.engine_args
    tp = args.get("tp_size", 1)
    weights = params * 2 / tp
    # layers x KV heads per GPU x head dim x (key, value) x bf16 bytes
    kv_per_token = layers * max(kv_heads // tp, 1) * 128 * 2 * 2
    static = args["mem_fraction_static"] * card_bytes
    assert static - weights > args.get("context_length", context) * kv_per_token
    assert (1 - args["mem_fraction_static"]) * card_bytes > 10e9  # room for activations


# ------------------------------------------------------------------------ recognising models


def test_is_hub_id_and_is_checkpoint_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "ckpt").mkdir(parents=True)
    (tmp_path / "owner" / "ckpt" / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    assert is_hub_id(QWEN_ID) and is_hub_id("org/model.v2_b-3")
    for text in ("owner/ckpt", "a/b/c", "/abs/name", "noslash", "", "-x/y", "a b/c"):
        assert not is_hub_id(text), text
    assert is_checkpoint_folder("owner/ckpt") and is_checkpoint_folder(tmp_path / "owner" / "ckpt")
    for path in ("empty", "owner/ckpt/config.json", "missing", QWEN_ID):
        assert not is_checkpoint_folder(path), path


@pytest.mark.parametrize(
    ("source", "family"),
    [(QWEN_ID, QWEN2_5_VL), (SCOUT_ID, LLAMA4), ("llama4", LLAMA4)],
)
def test_detect_family_from_names_offline(source, family):
    assert detect_family(source) is family


def test_detect_family_from_checkpoints_and_processors(tiny_paths, processors):
    for name in FAMILIES:
        assert detect_family(tiny_paths[name]) is FAMILIES[name]
        assert detect_family(processors[name]) is FAMILIES[name]


@pytest.mark.parametrize(
    ("config", "family"),
    [
        ({"model_type": "qwen2_5_vl"}, QWEN2_5_VL),
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
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    _fill_hub_cache(tmp_path, "Qwen/Qwen2.5-VL-7B-Instruct", {"model_type": "qwen2_5_vl"})
    _fill_hub_cache(tmp_path, "org/some-llava", {"model_type": "llava"})
    assert detect_family("Qwen/Qwen2.5-VL-7B-Instruct") is QWEN2_5_VL
    with pytest.raises(UnknownModelFamilyError, match="model_type 'llava'.*Llama4ForConditional"):
        detect_family("org/some-llava")
    # Not in the cache, and the hub is out of reach: one clear error, no hub client traceback.
    with pytest.raises(UnknownModelFamilyError, match="neither in the Hugging Face cache nor down"):
        detect_family("meta-llama/Llama-4-Maverick-17B-128E-Instruct")


def test_detect_family_refuses_other_models_by_name(tmp_path):
    config = tmp_path / "config.json"
    for text, message in [
        (json.dumps({"model_type": "llava"}), "model_type 'llava'.*supported: Qwen2_5_VL"),
        ("{not json", r"config.json is no readable JSON"),
        ("[1, 2]", "model_type None"),
        (b"\xff\xfe", "no readable JSON"),
    ]:
        config.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(UnknownModelFamilyError, match=message):
            detect_family(tmp_path)
    config.unlink()
    with pytest.raises(UnknownModelFamilyError, match="a folder without a config.json"):
        detect_family(tmp_path)
    with pytest.raises(UnknownModelFamilyError, match="is no folder, and no hub id"):
        detect_family(str(tmp_path / "missing" / "deeper"))
    with pytest.raises(UnknownModelFamilyError, match="cannot tell the model family of a int"):
        detect_family(3)


# ------------------------------------------------------------------------ tokens and processors


def test_tokens_per_image_counts_each_image(processors, image):
    from PIL import Image

    from vlm_bench.requests import run_processor
    from vlm_tutorial.prompts import build_prompt

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


def test_a_processor_keyword_transformers_ignores_is_refused_with_the_fix(processors):
    """transformers 5 ignores max_pixels= at call time: the grid would silently stay the same."""
    from vlm_tutorial.images import example_image
    from vlm_tutorial.prompts import build_prompt

    processor = processors["qwen2_5_vl"]
    prompt = build_prompt(processor, "What's shown here: <image>?")
    image = example_image()
    budget = image.width * image.height // 4
    # The keyword really is ignored by the processor itself...
    plain = processor(text=[prompt], images=[image], return_tensors="pt")
    ignored = processor(text=[prompt], images=[image], max_pixels=budget, return_tensors="pt")
    assert ignored["image_grid_thw"].tolist() == plain["image_grid_thw"].tolist()
    # ...so the registry refuses it, naming what works, and what works changes the grid.
    with pytest.raises(
        RequestFormatError, match=r'max_pixels=\d+ is ignored.*size=\{"shortest_edge"'
    ):
        QWEN2_5_VL.check_processor_kwargs({"max_pixels": budget})
    size = {"shortest_edge": 3136, "longest_edge": budget}
    QWEN2_5_VL.check_processor_kwargs({"size": size})
    smaller = processor(text=[prompt], images=[image], size=size, return_tensors="pt")
    assert smaller["image_grid_thw"].prod() < plain["image_grid_thw"].prod()
