"""Tests of the trained tiny checkpoints: they name the colours and shapes in toy pictures.

Every answer here comes from the CPU reference engine in float32, through
the request builders of the three image formats, as in the notebooks.
"""

from __future__ import annotations

import math

import pytest
import torch

from vlm_tutorial.offline import toys
from vlm_tutorial.images import EXAMPLE_DESCRIPTION, example_image
from vlm_tutorial.prompts import build_prompt
from vlm_tutorial.offline.reference import ReferenceEngine
from vlm_bench.requests import (
    precomputed_embedding_request,
    processor_output_request,
    raw_request,
)
from vlm_tutorial.offline.tiny import PRESETS
from vlm_tutorial.offline.tiny import training as tr
from vlm_tutorial.vision import load_vision_encoder

FAMILIES = ["qwen2_5_vl", "llama4"]
GREEDY = {"temperature": 0, "max_new_tokens": 16}
SECOND_DESCRIPTION = "a yellow triangle"
# The two notebook questions and the answers the models must give, written out.
SINGLE_QUESTION = "What's shown here: <image>?"
PAIR_QUESTION = "What's shown here: <image> and <image>?"
PAIR_ANSWER = "a red circle and a blue square; a yellow triangle"
HELDOUT = 60  # scenes (about 90 shapes) per family


@pytest.fixture(scope="module")
def engines(tiny_paths):
    return {family: ReferenceEngine(tiny_paths[family], device="cpu") for family in FAMILIES}


@pytest.fixture(scope="module")
def encoders(tiny_paths):
    return {
        family: load_vision_encoder(tiny_paths[family], dtype=torch.float32) for family in FAMILIES
    }


def notebook_requests(engine, encoder, images):
    """The three formats' requests for ``images`` with the notebooks' question."""
    question = SINGLE_QUESTION if len(images) == 1 else PAIR_QUESTION
    prompt = build_prompt(engine.processor, question, num_images=len(images))
    return {
        "raw": raw_request(prompt, images),
        "processor_output": processor_output_request(engine.processor, prompt, images),
        "precomputed_embedding": precomputed_embedding_request(
            engine.processor, prompt, images, encoder
        ),
    }


NOTEBOOK_INPUTS = {
    "example": ([EXAMPLE_DESCRIPTION], EXAMPLE_DESCRIPTION),
    "second": ([SECOND_DESCRIPTION], SECOND_DESCRIPTION),
    "both": ([EXAMPLE_DESCRIPTION, SECOND_DESCRIPTION], PAIR_ANSWER),
}


def notebook_images(descriptions):
    return [example_image() if d == EXAMPLE_DESCRIPTION else toys.draw(d) for d in descriptions]


def test_questions_and_answers_are_the_documented_ones() -> None:
    assert tr.QUESTION == SINGLE_QUESTION and tr.PAIR_QUESTION == PAIR_QUESTION
    pair = [toys.layout(EXAMPLE_DESCRIPTION), toys.layout(SECOND_DESCRIPTION)]
    assert tr.answer_for(pair) == PAIR_ANSWER


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_preset_is_trained_the_others_are_not(tiny_paths, family: str) -> None:
    import json
    from pathlib import Path

    info = json.loads((Path(tiny_paths[family]) / "tiny_model.json").read_text())
    assert info["trained"] is True
    assert info["training"]["last_loss"] < 0.5  # from about 6.3 (log of the vocabulary) at the start
    assert [p for p, spec in PRESETS[family].items() if spec.get("trained")] == ["tiny"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(NOTEBOOK_INPUTS))
