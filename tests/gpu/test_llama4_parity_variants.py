"""Opt-in diagnostics: which Llama 4 feature makes SGLang part from the transformers reference?

Runs only with ``pytest --run-diagnostics`` (``tools/gpu_check.py
--run-diagnostics``): each variant of the tiny Llama 4 switches one suspect
off (docs/gpu/README.md, "Llama 4: SGLang vs the reference engine"), and the
test records how many leading greedy tokens SGLang and the float32 reference
share. Every variant must still agree on the first token.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from gpu_support import COMPARE_ENGINE_ARGS, QUESTION, compare_greedy, greedy

pytestmark = [pytest.mark.gpu, pytest.mark.diagnostics]

#: Variant name -> (changes to the tiny preset's text config, extra engine arguments).
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # SGLang computes the logits in bfloat16 unless asked: near ties become exact
    # ties there (on CPU, a bfloat16 transformers run with a float32 LM head agrees
    # with float32 for all 32 tokens of the tiny checkpoint, against 14 without).
    "fp32_lm_head": ({}, {"enable_fp32_lm_head": True}),
    # SGLang takes its flashinfer RoPE kernel (float32 cos/sin cache) only for head
    # sizes 64/128/256/512; the tiny head_dim 16 goes through the fallback kernel,
    # whose cos/sin cache is cast to bfloat16 (rotary_embedding/base.py).
    "head_dim_64": ({"head_dim": 64}, {}),
    # With one expert the top-1 router cannot flip between experts.
    "one_expert": ({"num_local_experts": 1}, {}),
    # No QK norm: SGLang's fused qk-norm kernel is out of the picture.
    "no_qk_norm": ({"use_qk_norm": False}, {}),
    # Dense layer 0, MoE layer 1 (interleave step 2), as in Llama 4 Maverick.
    "moe_every_2nd": ({"interleave_moe_layer_step": 2}, {}),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_llama4_variant_parity(variant: str, tmp_path: Path, gpu_record: dict[str, Any]) -> None:
    from transformers import AutoProcessor

    from vlm_bench.engines import open_engine
    from vlm_tutorial.images import example_image
    from vlm_tutorial.offline.reference import ReferenceEngine
    from vlm_tutorial.offline.tiny import build_tiny_model
    from vlm_tutorial.offline.tiny.presets import PRESETS
    from vlm_tutorial.prompts import build_prompt

    name = f"parity-{variant}"
    spec = copy.deepcopy(PRESETS["llama4"]["tiny"])
    changes, engine_args = VARIANTS[variant]
    spec["text"].update(changes)
    PRESETS["llama4"][name] = spec
    try:
        path = build_tiny_model("llama4", tmp_path / variant, preset=name)
    finally:
        del PRESETS["llama4"][name]
    prompt = build_prompt(AutoProcessor.from_pretrained(path), QUESTION)
    image = example_image()
    with open_engine(path, backend="sglang", **COMPARE_ENGINE_ARGS, **engine_args) as engine:
        sgl = engine.generate(
            prompt=prompt,
            image_data=[image],
            sampling_params=greedy(),
            return_logprob=True,
            top_logprobs_num=5,
        )
    with ReferenceEngine(path, device="cpu", dtype="float32") as ref:
        ref_out = ref.generate(prompt=prompt, image_data=[image], sampling_params=greedy())
    cmp = compare_greedy("sglang", sgl, "reference_fp32_cpu", ref_out)
    gpu_record.setdefault("llama4_parity_variants", {})[variant] = {
        "config_changes": changes,
        "engine_args": engine_args,
        **cmp.as_record(),
    }
    assert cmp.leading_agreement >= 1, cmp.describe()
