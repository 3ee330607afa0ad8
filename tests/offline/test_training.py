"""Tests of the trained tiny checkpoints: they name the colours and shapes in toy pictures.

Every answer here comes from the CPU reference engine in float32, through
the request builders of the three image formats, as in the notebooks.
"""

from __future__ import annotations

import math

import pytest
import torch

from vlm_bench.requests import (
    precomputed_embedding_request,
    processor_output_request,
    raw_request,
)
from vlm_tutorial.images import example_image
from vlm_tutorial.offline import toys
from vlm_tutorial.offline.reference import ReferenceEngine
from vlm_tutorial.offline.tiny import PRESETS
from vlm_tutorial.offline.tiny import training as tr
from vlm_tutorial.prompts import build_prompt
from vlm_tutorial.vision import load_vision_encoder

FAMILIES = ["qwen2_5_vl", "llama4"]
GREEDY = {"temperature": 0, "max_new_tokens": 16}
EXAMPLE_DESCRIPTION = "a red circle and a blue square"  # example_image()'s picture
SECOND_DESCRIPTION = "a yellow triangle"
# The two notebook questions and the answers the models must give, written out.
SINGLE_QUESTION = "What's shown here: <image>?"
PAIR_QUESTION = "What's shown here: <image> and <image>?"
PAIR_ANSWER = "a red circle and a blue square; a yellow triangle"
HELDOUT = 24  # scenes (about 36 shapes) per family: the shipped models on pictures never trained on


def greedy_margins(engine, request, max_new_tokens: int = 16) -> list[float]:
    """Top-1 minus top-2 logit at each token ``engine`` generates greedily for ``request``.

    The logits are read from the model's output layer while the engine's own
    ``generate`` runs, so this measures the engine's path for that format.
    """
    head = engine.model.get_output_embeddings()
    steps: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, _i, out: steps.append(out[0, -1].float()))
    try:
        out = engine.generate(
            **request, sampling_params={"temperature": 0, "max_new_tokens": max_new_tokens}
        )
    finally:
        handle.remove()
    ids = out["output_ids"]
    if len(steps) < len(ids):
        raise RuntimeError(f"saw {len(steps)} output-layer calls for {len(ids)} generated tokens")
    margins = []
    for logits, token in zip(steps[: len(ids)], ids, strict=True):
        top = torch.topk(logits.detach(), 2)
        if int(top.indices[0]) != token:
            raise RuntimeError("the engine's token is not the argmax of the logits seen")
        margins.append(float(top.values[0] - top.values[1]))
    return margins


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
    assert (
        info["training"]["last_loss"] < 0.5
    )  # from about 6.3 (log of the vocabulary) at the start
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
            margins = greedy_margins(engine, request)
            assert len(margins) <= 13, fmt  # the answer and its end-of-turn token
            smallest[name] = min(smallest.get(name, math.inf), *margins)
    print(f"{family}: smallest greedy margins {smallest}")
    assert smallest["example"] > 2.0 and smallest["second"] > 2.0  # one picture
    assert smallest["both"] > 1.0  # two pictures


def heldout_answers(engine, count: int) -> tuple[list[str], dict[str, int]]:
    """Greedy answers to ``count`` held-out scenes, and the colours and shapes named right."""
    prompt = build_prompt(engine.processor, SINGLE_QUESTION)
    score = dict.fromkeys(("colour", "shape", "total", "stopped"), 0)
    answers = []
    for scene in tr.heldout_scenes(count):
        out = engine.generate(**raw_request(prompt, [scene.image()]), sampling_params=GREEDY)
        answers.append(out["text"])
        score["stopped"] += out["meta_info"]["finish_reason"]["type"] == "stop"
        said = [part.split() for part in out["text"].split(" and ")]
        for i, truth in enumerate(sorted(scene.shapes, key=lambda s: s.x)):
            words = said[i] if i < len(said) else []
            score["colour"] += len(words) == 3 and words[1] == truth.colour
            score["shape"] += len(words) == 3 and words[2] == truth.kind
            score["total"] += 1
    return answers, score


def assert_names_heldout(score: dict[str, int], count: int) -> None:
    """Colour right for >= 95% of shapes, shape right for >= 90%, every answer stopped by itself."""
    assert score["colour"] >= 0.95 * score["total"], score
    assert score["shape"] >= 0.90 * score["total"], score
    assert score["stopped"] == count, score


@pytest.mark.parametrize("family", FAMILIES)
def test_heldout_pictures_are_named(engines, family) -> None:
    """The shipped models name pictures they never trained on."""
    _, score = heldout_answers(engines[family], HELDOUT)
    print(f"{family}: {score}")
    assert_names_heldout(score, HELDOUT)


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
    assert greedy_margins(Engine([1, 2]), {}) == [4.0, 7.5]
    with pytest.raises(RuntimeError, match="argmax"):
        greedy_margins(Engine([1, 0]), {})


@pytest.mark.retrain
@pytest.mark.parametrize("family", FAMILIES)
def test_the_committed_command_reproduces_the_shipped_weights(
    engines, encoders, family, tmp_path
) -> None:
    """Train from scratch with the committed command; what it writes answers like the shipped weights.

    Minutes on two CPU cores (it trains); no time limit but a hang guard.
    """
    import subprocess
    import sys

    from vlm_tutorial.offline.tiny.builder import materialise, read_tensors, shipped_weights

    out, weights = tmp_path / "trained", tmp_path / "weights"
    command = [sys.executable, "-m", "vlm_tutorial.offline.tiny", family, str(out)]
    subprocess.run([*command, "--write-weights", str(weights)], check=True, timeout=7200)
    written = weights / f"{family}.safetensors"
    assert written.stat().st_size <= shipped_weights(family).stat().st_size * 1.5
    # The written file rebuilds the trained checkpoint tensor for tensor.
    rebuilt = read_tensors(materialise(family, tmp_path / "rebuilt", weights=written))
    trained = read_tensors(out)
    assert rebuilt.keys() == trained.keys()
    assert all(torch.equal(rebuilt[k], trained[k]) for k in trained)
    # It answers as the shipped checkpoint does.
    engine = ReferenceEngine(out, device="cpu")
    encoder = load_vision_encoder(out, dtype=torch.float32)
    for descriptions, expected in NOTEBOOK_INPUTS.values():
        requests = notebook_requests(engine, encoder, notebook_images(descriptions))
        for fmt, request in requests.items():
            assert engine.generate(**request, sampling_params=GREEDY)["text"] == expected, fmt
    count = 60
    answers, score = heldout_answers(engine, count)
    shipped, _ = heldout_answers(engines[family], count)
    print(f"{family}: reproduced {score}")
    assert_names_heldout(score, count)
    assert sum(a == b for a, b in zip(answers, shipped, strict=True)) >= 0.9 * count
