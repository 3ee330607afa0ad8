"""open_engine, merge_engine_args and the transformers ReferenceEngine.

The reference-engine tests run the tiny checkpoints of both families on the
CPU: the three image formats must give the same greedy
token ids, a batch must give what single requests give, and bad requests
must fail before any generation. The ``sglang`` backend is only checked for
its refusal on this machine and, with a clearly named test double, for its
shutdown-on-error lifecycle.
"""

from __future__ import annotations

import asyncio
import sys
import types

import pytest
import torch

from vlm_tutorial import engines
from vlm_tutorial.engines import (
    ENV_VAR,
    ReferenceEngine,
    merge_engine_args,
    open_engine,
)
from vlm_tutorial.errors import EmbeddingShapeError, EngineUnavailableError, RequestFormatError

QWEN_ID = "Qwen/Qwen2.5-VL-3B-Instruct"
LLAMA4_ID = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
FAMILIES = ["qwen2_5_vl", "llama4"]
MAX_NEW = 12
GREEDY = {"temperature": 0, "max_new_tokens": MAX_NEW}


# --------------------------------------------------------------------------- argument merging


def test_caller_beats_env_beats_recommended():
    env = {ENV_VAR: '{"tp_size": 2, "context_length": 4096, "disable_cuda_graph": true}'}
    args = merge_engine_args(LLAMA4_ID, {"context_length": 1024}, env=env)
    assert args["context_length"] == 1024  # caller over env
    assert args["tp_size"] == 2  # env over recommended
    assert args["disable_cuda_graph"] is True  # env only
    assert args["enable_multimodal"] is True  # recommended only


def test_real_llama4_id_gets_tp_size_4_unless_overridden():
    assert merge_engine_args(LLAMA4_ID, {}, env={})["tp_size"] == 4
    assert merge_engine_args(LLAMA4_ID, {"tp_size": 8}, env={})["tp_size"] == 8


def test_tiny_llama4_gets_the_family_args_but_not_tp_size(tiny_paths):
    args = merge_engine_args(tiny_paths["llama4"], {}, env={})
    assert args == {"enable_multimodal": True}
    assert merge_engine_args(tiny_paths["qwen2_5_vl"], {}, env={}) == {}


def test_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv(ENV_VAR, '{"mem_fraction_static": 0.3}')
    assert merge_engine_args(QWEN_ID)["mem_fraction_static"] == 0.3
    monkeypatch.delenv(ENV_VAR)
    assert merge_engine_args(QWEN_ID) == {}


@pytest.mark.parametrize("bad", ["{tp_size: 2}", "[1, 2]", '"triton"'])
def test_bad_env_json_names_the_variable_and_shows_an_example(bad):
    with pytest.raises(ValueError, match=ENV_VAR) as info:
        merge_engine_args(QWEN_ID, {}, env={ENV_VAR: bad})
    assert '"disable_cuda_graph": true' in str(info.value)
    # the valid twin
    assert merge_engine_args(QWEN_ID, {}, env={ENV_VAR: '{"tp_size": 2}'}) == {"tp_size": 2}


# --------------------------------------------------------------------------- backend choice


def test_unknown_backend_lists_the_choices():
    with (
        pytest.raises(ValueError, match="auto.*sglang.*transformers"),
        open_engine(QWEN_ID, backend="vllm"),
    ):
        pass


@pytest.mark.skipif(
    engines.sglang_unavailable_reason() is None, reason="sglang and a GPU are present"
)
def test_sglang_backend_refuses_here_and_names_the_cpu_alternative():
    with (
        pytest.raises(EngineUnavailableError, match='backend="transformers"'),
        open_engine(QWEN_ID, backend="sglang"),
    ):
        pass