def test_notebook_pictures_are_named_in_every_format(engines, encoders, family, name) -> None:
    descriptions, expected = NOTEBOOK_INPUTS[name]
    engine = engines[family]
    requests = notebook_requests(engine, encoders[family], notebook_images(descriptions))
    outputs = {fmt: engine.generate(**req, sampling_params=GREEDY) for fmt, req in requests.items()}
    for fmt, out in outputs.items():
        assert out["text"] == expected, (fmt, out["text"])
        assert out["meta_info"]["finish_reason"]["type"] == "stop", fmt  # stopped by itself
    ids = {fmt: out["output_ids"] for fmt, out in outputs.items()}
    assert len({tuple(v) for v in ids.values()}) == 1, ids


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_margins_are_decisive(engines, encoders, family) -> None:
    """Top-1 minus top-2 logit at every generated token, every format, every notebook input.

    A random tiny model's margins are hundredths of a logit. Decisive here
    means that bfloat16 on a GPU (logits off by a few tenths at most) cannot
    flip a token: every step of a one-picture answer leads by more than two
    logits, every step of the two-picture answer (the harder task, learnt
    from fewer examples) by more than one, the margin the GPU tests require.
    """
    engine = engines[family]
    smallest = {}
    for name, (descriptions, _) in NOTEBOOK_INPUTS.items():
        requests = notebook_requests(engine, encoders[family], notebook_images(descriptions))
        for fmt, request in requests.items():
            margins = tr.greedy_margins(engine, request)
            assert len(margins) <= 13, fmt  # the answer and its end-of-turn token
            smallest[name] = min(smallest.get(name, math.inf), *margins)
    print(f"{family}: smallest greedy margins {smallest}")
    assert smallest["example"] > 2.0 and smallest["second"] > 2.0  # one picture
    assert smallest["both"] > 1.0  # two pictures


@pytest.mark.parametrize("family", FAMILIES)
def test_heldout_pictures_are_named(engines, family) -> None:
    """Colour right for >= 95% of shapes, shape right for >= 90%, on scenes never trained on."""
    engine = engines[family]
    prompt = build_prompt(engine.processor, SINGLE_QUESTION)
    colour = shape = total = stopped = 0
    scenes = tr.heldout_scenes(HELDOUT)
    for scene in scenes:
        out = engine.generate(**raw_request(prompt, [scene.image()]), sampling_params=GREEDY)
        stopped += out["meta_info"]["finish_reason"]["type"] == "stop"
        said = [part.split() for part in out["text"].split(" and ")]
        for i, truth in enumerate(sorted(scene.shapes, key=lambda s: s.x)):
            words = said[i] if i < len(said) else []
            colour += len(words) == 3 and words[1] == truth.colour
            shape += len(words) == 3 and words[2] == truth.kind
            total += 1
    print(f"{family}: colour {colour}/{total}, shape {shape}/{total}, stopped {stopped}/{HELDOUT}")
    assert colour >= 0.95 * total and shape >= 0.90 * total
    assert stopped == HELDOUT


def test_heldout_scenes_are_not_training_scenes() -> None:
    heldout = set(tr.heldout_scenes(HELDOUT))
    for plan in tr.PLANS.values():
        seen = {scene for example in tr.training_scenes(plan) for scene in example}
        assert not heldout & seen
    assert len(heldout) == HELDOUT


def test_training_is_deterministic(tiny_paths) -> None:
    """Two short runs from the same seed give the same weights; another seed does not."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    path = tiny_paths["qwen2_5_vl"]
    processor = AutoProcessor.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    plan = tr.TrainingPlan(
        examples=4,
        layout_pairs=1,
        notebook_copies=1,
        vision_steps=2,
        vision_batch=2,
        language_steps=2,
        language_batch=2,
        warmup=1,
    )

    def run(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
        from dataclasses import replace

        tr.train_model(model, processor, "qwen2_5_vl", replace(plan, seed=seed))
        return {k: v.clone() for k, v in model.state_dict().items()}

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_greedy_margins_checks_the_engine_argmax() -> None:
    class Head(torch.nn.Module):
        def forward(self, x):
            return x

    class Model:
        def __init__(self) -> None:
            self.head = Head()

        def get_output_embeddings(self):
            return self.head

    class Engine:
        model = Model()

        def __init__(self, ids):
            self.ids = ids

        def generate(self, **_):
            for logits in ([0.0, 5.0, 1.0], [2.0, 0.0, 9.5]):
                self.model.head(torch.tensor([[logits]]))
            return {"output_ids": self.ids}

    assert Engine([1, 2]).generate() == {"output_ids": [1, 2]}
    assert tr.greedy_margins(Engine([1, 2]), {}) == [4.0, 7.5]
    with pytest.raises(RuntimeError, match="argmax"):
        tr.greedy_margins(Engine([1, 0]), {})
