"""The CPU reference engine: SGLang's generate calls, answered by transformers.

The tests run the tiny checkpoints of both families on the CPU: the three
image formats must give the same greedy token ids, a batch must give what
single requests give, and bad requests must fail before any generation.
"""

from __future__ import annotations

import threading
import types

import pytest
import torch

from vlm_tutorial.errors import (
    EmbeddingShapeError,
    ImageLoadError,
    RequestFormatError,
)
from vlm_tutorial.offline.reference import ReferenceEngine

FAMILIES = ["qwen2_5_vl", "llama4"]
MAX_NEW = 12
GREEDY = {"temperature": 0, "max_new_tokens": MAX_NEW, "ignore_eos": True}


@pytest.fixture(scope="module")
def tiny_paths():
    from vlm_tutorial.offline.tiny import tiny_model_path

    return {family: tiny_model_path(family) for family in FAMILIES}


def second_image():
    """A second, differently sized image, so that a batch's two requests really differ."""
    from PIL import Image

    image = Image.new("RGB", (224, 168))
    for x in range(224):
        for y in range(0, 168, 3):
            image.putpixel((x, y), (x, 255 - x, (x * y) % 256))
    return image


@pytest.fixture(scope="module", params=FAMILIES)
def case(request, tiny_paths):
    """One family's engine, two prompts/images, and the three formats' greedy outputs."""
    from vlm_bench.requests import (
        precomputed_embedding_request,
        processor_output_request,
        raw_request,
        run_processor,
    )
    from vlm_tutorial.images import example_image
    from vlm_tutorial.prompts import build_prompt
    from vlm_tutorial.vision import load_vision_encoder

    path = tiny_paths[request.param]
    engine = ReferenceEngine(path)
    encoder = load_vision_encoder(path)
    processor = engine.processor
    images = [example_image(), second_image()]
    prompts = [
        build_prompt(processor, "What is in <image>?"),
        build_prompt(processor, "Describe <image> in one word."),
    ]

    def requests_for(i: int) -> dict[str, dict]:
        return {
            "raw": raw_request(prompts[i], [images[i]]),
            "processor_output": processor_output_request(processor, prompts[i], [images[i]]),
            "precomputed_embedding": precomputed_embedding_request(
                processor, prompts[i], [images[i]], encoder
            ),
        }

    reqs = [requests_for(0), requests_for(1)]
    outputs = {name: engine.generate(**r, sampling_params=GREEDY) for name, r in reqs[0].items()}
    expanded_len = run_processor(processor, prompts[0], [images[0]])["input_ids"].shape[1]
    yield types.SimpleNamespace(
        family=request.param,
        path=path,
        engine=engine,
        processor=processor,
        images=images,
        prompts=prompts,
        requests=reqs,
        outputs=outputs,
        expanded_len=expanded_len,
    )
    engine.shutdown()


def test_three_formats_give_identical_greedy_ids(case):
    ids = {name: out["output_ids"] for name, out in case.outputs.items()}
    assert ids["raw"] == ids["processor_output"] == ids["precomputed_embedding"], ids
    assert len(ids["raw"]) == MAX_NEW
    assert len(set(ids["raw"])) > 1, "a tiny model that repeats one token tests nothing"


def test_prompt_tokens_count_the_expanded_image_tokens(case):
    counts = {name: out["meta_info"]["prompt_tokens"] for name, out in case.outputs.items()}
    assert set(counts.values()) == {case.expanded_len}, counts
    # the expansion really happened: the rendered prompt has one placeholder, not dozens
    unexpanded = len(case.processor.tokenizer(case.prompts[0], add_special_tokens=False).input_ids)
    assert case.expanded_len > unexpanded + 1


def test_output_has_sglangs_shape(case):
    out = case.outputs["raw"]
    meta = out["meta_info"]
    assert meta["completion_tokens"] == len(out["output_ids"]) == MAX_NEW
    assert meta["finish_reason"] == {"type": "length", "length": MAX_NEW}
    assert isinstance(meta["e2e_latency"], float) and meta["e2e_latency"] > 0
    assert isinstance(meta["id"], str) and meta["id"]
    assert out["text"] == case.processor.tokenizer.decode(
        out["output_ids"], skip_special_tokens=True
    )


def test_reference_engine_matches_transformers_generate_on_the_processor_output(case):
    """An independent check: plain model.generate on the full processor output."""
    from vlm_bench.requests import run_processor

    inputs = run_processor(case.processor, case.prompts[0], [case.images[0]])
    inputs["pixel_values"] = inputs["pixel_values"].to(case.engine.dtype)
    with torch.no_grad():
        generated = case.engine.model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW)
    direct = generated[0, inputs["input_ids"].shape[1] :].tolist()
    assert case.outputs["raw"]["output_ids"] == direct


