"""The three image input formats through SGLang's offline Engine, for Qwen2.5-VL and Llama 4.

One engine per family (module-scoped fixture in conftest.py). The first test
runs first on a fresh engine, so its first request per format includes
SGLang's one-off work (Triton and flashinfer compilation on a fresh machine);
it also records warm latencies and each format's greedy output.
"""

from __future__ import annotations

from typing import Any

import pytest
from gpu_support import (
    DECISIVE_NATS,
    EXAMPLE_PICTURE,
    FORMATS,
    MAX_NEW_TOKENS,
    PAIR_QUESTION,
    QUESTION,
    SECOND_PICTURE,
    assert_same_greedy,
    batch_request,
    build_format_requests,
    compare_greedy,
    expected_answer,
    greedy,
    median,
    min_margin,
    sample_images,
    timed,
)

pytestmark = pytest.mark.gpu

WARM_REPEATS = 5
LOGPROBS = {"return_logprob": True, "top_logprobs_num": 5}


@pytest.fixture(scope="module")
def images() -> list[Any]:
    return sample_images()


@pytest.fixture(scope="module")
def prompt(processor: Any) -> str:
    from vlm_tutorial.prompts import build_prompt

    return build_prompt(processor, QUESTION)


@pytest.fixture(scope="module")
def requests_by_format(
    processor: Any, encoder: Any, prompt: str, images: list[Any]
) -> dict[str, dict[str, Any]]:
    """The same question and image as one request per format."""
    return build_format_requests(processor, encoder, prompt, images[:1])


@pytest.fixture(scope="module")
def outputs_by_format(sglang_engine: Any, requests_by_format: dict[str, Any]) -> dict[str, Any]:
    """Each format's greedy answer, with the top-5 log-probabilities of every step."""
    engine = sglang_engine.engine
    return {
        fmt: engine.generate(**req, sampling_params=greedy(), **LOGPROBS)
        for fmt, req in requests_by_format.items()
    }


def test_first_and_warm_latency_per_format(
    sglang_engine: Any,
    family: str,
    requests_by_format: dict[str, Any],
    processor: Any,
    prompt: str,
    images: list[Any],
    encoder: Any,
    gpu_record: dict[str, Any],
) -> None:
    """Time each format's first and warm requests; warm repeats of a greedy request agree.

    The first request of a format may run kernels that are still being
    compiled or tuned, so whether it matches the warm answers is recorded,
    not asserted; the warm repeats run the same kernels on the same input and
    must give the same tokens.
    """
    from vlm_bench.requests import precomputed_embedding_request

    engine = sglang_engine.engine
    record: dict[str, Any] = {
        "model_path": sglang_engine.model_path,
        "engine_start_s": round(sglang_engine.start_seconds, 2),
        "engine_args": sglang_engine.engine_args,
        "max_new_tokens": MAX_NEW_TOKENS,
        "question": QUESTION,
        "formats": {},
    }
    gpu_record.setdefault("families", {})[family] = record
    # Client-side cost of format 3: processor plus vision encoder.
    _, encode_s = timed(precomputed_embedding_request, processor, prompt, images[:1], encoder)
    record["precomputed_embedding_client_s"] = round(encode_s, 4)
    repeats_differ = []
    for fmt in FORMATS:
        req = requests_by_format[fmt]
        out, first_s = timed(engine.generate, **req, sampling_params=greedy())
        warm, warm_ids = [], []
        for _ in range(WARM_REPEATS):
            again, seconds = timed(engine.generate, **req, sampling_params=greedy())
            warm.append(seconds)
            warm_ids.append(again["output_ids"])
        if any(ids != warm_ids[0] for ids in warm_ids):
            repeats_differ.append((fmt, warm_ids))
        record["formats"][fmt] = {
            "first_request_s": round(first_s, 4),
            "warm_request_s": round(median(warm), 4),
            "warm_requests_s": [round(s, 4) for s in warm],
            "prompt_tokens": out["meta_info"]["prompt_tokens"],
            "completion_tokens": out["meta_info"]["completion_tokens"],
            "output_ids": out["output_ids"],
            "text": out["text"],
            "first_request_matches_warm": out["output_ids"] == warm_ids[0],
        }
    assert not repeats_differ, f"warm repeats of a greedy request differ: {repeats_differ}"