def test_sglang_refusal_says_which_part_is_missing(monkeypatch):
    monkeypatch.setattr(engines, "_sglang_importable", lambda: False)
    with (
        pytest.raises(EngineUnavailableError, match="sglang is not installed"),
        open_engine(QWEN_ID, backend="sglang"),
    ):
        pass
    monkeypatch.setattr(engines, "_sglang_importable", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with (
        pytest.raises(EngineUnavailableError, match="no CUDA GPU"),
        open_engine(QWEN_ID, backend="sglang"),
    ):
        pass


class _LifecycleTestDouble:
    """Stands in for ``sglang.Engine`` in lifecycle tests only; it generates nothing."""

    instances: list[_LifecycleTestDouble] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.shutdown_calls = 0
        _LifecycleTestDouble.instances.append(self)

    def shutdown(self):
        self.shutdown_calls += 1


@pytest.fixture
def sglang_lifecycle_double(monkeypatch):
    """A fake ``sglang`` module (only ``Engine``) and a GPU that is said to exist."""
    module = types.ModuleType("sglang")
    module.Engine = _LifecycleTestDouble
    _LifecycleTestDouble.instances = []
    monkeypatch.setitem(sys.modules, "sglang", module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return _LifecycleTestDouble


def test_sglang_branch_shuts_down_when_the_body_raises(sglang_lifecycle_double, monkeypatch):
    monkeypatch.setenv(ENV_VAR, '{"attention_backend": "triton"}')
    with (
        pytest.raises(RuntimeError, match="cell failed"),
        open_engine(LLAMA4_ID, backend="sglang", mem_fraction_static=0.5) as engine,
    ):
        raise RuntimeError("cell failed")
    (double,) = sglang_lifecycle_double.instances
    assert engine is double
    assert double.shutdown_calls == 1
    assert double.kwargs == {
        "model_path": LLAMA4_ID,
        "tp_size": 4,
        "context_length": 65536,
        "enable_multimodal": True,
        "attention_backend": "triton",
        "mem_fraction_static": 0.5,
    }


def test_sglang_branch_shuts_down_on_normal_exit_too(sglang_lifecycle_double):
    with open_engine(QWEN_ID, backend="sglang"):
        pass
    assert sglang_lifecycle_double.instances[0].shutdown_calls == 1


def test_auto_picks_sglang_where_it_can_run(sglang_lifecycle_double, capsys):
    with open_engine(QWEN_ID) as engine:
        assert isinstance(engine, sglang_lifecycle_double)
    assert "backend='sglang'" in capsys.readouterr().out


def test_nest_asyncio_is_applied_inside_a_running_event_loop(sglang_lifecycle_double, monkeypatch):
    applied = []
    monkeypatch.setitem(
        sys.modules, "nest_asyncio", types.SimpleNamespace(apply=lambda: applied.append(1))
    )

    async def notebook_cell():
        with open_engine(QWEN_ID, backend="sglang"):
            pass

    asyncio.run(notebook_cell())
    assert applied == [1]
    # the twin: no running loop, no patching
    with open_engine(QWEN_ID, backend="sglang"):
        pass
    assert applied == [1]


# --------------------------------------------------------------------------- reference engine


@pytest.fixture(scope="module")
def tiny_paths():
    from vlm_tutorial.tiny import tiny_model_path

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
    from vlm_tutorial.images import example_image
    from vlm_tutorial.prompts import build_prompt
    from vlm_tutorial.requests import (
        precomputed_embedding_request,
        processor_output_request,
        raw_request,
        run_processor,
    )
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
    # The trained tiny models may end their answer before MAX_NEW, on an end-of-turn token.
    assert len(ids["raw"]) == MAX_NEW or ids["raw"][-1] in case.engine.eos_token_ids
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
    assert meta["completion_tokens"] == len(out["output_ids"]) <= MAX_NEW
    if meta["finish_reason"]["type"] == "length":
        assert meta["finish_reason"] == {"type": "length", "length": MAX_NEW}
        assert len(out["output_ids"]) == MAX_NEW
    else:  # stopped on an end-of-turn token, which output_ids keep (as SGLang's do)
        last = out["output_ids"][-1]
        assert meta["finish_reason"] == {"type": "stop", "matched": last}
        assert last in case.engine.eos_token_ids
    assert isinstance(meta["e2e_latency"], float) and meta["e2e_latency"] > 0
    assert isinstance(meta["id"], str) and meta["id"]
    assert out["text"] == case.processor.tokenizer.decode(
        out["output_ids"], skip_special_tokens=True
    )


def test_reference_engine_matches_transformers_generate_on_the_processor_output(case):
    """An independent check: plain model.generate on the full processor output."""
    from vlm_tutorial.requests import run_processor

    inputs = run_processor(case.processor, case.prompts[0], [case.images[0]])
    inputs["pixel_values"] = inputs["pixel_values"].to(case.engine.dtype)
    with torch.no_grad():
        generated = case.engine.model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=MAX_NEW,
            eos_token_id=sorted(case.engine.eos_token_ids),
        )
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
    out = case.engine.generate(**request, sampling_params={**GREEDY, "stop_token_ids": [first]})
    # SGLang returns output_ids through the stop token, and the text without it.
    assert out["output_ids"] == [first]
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": first}
    assert out["meta_info"]["completion_tokens"] == 1
    assert out["text"] == ""
    ignored = case.engine.generate(
        **request, sampling_params={**GREEDY, "stop_token_ids": [first], "ignore_eos": True}
    )
    reference = case.outputs["processor_output"]["output_ids"]
    assert ignored["output_ids"][: len(reference)] == reference
    assert len(ignored["output_ids"]) == MAX_NEW  # ignore_eos also ignores the end-of-turn token


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


@pytest.mark.skipif(
    engines.sglang_unavailable_reason() is None, reason="sglang and a GPU are present"
)
def test_auto_picks_the_reference_engine_here_and_says_why(tiny_paths, capsys):
    with open_engine(tiny_paths["llama4"], mem_fraction_static=0.5) as engine:
        assert isinstance(engine, ReferenceEngine)
        out = engine.generate(
            prompt="Hello", sampling_params={"temperature": 0, "max_new_tokens": 2}
        )
        assert out["meta_info"]["completion_tokens"] == 2
    printed = capsys.readouterr().out
    assert "backend='transformers'" in printed
    assert engines.sglang_unavailable_reason() in printed
    # the SGLang-only arguments are noted once, not an error
    assert printed.count("ignoring SGLang-only engine arguments") == 1
    assert "enable_multimodal" in printed and "mem_fraction_static" in printed
    assert engine.model is None  # shut down on exit


def test_text_only_input_ids_are_used_as_given(tiny_paths):
    """SGLang does not decode and re-tokenize text-only input_ids; neither does the reference engine."""
    from vlm_tutorial.engines import ReferenceEngine

    engine = ReferenceEngine(tiny_paths["qwen2_5_vl"])
    ids = [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]
    out = engine.generate(input_ids=ids, sampling_params={"temperature": 0, "max_new_tokens": 3})
    assert out["meta_info"]["prompt_tokens"] == len(ids)
    engine.shutdown()