@pytest.mark.parametrize("fmt", ["raw", "processor_output", "precomputed_embedding"])
def test_a_batch_gives_what_single_requests_give(case, fmt):
    first, second = case.requests[0][fmt], case.requests[1][fmt]
    key = "prompt" if fmt == "raw" else "input_ids"
    batch = case.engine.generate(
        **{key: [first[key], second[key]]},
        image_data=[first["image_data"], second["image_data"]],
        sampling_params=GREEDY,
    )
    singles = [case.engine.generate(**r, sampling_params=GREEDY) for r in (first, second)]
    assert isinstance(batch, list) and len(batch) == 2
    assert [b["output_ids"] for b in batch] == [s["output_ids"] for s in singles]
    assert [b["meta_info"]["prompt_tokens"] for b in batch] == [
        s["meta_info"]["prompt_tokens"] for s in singles
    ]
    # two different requests, not one twice
    assert batch[0]["meta_info"]["prompt_tokens"] != batch[1]["meta_info"]["prompt_tokens"]
    assert batch[0]["meta_info"]["id"] != batch[1]["meta_info"]["id"]


def test_raw_images_of_every_kind_give_the_same_ids(case, tmp_path):
    from vlm_tutorial.images import image_to_base64, image_to_data_url

    path = tmp_path / "image.png"
    case.images[0].save(path)
    expected = case.outputs["raw"]["output_ids"]
    for source in (str(path), image_to_base64(case.images[0]), image_to_data_url(case.images[0])):
        out = case.engine.generate(
            prompt=case.prompts[0], image_data=[source], sampling_params=GREEDY
        )
        assert out["output_ids"] == expected


def test_processor_output_as_plain_lists_gives_the_same_ids(case):
    request = case.requests[0]["processor_output"]
    as_lists = {
        k: (v.tolist() if isinstance(v, torch.Tensor) else v)
        for k, v in request["image_data"][0].items()
    }
    assert not any(isinstance(v, torch.Tensor) for v in as_lists.values())
    out = case.engine.generate(
        input_ids=request["input_ids"], image_data=[as_lists], sampling_params=GREEDY
    )
    assert out["output_ids"] == case.outputs["processor_output"]["output_ids"]


def test_input_ids_with_raw_images_are_decoded_back_to_the_prompt(case):
    """SGLang's path for unexpanded input_ids plus raw images: decode, then process."""
    # the chat template already writes Llama 4's BOS token
    ids = case.processor.tokenizer(case.prompts[0], add_special_tokens=False).input_ids
    out = case.engine.generate(input_ids=ids, image_data=[case.images[0]], sampling_params=GREEDY)
    assert out["output_ids"] == case.outputs["raw"]["output_ids"]
    assert out["meta_info"]["prompt_tokens"] == case.expanded_len


@pytest.fixture
def no_generation(case, monkeypatch):
    """Fail the test if the model generates anything."""

    def forbidden(*args, **kwargs):
        raise AssertionError("model.generate ran for a request that should have been refused")

    monkeypatch.setattr(case.engine.model, "generate", forbidden)
    return case


def test_mixed_formats_are_refused_before_generation(no_generation):
    case = no_generation
    good = case.requests[0]["processor_output"]
    with pytest.raises(RequestFormatError, match="mixes"):
        case.engine.generate(
            input_ids=good["input_ids"],
            image_data=[case.images[0], good["image_data"][0]],
            sampling_params=GREEDY,
        )


def test_a_preprocessed_dict_with_a_prompt_is_refused(no_generation):
    case = no_generation
    good = case.requests[0]["processor_output"]
    with pytest.raises(RequestFormatError, match="input_ids"):
        case.engine.generate(
            prompt=case.prompts[0], image_data=good["image_data"], sampling_params=GREEDY
        )


def test_an_embedding_with_a_missing_row_is_refused(no_generation):
    case = no_generation
    good = case.requests[0]["precomputed_embedding"]
    d = dict(good["image_data"][0])
    key = "feature" if "feature" in d else "precomputed_embeddings"
    d[key] = d[key][:-1]
    with pytest.raises(EmbeddingShapeError, match="embedding rows"):
        case.engine.generate(input_ids=good["input_ids"], image_data=[d], sampling_params=GREEDY)


def test_one_bad_request_stops_the_whole_batch_before_generation(no_generation):
    case = no_generation
    good = case.requests[0]["processor_output"]
    bad = dict(good["image_data"][0])
    bad.pop("pixel_values")
    with pytest.raises(RequestFormatError):
        case.engine.generate(
            input_ids=[good["input_ids"], good["input_ids"]],
            image_data=[good["image_data"], [bad]],
            sampling_params=GREEDY,
        )


def test_stop_token_ends_generation_like_sglang(case):
    request = case.requests[0]["processor_output"]
    first = case.outputs["processor_output"]["output_ids"][0]
    stop_at_first = {"temperature": 0, "max_new_tokens": MAX_NEW, "stop_token_ids": [first]}
    out = case.engine.generate(**request, sampling_params=stop_at_first)
    # SGLang returns output_ids through the stop token, and the text without it.
    assert out["output_ids"] == [first]
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": first}
    assert out["meta_info"]["completion_tokens"] == 1
    assert out["text"] == ""
    ignored = case.engine.generate(**request, sampling_params={**stop_at_first, "ignore_eos": True})
    assert ignored["output_ids"] == case.outputs["processor_output"]["output_ids"]