def test_request_builders_output_is_accepted(
    family: str,
    real_models: bool,
    outputs_by_format: dict[str, Any],
    requests_by_format: dict[str, Any],
) -> None:
    """Every builder's request runs, SGLang counts the same expanded prompt, and the answer ends."""
    expanded = len(requests_by_format["processor_output"]["input_ids"])
    for fmt, out in outputs_by_format.items():
        meta = out["meta_info"]
        assert meta["prompt_tokens"] == expanded, (
            f"{family} {fmt}: SGLang saw {meta['prompt_tokens']} prompt tokens, the processor "
            f"made {expanded} (an image placeholder was not expanded, or a BOS was doubled)"
        )
        if not real_models:
            # The tiny models end their answer themselves, well before the limit.
            assert meta["finish_reason"]["type"] == "stop", (fmt, meta["finish_reason"])
            assert meta["completion_tokens"] < MAX_NEW_TOKENS, (fmt, meta)


def test_three_formats_give_identical_greedy_ids(
    family: str, real_models: bool, outputs_by_format: dict[str, Any], gpu_record: dict[str, Any]
) -> None:
    """Raw images, processor output and a precomputed embedding: the same greedy tokens, exactly.

    A raw image is preprocessed on the GPU and encoded by SGLang's kernels; the
    other formats were prepared by transformers. The tiny models answer with wide
    margins, so those rounding differences may not change a single token, and the
    answer names what is in the picture.
    """
    raw = outputs_by_format["raw"]
    comparisons = {
        fmt: assert_same_greedy("raw", raw, fmt, outputs_by_format[fmt]).as_record()
        for fmt in FORMATS[1:]
    }
    margins = {fmt: min_margin(out) for fmt, out in outputs_by_format.items()}
    gpu_record.setdefault("format_agreement", {})[family] = comparisons
    gpu_record.setdefault("margins", {}).setdefault(family, {})["one_image"] = margins
    if not real_models:
        assert raw["text"] == EXAMPLE_PICTURE, raw["text"]
        assert all(m is not None and m >= DECISIVE_NATS for m in margins.values()), margins


@pytest.mark.parametrize("fmt", FORMATS)
def test_batch_of_requests_per_format(
    fmt: str,
    family: str,
    real_models: bool,
    sglang_engine: Any,
    processor: Any,
    encoder: Any,
    images: list[Any],
    gpu_record: dict[str, Any],
) -> None:
    """A batch of two different requests answers exactly as the same requests sent one by one."""
    from vlm_tutorial.prompts import build_prompt

    engine = sglang_engine.engine
    prompt = build_prompt(processor, QUESTION)
    singles = [build_format_requests(processor, encoder, prompt, [img])[fmt] for img in images]
    alone = [engine.generate(**req, sampling_params=greedy(), **LOGPROBS) for req in singles]
    together = engine.generate(**batch_request(singles), sampling_params=greedy())
    assert isinstance(together, list) and len(together) == 2
    results = [
        assert_same_greedy(f"single {i}", a, f"batched {i}", b)
        for i, (a, b) in enumerate(zip(alone, together, strict=True))
    ]
    assert alone[0]["output_ids"] != alone[1]["output_ids"], (
        "the two batched requests should differ (different pictures)"
    )
    if not real_models:
        assert [a["text"] for a in alone] == [EXAMPLE_PICTURE, SECOND_PICTURE]
    gpu_record.setdefault("batch", {}).setdefault(family, {})[fmt] = [
        r.as_record() for r in results
    ]


@pytest.mark.parametrize("pair", ["same_size", "mixed_size"])
def test_multi_image_request_per_format(
    family: str,
    real_models: bool,
    sglang_engine: Any,
    processor: Any,
    encoder: Any,
    images: list[Any],
    gpu_record: dict[str, Any],
    pair: str,
) -> None:
    """One request with two pictures: every format accepts it and gives exactly the same answer.

    ``same_size``: the example picture and the second one drawn at the same size (equal token
    counts); ``mixed_size``: the second at 256x192 (fewer image tokens; for Llama 4, 1 tile of
    336 px against the example's 2 plus a global view).
    """
    from vlm_tutorial.families import get_family
    from vlm_tutorial.offline import toys
    from vlm_tutorial.prompts import build_prompt

    if pair == "same_size":
        images = [images[0], toys.draw(SECOND_PICTURE, size=images[0].size)]
    prompt = build_prompt(processor, PAIR_QUESTION, num_images=2)
    formats = list(FORMATS)
    requests = build_format_requests(processor, encoder, prompt, images, formats=formats)
    if family == "llama4":
        # Mixed sizes give different numbers of tiles; SGLang places the bundled embedding's
        # rows in prompt order all the same (docs/upstream/llama4-precomputed-embedding.md).
        counts = get_family(family).tokens_per_image(requests["processor_output"]["input_ids"])
        assert (len(set(counts)) > 1) == (pair == "mixed_size"), counts
    engine = sglang_engine.engine
    outs = {
        fmt: engine.generate(**req, sampling_params=greedy(), **LOGPROBS)
        for fmt, req in requests.items()
    }
    expanded = len(requests["processor_output"]["input_ids"])
    for fmt, out in outs.items():
        assert out["meta_info"]["prompt_tokens"] == expanded, (fmt, out["meta_info"])
    comparisons = {
        fmt: assert_same_greedy("raw", outs["raw"], fmt, outs[fmt]).as_record()
        for fmt in formats[1:]
    }
    margins = {fmt: min_margin(out) for fmt, out in outs.items()}
    gpu_record.setdefault("multi_image", {}).setdefault(family, {})[pair] = {
        "prompt_tokens": expanded,
        "output_ids": {fmt: out["output_ids"] for fmt, out in outs.items()},
        "text": outs["raw"]["text"],
        "comparisons": comparisons,
    }
    gpu_record.setdefault("margins", {}).setdefault(family, {})[f"two_images_{pair}"] = margins
    if not real_models and pair == "same_size":
        # The pair the tiny models were trained on; of other pairs they know the first picture
        # only (tests/test_training.py), so the mixed-size pair checks identity, not the answer.
        assert outs["raw"]["text"] == expected_answer(EXAMPLE_PICTURE, SECOND_PICTURE)
        assert all(m is not None and m >= DECISIVE_NATS for m in margins.values()), margins


def test_sglang_matches_reference_engine(
    family: str,
    real_models: bool,
    model_path: str,
    sglang_engine: Any,
    prompt: str,
    images: list[Any],
    gpu_record: dict[str, Any],
) -> None:
    """SGLang's greedy answer is the transformers reference engine's, token for token.

    SGLang runs bfloat16; the reference runs float32 on the CPU and bfloat16 on
    the GPU. The tiny models' margins leave rounding no token to flip.
    """
    if real_models:
        pytest.skip("the reference comparison runs on the tiny checkpoints only")
    from vlm_tutorial.offline.reference import ReferenceEngine

    image = images[0]
    engine = sglang_engine.engine
    sgl = engine.generate(prompt=prompt, image_data=[image], sampling_params=greedy(), **LOGPROBS)
    refs = {}
    for name, device, dtype in (
        ("reference_fp32_cpu", "cpu", "float32"),
        ("reference_bf16_cuda", "cuda", "bfloat16"),
    ):
        with ReferenceEngine(model_path, device=device, dtype=dtype) as ref:
            refs[name] = ref.generate(prompt=prompt, image_data=[image], sampling_params=greedy())
    gpu_record.setdefault("reference_parity", {})[family] = {
        "sglang_output_ids": sgl["output_ids"],
        "sglang_min_margin_nats": min_margin(sgl),
        "reference_output_ids": {name: out["output_ids"] for name, out in refs.items()},
        "comparisons": {
            name: compare_greedy("sglang", sgl, name, out).as_record() for name, out in refs.items()
        },
    }
    for name, out in refs.items():
        assert out["meta_info"]["prompt_tokens"] == sgl["meta_info"]["prompt_tokens"], (
            f"{name} and SGLang tokenize the prompt differently: "
            f"{out['meta_info']['prompt_tokens']} vs {sgl['meta_info']['prompt_tokens']} tokens"
        )
        assert_same_greedy("sglang", sgl, name, out)