def test_sampling_is_seeded_and_unknown_sampling_keys_are_refused(case):
    request = case.requests[0]["raw"]
    params = {"temperature": 1.0, "max_new_tokens": 8, "sampling_seed": 3}
    a = case.engine.generate(**request, sampling_params=params)["output_ids"]
    b = case.engine.generate(**request, sampling_params=params)["output_ids"]
    c = case.engine.generate(**request, sampling_params={**params, "sampling_seed": 4})
    assert a == b
    assert a != c["output_ids"]
    with pytest.raises(ValueError, match="stop"):
        case.engine.generate(**request, sampling_params={**GREEDY, "stop": ["."]})


def test_repr_and_shutdown(tiny_paths):
    engine = ReferenceEngine(tiny_paths["qwen2_5_vl"])
    assert "transformers reference engine, not SGLang" in repr(engine)
    engine.shutdown()
    assert engine.model is None and "shut down" in repr(engine)
    with pytest.raises(RuntimeError, match="shut down"):
        engine.generate(prompt="hi", sampling_params=GREEDY)
    engine.shutdown()  # idempotent


def test_text_only_input_ids_are_used_as_given(tiny_paths):
    """SGLang does not decode and re-tokenize text-only input_ids; neither does the reference engine."""

    engine = ReferenceEngine(tiny_paths["qwen2_5_vl"])
    ids = [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]
    out = engine.generate(input_ids=ids, sampling_params={"temperature": 0, "max_new_tokens": 3})
    assert out["meta_info"]["prompt_tokens"] == len(ids)
    engine.shutdown()


def test_a_bad_raw_image_late_in_a_batch_fails_before_any_generation(no_generation, tmp_path):
    case = no_generation
    good = case.requests[0]["raw"]
    with pytest.raises(ImageLoadError, match="file not found"):
        case.engine.generate(
            prompt=[good["prompt"], good["prompt"]],
            image_data=[good["image_data"], [str(tmp_path / "missing.png")]],
            sampling_params=GREEDY,
        )


@pytest.mark.parametrize(
    ("ids_change", "message"),
    [
        (lambda ids: ids[:-1] + [10**7], "outside the vocabulary"),
        (lambda ids: [], "input_ids is empty"),
        (lambda ids: [float(i) for i in ids], r"input_ids\[0\] is .* \(a float\)"),
        (lambda ids: ["1"] + ids[1:], r"input_ids\[0\] is '1' \(a str\)"),
    ],
    ids=["out-of-vocabulary", "empty", "floats", "strings"],
)
def test_bad_input_ids_are_refused_before_generation(no_generation, ids_change, message):
    case = no_generation
    ids = case.processor.tokenizer("Hello there")["input_ids"]
    with pytest.raises(RequestFormatError, match=message):
        case.engine.generate(input_ids=ids_change(list(ids)), sampling_params=GREEDY)


@pytest.mark.parametrize("value", [2.5, "8", True, 0])
def test_bad_max_new_tokens_are_refused_before_generation(no_generation, value):
    case = no_generation
    with pytest.raises(RequestFormatError, match="max_new_tokens"):
        case.engine.generate(**case.requests[0]["raw"], sampling_params={"max_new_tokens": value})


def test_a_cuda_device_without_a_gpu_is_refused_before_any_weight_loads(tiny_paths, monkeypatch):
    import transformers

    def forbidden(*args, **kwargs):
        raise AssertionError("weights were loaded for an engine that should have been refused")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", forbidden)
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", forbidden)
    with pytest.raises(ValueError, match="device='cuda:0', but torch sees no CUDA GPU"):
        ReferenceEngine(tiny_paths["qwen2_5_vl"], device="cuda:0")
    with pytest.raises(RuntimeError, match="gpu-please"):
        ReferenceEngine(tiny_paths["qwen2_5_vl"], device="gpu-please")
    with pytest.raises(ValueError, match="'int8' is not a floating-point torch dtype"):
        ReferenceEngine(tiny_paths["qwen2_5_vl"], dtype="int8")


def test_seeded_sampling_is_the_same_from_threads_as_one_after_another(case):
    request = case.requests[0]["raw"]
    seeds = [11, 12, 13, 14]

    def sample(seed):
        params = {
            "temperature": 1.0,
            "max_new_tokens": 6,
            "sampling_seed": seed,
            "ignore_eos": True,
        }
        return case.engine.generate(**request, sampling_params=params)["output_ids"]

    sequential = [sample(seed) for seed in seeds]
    threaded: dict[int, list[int]] = {}
    threads = [
        threading.Thread(target=lambda s=seed: threaded.__setitem__(s, sample(s))) for seed in seeds
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert [threaded[s] for s in seeds] == sequential
    assert len({tuple(ids) for ids in sequential}) > 1, (
        "the seeds must matter for this to test anything"
    )
