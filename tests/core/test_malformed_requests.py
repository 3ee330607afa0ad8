"""Malformed requests, one mutation away from a valid one: refused early, by this package, by name.

A generator builds a valid request for the CPU reference engine of one tiny
checkpoint (raw images of every source kind, a ``processor_output`` dict, a
precomputed embedding, text only, or a batch), checks that it passes, then
breaks exactly one thing in it. The broken request must raise a
:class:`~vlm_tutorial.errors.VLMTutorialError` whose message names the field
that was broken, from ``validate_*`` and from ``ReferenceEngine.generate``,
with no forward pass of the model. Since only one thing is wrong, the error
can name nothing else.

Two drivers share the mutation table: ``test_every_mutation_*`` walks every
mutation and every bad value it knows on one plain valid request per family;
``test_random_*`` (hypothesis) draws varied valid requests (sources, number
and size of images, containers, dtypes, sampling parameters) and a random
mutation with random positions. ``test_the_generators_valid_requests_*``
runs the generator's variants through the real model, so that a twin which
"passes" is valid for the model, not only for the checks.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlm_bench.requests import run_processor
from vlm_tutorial.errors import (
    EmbeddingShapeError,
    ImageDecodeError,
    ImageLoadError,
    VLMTutorialError,
)
from vlm_tutorial.families import FAMILIES, PRECOMPUTED_EMBEDDING, PROCESSOR_OUTPUT, ModelFamily
from vlm_tutorial.images import image_to_base64, image_to_data_url
from vlm_tutorial.offline.reference import ReferenceEngine
from vlm_tutorial.prompts import build_prompt
from vlm_tutorial.validation import (
    validate_image_data,
    validate_input_ids,
    validate_sampling_params,
)

FAMILY_NAMES = ("qwen2_5_vl", "llama4")
#: Image sizes the generator draws from (small: the processors and encoders run on each).
SIZES = ((64, 48), (48, 64), (56, 56), (90, 60))
QUESTIONS = ("What is in the picture?", "Describe it.", "Name one colour.")
SOURCES = ("pil", "path", "base64", "data_url", "bytes")
SINGLE_KINDS = ("raw", "ids_raw", "text_prompt", "text_ids", "processor_output", "embedding")
#: A batch of two requests of one single kind.
BATCH_OF = {"batch_raw": "raw", "batch_ids": "processor_output", "batch_embedding": "embedding"}
KINDS = (*SINGLE_KINDS, *BATCH_OF)
IMAGE_KINDS = ("raw", "ids_raw", "processor_output", "embedding", *BATCH_OF)
DICT_KINDS = ("processor_output", "embedding")
BATCH_IDS = ("batch_ids", "batch_embedding")


class GenerationReached(Exception):
    """Raised by the sealed ``model.generate``: the request passed every check."""


# --------------------------------------------------------------------------------- the world


@dataclass(eq=False)
class World:
    """One family's engine, processor and encoder, with caches of their outputs."""

    family: ModelFamily
    engine: ReferenceEngine
    processor: Any
    encoder: Any
    folder: Any

    @property
    def other(self) -> ModelFamily:
        return next(f for f in FAMILIES.values() if f is not self.family)

    @property
    def emb_key(self) -> str:
        return self.family.embedding_key

    def prompt(self, question: str, n_images: int) -> str:
        return _prompt(self, question, n_images)

    def inputs(self, question: str, sizes: tuple[tuple[int, int], ...]) -> Any:
        return _inputs(self, question, sizes)

    def embedding(self, question: str, sizes: tuple[tuple[int, int], ...]) -> torch.Tensor:
        return _embedding(self, question, sizes)


@functools.cache
def _prompt(w: World, question: str, n_images: int) -> str:
    return build_prompt(w.processor, question, num_images=n_images)


@functools.cache
def _inputs(w: World, question: str, sizes: tuple[tuple[int, int], ...]) -> Any:
    return run_processor(w.processor, w.prompt(question, len(sizes)), [image(s) for s in sizes])


@functools.cache
def _embedding(w: World, question: str, sizes: tuple[tuple[int, int], ...]) -> torch.Tensor:
    with torch.no_grad():
        return w.encoder(w.inputs(question, sizes))


@functools.cache
def image(size: tuple[int, int]) -> Image.Image:
    """A deterministic picture of ``size`` (width, height), not a flat colour."""
    w, h = size
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    pixels = np.stack([(x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8))


@pytest.fixture(scope="module")
def worlds(tiny_paths, tmp_path_factory) -> Iterator[dict[str, World]]:
    from vlm_tutorial.vision import load_vision_encoder

    folder = tmp_path_factory.mktemp("images")
    out = {}
    for name in FAMILY_NAMES:
        engine = ReferenceEngine(tiny_paths[name])
        out[name] = World(
            FAMILIES[name], engine, engine.processor, load_vision_encoder(tiny_paths[name]), folder
        )
    yield out
    for w in out.values():
        w.engine.shutdown()


@contextlib.contextmanager
def sealed(engine: ReferenceEngine) -> Iterator[None]:
    """``model.generate`` raises :class:`GenerationReached`; ``model.forward`` fails the test."""

    def generate(*args: Any, **kwargs: Any) -> Any:
        raise GenerationReached

    def forward(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("model.forward ran while checking a request")

    model = engine.model
    model.generate = generate
    model.forward = forward
    try:
        yield
    finally:
        del model.generate
        del model.forward


# ------------------------------------------------------------------------- valid requests


@dataclass
class Spec:
    """What the generator chose for one valid request."""

    kind: str
    question: str = QUESTIONS[0]
    sizes: tuple[tuple[int, int], ...] = ((64, 48),)
    source: str = "pil"
    ids_as: str = "list"  # list, tuple, tensor, tensor2d
    item_bare: bool = False  # image_data=item instead of [item] (single requests)
    emb_dtype: str = "float32"  # float32, bfloat16, float64, numpy
    grid_as: str = "tensor"  # tensor, list, numpy
    pixels_as: str = "tensor"  # tensor, list
    sampling: dict[str, Any] | None = None


def source_of(w: World, size: tuple[int, int], how: str) -> Any:
    img = image(size)
    if how == "pil":
        return img
    if how == "path":
        path = w.folder / f"{size[0]}x{size[1]}.png"
        if not path.exists():
            img.save(path)
        return str(path)
    if how == "base64":
        return image_to_base64(img)
    if how == "data_url":
        return image_to_data_url(img)
    if how == "bytes":
        return base64_bytes(img)
    raise AssertionError(how)


def base64_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def ids_container(ids: list[int], how: str) -> Any:
    if how == "tuple":
        return tuple(ids)
    if how == "tensor":
        return torch.tensor(ids)
    if how == "tensor2d":
        return torch.tensor([ids])
    return list(ids)


def build(w: World, spec: Spec) -> dict[str, Any]:
    """The valid request ``spec`` describes: ``engine.generate`` keyword arguments."""
    kind, q, sizes = spec.kind, spec.question, spec.sizes
    sampling = dict(spec.sampling) if spec.sampling is not None else {"max_new_tokens": 4}
    tokenizer = w.processor.tokenizer
    if kind in BATCH_OF:
        inner = {**spec.__dict__, "kind": BATCH_OF[kind], "item_bare": False, "ids_as": "list"}
        single = build(w, Spec(**inner))
        other = build(w, Spec(**{**inner, "question": QUESTIONS[1]}))
        key = "prompt" if "prompt" in single else "input_ids"
        return {
            key: [single[key], other[key]],
            "image_data": [single["image_data"], other["image_data"]],
            "sampling_params": [sampling, dict(sampling)],
        }
    req: dict[str, Any] = {"sampling_params": sampling}
    if kind == "text_prompt":
        req["prompt"] = w.prompt(q, 0)
        return req
    if kind == "text_ids":
        ids = tokenizer(w.prompt(q, 0), add_special_tokens=False)["input_ids"]
        req["input_ids"] = ids_container(ids, spec.ids_as)
        return req
    if kind in ("raw", "ids_raw"):
        items: list[Any] = [source_of(w, s, spec.source) for s in sizes]
        if kind == "raw":
            req["prompt"] = w.prompt(q, len(sizes))
        else:  # unexpanded ids with raw images: decoded back to the prompt, as SGLang does
            ids = tokenizer(w.prompt(q, len(sizes)), add_special_tokens=False)["input_ids"]
            req["input_ids"] = ids_container(ids, spec.ids_as)
        req["image_data"] = items[0] if spec.item_bare and len(items) == 1 else items
        return req
    inputs = w.inputs(q, sizes)
    ids = inputs["input_ids"][0].tolist()
    if kind == "processor_output":
        item = dict(inputs, format=PROCESSOR_OUTPUT)
        if spec.pixels_as == "list":
            item = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in item.items()}
    elif kind == "embedding":
        emb = w.embedding(q, sizes)
        if spec.emb_dtype == "numpy":
            emb = emb.float().numpy()
        else:
            emb = emb.to(getattr(torch, spec.emb_dtype))
        f = w.family  # the dict the notebooks write: the family's format, key and extra keys
        item = {"format": f.embedding_format, f.embedding_key: emb}
        item.update({key: inputs[key] for key in f.embedding_extra_keys})
    else:
        raise AssertionError(kind)
    grid_key = w.family.grid_key
    if grid_key is not None and grid_key in item:
        grid = inputs[grid_key]
        item[grid_key] = {"tensor": grid, "list": grid.tolist(), "numpy": grid.numpy()}[
            spec.grid_as
        ]
    req["input_ids"] = ids_container(ids, spec.ids_as)
    req["image_data"] = item if spec.item_bare else [item]
    return req


# --------------------------------------------------------------------------- the two targets


def validate(w: World, req: dict[str, Any]) -> None:
    """The package's validators on one request, as the engine calls them."""
    validate_sampling_params(req.get("sampling_params"))
    if req.get("input_ids") is not None:
        validate_input_ids(req["input_ids"], vocab_size=w.engine.vocab_size)
    validate_image_data(
        req.get("image_data"),
        input_ids=req.get("input_ids"),
        prompt=req.get("prompt"),
        hidden_size=w.engine.hidden_size,
        vocab_size=w.engine.vocab_size,
        family=w.family,
    )


def through_engine(w: World, req: dict[str, Any]) -> None:
    with sealed(w.engine):
        w.engine.generate(**req)


TARGETS: dict[str, Callable[[World, dict[str, Any]], None]] = {
    "validate": validate,
    "engine": through_engine,
}


def assert_passes(w: World, target: str, req: dict[str, Any]) -> None:
    """The valid twin: validators return quietly, the engine reaches ``model.generate``."""
    if target == "validate":
        validate(w, req)
        return
    with pytest.raises(GenerationReached):
        through_engine(w, req)


def assert_refused(
    w: World, target: str, req: dict[str, Any], field: str, error: type, what: str
) -> None:
    try:
        TARGETS[target](w, req)
    except GenerationReached:
        pytest.fail(f"{what}: the malformed request reached model.generate")
    except VLMTutorialError as exc:
        assert isinstance(exc, error), f"{what}: {type(exc).__name__} is not a {error}: {exc}"
        assert re.search(field, str(exc)), f"{what}: the message does not name {field!r}: {exc}"
        return
    except Exception as exc:  # the point of this test: say which mutation leaked what
        pytest.fail(f"{what}: {type(exc).__name__} is not a package error: {exc}")
    else:
        if target == "validate":
            pytest.fail(f"{what}: the validators accepted the malformed request")
        pytest.fail(f"{what}: generate returned for the malformed request")


# ------------------------------------------------------------------------------ mutations


class Picker:
    """Chooses a mutation's bad value and position: enumerated (table) or drawn (hypothesis)."""

    def __init__(self, draw: Callable[[Any], Any] | None = None, k: int = 0) -> None:
        self.draw, self.k, self.most = draw, k, 1

    def one(self, options: list[Any] | tuple[Any, ...]) -> Any:
        options = list(options)
        self.most = max(self.most, len(options))
        if self.draw is not None:
            return options[self.draw(st.integers(0, len(options) - 1))]
        return options[self.k % len(options)]

    def index(self, n: int) -> int:
        if self.draw is not None:
            return self.draw(st.integers(0, n - 1))
        return (n - 1) if self.k % 2 else 0


Result = tuple[str, type | tuple[type, ...]]  # (regex the message must match, error classes)


@dataclass(frozen=True)
class Mutation:
    name: str
    kinds: tuple[str, ...]
    apply: Callable[[World, dict[str, Any], Picker], str | Result]
    targets: tuple[str, ...] = ("validate", "engine")
    families: tuple[str, ...] = FAMILY_NAMES

    def applies(self, family: str, kind: str, target: str) -> bool:
        single = kind in SINGLE_KINDS
        return (
            family in self.families
            and kind in self.kinds
            and target in self.targets
            and (single or target == "engine")
        )


MUTATIONS: list[Mutation] = []


def mutation(
    kinds: tuple[str, ...],
    targets: tuple[str, ...] = ("validate", "engine"),
    families: tuple[str, ...] = FAMILY_NAMES,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        MUTATIONS.append(Mutation(fn.__name__, kinds, fn, targets, families))
        return fn

    return register


# Helpers that reach into a request (single, or request ``j`` of a batch).


def one_request(
    req: dict[str, Any], pick: Picker
) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None]]:
    """A single request's view of ``req`` and how to write it back (batches: a random request)."""
    key = "prompt" if "prompt" in req else "input_ids"
    if batch_size(req) > 1:
        j = pick.index(len(req[key]))
        view = {
            key: req[key][j],
            "image_data": req["image_data"][j],
            "sampling_params": req["sampling_params"][j],
        }

        def put(new: dict[str, Any]) -> None:
            for k in (key, "image_data", "sampling_params"):
                if k in new:
                    req[k][j] = new[k]

        return view, put

    def put_single(new: dict[str, Any]) -> None:
        req.clear()
        req.update(new)

    return req, put_single


def batch_size(req: dict[str, Any]) -> int:
    """2 for a batch request, 1 for a single one."""
    value = req.get("prompt", req.get("input_ids"))
    is_batch = isinstance(value, list) and value and isinstance(value[0], (str, list))
    return len(value) if is_batch else 1


def items_of(req: dict[str, Any]) -> list[Any]:
    data = req.get("image_data")
    return list(data) if isinstance(data, list) else [data]


def the_dict(req: dict[str, Any]) -> dict[str, Any]:
    item = items_of(req)[0]
    assert isinstance(item, dict)
    return item


def set_dict(req: dict[str, Any], item: dict[str, Any]) -> None:
    req["image_data"] = [item]


def ids_list(req: dict[str, Any]) -> list[int]:
    ids = req["input_ids"]
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
    ids = list(ids)
    return list(ids[0]) if ids and isinstance(ids[0], list) else ids


def emb_of(w: World, item: dict[str, Any]) -> torch.Tensor:
    return torch.as_tensor(item[w.emb_key]).float()


# --- image_data dicts: format names, mixing, counts, prompt instead of input_ids


@mutation(DICT_KINDS)
def format_misspelt(w, req, pick):
    item = the_dict(req)
    item["format"] = pick.one(
        ["processor-output", "precomputed_embeddings", "PROCESSOR", "", "raw", "embedding"]
    )
    set_dict(req, item)
    return r"image_data dict has format="


@mutation(DICT_KINDS)
def format_not_a_string(w, req, pick):
    item = the_dict(req)
    item["format"] = pick.one([None, 3, b"processor_output", ["processor_output"], {"name": "x"}])
    set_dict(req, item)
    return r"image_data dict has format="


@mutation(DICT_KINDS)
def format_missing(w, req, pick):
    item = the_dict(req)
    del item["format"]
    set_dict(req, item)
    return r"image_data dict has format="


@mutation(DICT_KINDS)
def raw_image_beside_the_dict(w, req, pick):
    items = [the_dict(req)]
    items.insert(pick.index(2), pick.one([image((64, 48)), "https://example.com/a.png"]))
    req["image_data"] = items
    return r"image_data mixes"


@mutation(("raw",))
def dict_beside_raw_images(w, req, pick):
    items = items_of(req)
    items.insert(
        pick.index(len(items) + 1), {"format": pick.one([PROCESSOR_OUTPUT, PRECOMPUTED_EMBEDDING])}
    )
    req["image_data"] = items
    return r"image_data mixes"


@mutation(DICT_KINDS)
def two_dicts(w, req, pick):
    item = the_dict(req)
    req["image_data"] = [item, pick.one([copy.deepcopy(item), {"format": item["format"]}])]
    return r"image_data holds 2 preprocessed dicts"


@mutation(DICT_KINDS)
def prompt_instead_of_input_ids(w, req, pick):
    ids = ids_list(req)
    del req["input_ids"]
    req["prompt"] = w.processor.tokenizer.decode(ids)
    return r"goes with input_ids=\.\.\., got prompt="


@mutation(DICT_KINDS)
def prompt_beside_input_ids(w, req, pick):
    req["prompt"] = w.processor.tokenizer.decode(ids_list(req))
    return r"prompt= \(text\) or input_ids= .*got both|goes with input_ids=\.\.\., got prompt="


@mutation(DICT_KINDS)
def input_ids_missing(w, req, pick):
    del req["input_ids"]
    return r"input_ids= \(token ids\), got neither|goes with input_ids=\.\.\., got no input_ids"


# --- input_ids


@mutation(("text_ids", "ids_raw", *DICT_KINDS, *BATCH_IDS))
def ids_not_a_list(w, req, pick):
    one, put = one_request(req, pick)
    ids = ids_list(one)
    one = dict(
        one,
        input_ids=pick.one(
            [
                " ".join(map(str, ids)),
                str(ids),
                ids[0],
                float(ids[0]),
                {"ids": ids},
                set(ids),
                torch.tensor(ids, dtype=torch.float32),
                np.array(ids, dtype=np.float64),
                bytes(3),
            ]
        ),
    )
    put(one)
    # a batch whose first entry is no list is no batch: then the whole value is one request's ids
    return r"input_ids( must be a list| is a tensor of|\[\d\] is .*token ids are ints)"


@mutation(("text_ids", "ids_raw", *DICT_KINDS, *BATCH_IDS))
def id_of_a_bad_kind(w, req, pick):
    one, put = one_request(req, pick)
    ids = ids_list(one)
    i = pick.index(len(ids))
    ids[i] = pick.one(
        [
            float(ids[i]),
            2.5,
            str(ids[i]),
            "x",
            True,
            False,
            None,
            [ids[i]],
            np.float32(1),
            torch.tensor(float(ids[i])),
            complex(1, 0),
        ]
    )
    put(dict(one, input_ids=ids))
    return rf"input_ids\[{i}\] is .*token ids are ints"


@mutation(("text_ids", "ids_raw", *DICT_KINDS, *BATCH_IDS))
def id_outside_the_vocabulary(w, req, pick):
    one, put = one_request(req, pick)
    ids = ids_list(one)
    i = pick.index(len(ids))
    ids[i] = pick.one([-1, w.engine.vocab_size, -(2**40), 2**63, w.engine.vocab_size + 7])
    put(dict(one, input_ids=ids))
    return rf"input_ids\[{i}\] is -?\d+, outside the vocabulary"


@mutation(("text_ids", "ids_raw", *DICT_KINDS, *BATCH_IDS))
def ids_empty(w, req, pick):
    one, put = one_request(req, pick)
    put(dict(one, input_ids=pick.one([[], (), torch.tensor([], dtype=torch.long)])))
    return r"input_ids is empty"


@mutation(("text_ids", *DICT_KINDS), targets=("validate",))
def ids_of_two_requests_in_one(w, req, pick):
    ids = ids_list(req)
    req["input_ids"] = [ids, ids]
    return r"input_ids\[0\] is \[.*one request's ids as a flat list"


@mutation(("ids_raw",))
def ids_raw_already_expanded(w, req, pick):
    """Raw images with ids that already hold the image tokens: the processor would expand again."""
    sizes = tuple((64, 48) for _ in items_of(req))
    req["input_ids"] = w.inputs(QUESTIONS[0], sizes)["input_ids"][0].tolist()
    return r"input_ids hold \d+ \S+ token\(s\) where \d+ raw image\(s\) need \d+: expanded"


@mutation(("ids_raw",))
def ids_raw_placeholder_count(w, req, pick):
    items = items_of(req)
    fewer = len(items) > 1 and pick.one(["more", "fewer"]) == "fewer"
    req["image_data"] = items[:-1] if fewer else items + items[:1]
    return r"input_ids hold \d+ image placeholder\(s\) .* but image_data has \d+ image"


# --- precomputed embeddings


@mutation(("embedding",))
def embedding_rows_off(w, req, pick):
    item = the_dict(req)
    emb = emb_of(w, item)
    delta = pick.one([-1, 1, -emb.shape[0], emb.shape[0]])
    item[w.emb_key] = emb[: emb.shape[0] + delta] if delta < 0 else torch.cat([emb, emb[:delta]])
    set_dict(req, item)
    return rf"expected \d+ embedding rows in '{w.emb_key}'", EmbeddingShapeError


@mutation(("embedding",))
def embedding_width_off(w, req, pick):
    item = the_dict(req)
    emb = emb_of(w, item)
    width = pick.one(
        [w.engine.hidden_size - 1, w.engine.hidden_size + 1, 2 * w.engine.hidden_size, 1]
    )
    item[w.emb_key] = torch.zeros(emb.shape[0], width)
    set_dict(req, item)
    return rf"'{w.emb_key}' is {width} wide", EmbeddingShapeError


@mutation(("embedding",))
def embedding_not_2d(w, req, pick):
    item = the_dict(req)
    emb = emb_of(w, item)
    item[w.emb_key] = pick.one(
        [emb.reshape(-1), emb.unsqueeze(0), emb.reshape(1, *emb.shape, 1), emb[0, 0]]
    )
    set_dict(req, item)
    return rf"'{w.emb_key}' must be a 2-D tensor", EmbeddingShapeError


@mutation(("embedding",))
def embedding_not_finite(w, req, pick):
    item = the_dict(req)
    emb = emb_of(w, item).clone()
    emb.view(-1)[pick.index(emb.numel())] = pick.one([math.nan, math.inf, -math.inf])
    item[w.emb_key] = pick.one([emb, emb.to(torch.bfloat16), emb.numpy()])
    set_dict(req, item)
    return rf"'{w.emb_key}' holds NaN or infinite"


@mutation(("embedding",))
def embedding_not_floating_point(w, req, pick):
    item = the_dict(req)
    emb = emb_of(w, item)
    dtype = pick.one(
        [torch.long, torch.int32, torch.uint8, torch.bool, torch.complex64, "numpy-int"]
    )
    item[w.emb_key] = emb.numpy().astype(np.int64) if dtype == "numpy-int" else emb.to(dtype)
    set_dict(req, item)
    return rf"'{w.emb_key}' has dtype"


@mutation(("embedding",))
def embedding_on_the_meta_device(w, req, pick):
    item = the_dict(req)
    item[w.emb_key] = emb_of(w, item).to("meta")
    set_dict(req, item)
    return rf"'{w.emb_key}' has dtype \S+ on device meta"


@mutation(("embedding",))
def embedding_as_lists(w, req, pick):
    item = the_dict(req)
    emb = emb_of(w, item).tolist()
    item[w.emb_key] = pick.one([emb, tuple(map(tuple, emb)), str(emb)[:40]])
    set_dict(req, item)
    return rf"'{w.emb_key}' must be a 2-D tensor", EmbeddingShapeError


@mutation(("embedding",))
def embedding_missing(w, req, pick):
    item = the_dict(req)
    if pick.one([True, False]):
        del item[w.emb_key]
    else:
        item[w.emb_key] = None
    set_dict(req, item)
    return r"needs (feature=|pixel_values .*or precomputed_embeddings)"


@mutation(("embedding",))
def embedding_under_the_other_formats_key(w, req, pick):
    item = the_dict(req)
    other = "precomputed_embeddings" if w.emb_key == "feature" else "feature"
    item[other] = item.pop(w.emb_key)
    set_dict(req, item)
    return r"needs (feature=|pixel_values .*or precomputed_embeddings)"


@mutation(("embedding",), families=("llama4",))
def llama4_precomputed_embedding_format(w, req, pick):
    item = the_dict(req)
    emb = item.pop(w.emb_key)
    item["format"] = pick.one([PRECOMPUTED_EMBEDDING, "PRECOMPUTED_EMBEDDING"])
    item[pick.one(["feature", w.emb_key])] = emb
    set_dict(req, item)
    return r"'precomputed_embedding' dict and dies; send dict\(format='processor_output'"


@mutation(("embedding",), families=("llama4",))
def pixel_values_beside_the_embedding(w, req, pick):
    item = the_dict(req)
    item["pixel_values"] = w.inputs(QUESTIONS[0], ((64, 48),))["pixel_values"]
    set_dict(req, item)
    return r"both pixel_values and precomputed_embeddings"


@mutation(("processor_output",))
def embedding_beside_pixel_values(w, req, pick):
    item = the_dict(req)
    n = ids_list(req).count(w.family.embedding_token_id)
    item["precomputed_embeddings"] = torch.zeros(n, w.engine.hidden_size)
    set_dict(req, item)
    return r"both pixel_values and precomputed_embeddings"


@mutation(("processor_output",))
def pixel_values_missing(w, req, pick):
    item = the_dict(req)
    if pick.one([True, False]):
        del item["pixel_values"]
    else:
        item["pixel_values"] = None
    set_dict(req, item)
    return r"needs pixel_values"


# --- image_grid_thw (Qwen2.5-VL)


def grid_rows(item: dict[str, Any]) -> list[list[int]]:
    grid = item["image_grid_thw"]
    return [list(r) for r in (grid.tolist() if hasattr(grid, "tolist") else grid)]


@mutation(DICT_KINDS, families=("qwen2_5_vl",))
def grid_missing(w, req, pick):
    item = the_dict(req)
    if pick.one([True, False]):
        del item["image_grid_thw"]
    else:
        item["image_grid_thw"] = None
    set_dict(req, item)
    return r"needs image_grid_thw"


@mutation(DICT_KINDS, families=("qwen2_5_vl",))
def grid_odd(w, req, pick):
    item = the_dict(req)
    rows = grid_rows(item)
    i, col = pick.index(len(rows)), pick.one([1, 2])
    rows[i][col] += pick.one([1, -1])
    item["image_grid_thw"] = torch.tensor(rows)
    set_dict(req, item)
    return rf"image_grid_thw\[{i}\] is .*multiples of 2"


@mutation(DICT_KINDS, families=("qwen2_5_vl",))
def grid_not_positive(w, req, pick):
    item = the_dict(req)
    rows = grid_rows(item)
    i, col = pick.index(len(rows)), pick.one([0, 1, 2])
    rows[i][col] = pick.one([0, -rows[i][col], -2])
    item["image_grid_thw"] = pick.one([torch.tensor(rows), rows])
    set_dict(req, item)
    return rf"image_grid_thw\[{i}\] is .*>= 1"


@mutation(DICT_KINDS, families=("qwen2_5_vl",))
def grid_wrong_shape(w, req, pick):
    item = the_dict(req)
    grid = torch.tensor(grid_rows(item))
    item["image_grid_thw"] = pick.one(
        [
            grid[:, :2],
            torch.cat([grid, grid[:, :1]], 1),
            grid.reshape(-1)[:2],
            torch.cat([grid.reshape(-1), grid.reshape(-1)[:1]]),
            grid.unsqueeze(0),
            grid[:0],
            torch.tensor(1),
            "1, 8, 8",
            [],
            [[1, 8]],
            {"t": 1},
        ]
    )
    set_dict(req, item)
    return r"'image_grid_thw' must have shape \(num_images, 3\)"


@mutation(DICT_KINDS, families=("qwen2_5_vl",))
def grid_not_integers(w, req, pick):
    item = the_dict(req)
    rows = grid_rows(item)
    item["image_grid_thw"] = pick.one(
        [
            torch.tensor(rows, dtype=torch.float32),
            [[float(v) for v in r] for r in rows],
            torch.tensor(rows).bool(),
            [[str(v) for v in r] for r in rows],
        ]
    )
    set_dict(req, item)
    return r"'image_grid_thw' must (hold integers|have shape)"


@mutation(DICT_KINDS, families=("qwen2_5_vl",))
def grid_of_other_images(w, req, pick):
    item = the_dict(req)
    rows = grid_rows(item)
    i = pick.index(len(rows))
    change = pick.one(["double h", "extra row", "drop row", "h + 2"])
    if change == "double h":
        rows[i][1] *= 2
    elif change == "extra row":
        rows.append(rows[i])
    elif change == "drop row" and len(rows) > 1:
        rows.pop(i)
    else:
        rows[i][1] += 2
    item["image_grid_thw"] = torch.tensor(rows)
    set_dict(req, item)
    return r"image_grid_thw \[.*\] describes .* image tokens"


# --- raw images


@mutation(("raw", "ids_raw", "batch_raw"))
def raw_item_not_an_image(w, req, pick):
    one, put = one_request(req, pick)
    items = items_of(one)
    i = pick.index(len(items))
    bad = pick.one(
        [
            42,
            3.5,
            None,
            True,
            [image((64, 48))],
            torch.zeros(3, 8, 8),
            np.zeros((8, 8, 3), np.uint8),
            {"url": "https://example.com/a.png"},
            {"format": None, "path": "a.png"},
            object(),
        ]
    )
    items[i] = bad
    put(dict(one, image_data=items))
    if isinstance(bad, dict):
        return r"image_data dict has format="
    return rf"image_data\[{i}\] is a"


@mutation(("raw", "batch_raw"), targets=("engine",))
def raw_item_unreadable(w, req, pick):
    """Strings and bytes pass the validators (they are sources); loading them fails.

    The loader's message names the source itself (its path, its text, its first bytes).
    """
    one, put = one_request(req, pick)
    items = items_of(one)
    i = pick.index(len(items))
    missing = str(w.folder / "missing.png")
    source = pick.one([missing, "not base64 at all!", "aGVsbG8=", b"\x00\x01junk", "data:,x", ""])
    named = re.escape(repr(source)[1:-1] if isinstance(source, bytes) else source or "''")
    items[i] = source
    put(dict(one, image_data=items))
    return named, (ImageLoadError, ImageDecodeError)


# --- prompts


@mutation(("raw", "batch_raw"))
def prompt_placeholders_removed(w, req, pick):
    one, put = one_request(req, pick)
    prompt = one["prompt"].replace(w.family.prompt_image_token, "")
    put(dict(one, prompt=prompt))
    return r"prompt has no image placeholder"


@mutation(("raw", "batch_raw"))
def prompt_placeholder_count(w, req, pick):
    one, put = one_request(req, pick)
    token = w.family.prompt_image_token
    prompt = one["prompt"]
    if pick.one(["more", "fewer"]) == "fewer" and prompt.count(token) > 1:
        prompt = prompt.replace(token, "", 1)
    else:
        prompt = prompt.replace(token, token * 2, 1)
    put(dict(one, prompt=prompt))
    return r"prompt has \d+ image placeholder\(s\).*but image_data has \d+"


@mutation(("raw", "batch_raw"))
def prompt_with_the_other_familys_placeholder(w, req, pick):
    one, put = one_request(req, pick)
    prompt = one["prompt"].replace(w.family.prompt_image_token, w.other.prompt_image_token)
    put(dict(one, prompt=prompt))
    return rf"prompt has no image placeholder.*it holds {re.escape(w.other.prompt_image_token)}"


@mutation(("text_prompt",))
def prompt_placeholder_without_image(w, req, pick):
    req["prompt"] = req["prompt"] + w.family.prompt_image_token * pick.one([1, 2])
    return r"prompt has \d+ image placeholder\(s\) .* but image_data has 0 image"


@mutation(("raw", "text_prompt"))
def prompt_not_a_string(w, req, pick):
    req["prompt"] = pick.one([5, 3.5, b"<|image|>hi", ("a",), {"text": "hi"}])
    return r"prompt must be a str"


#: ids that ask for images a request does not carry: placeholders, or already expanded tokens.
NO_IMAGES_IN_IDS = r"input_ids hold \d+ (image placeholder\(s\) .* but image_data has 0|\S+ token\(s\) where 0 raw)"


@mutation(("text_ids",))
def image_token_in_text_only_ids(w, req, pick):
    ids = ids_list(req)
    ids.insert(
        pick.index(len(ids)),
        pick.one([w.family.embedding_token_id, w.family.token_id(w.family.prompt_image_marker)]),
    )
    req["input_ids"] = ids
    return NO_IMAGES_IN_IDS


@mutation(("ids_raw", *DICT_KINDS))
def image_data_dropped(w, req, pick):
    if pick.one([True, False]):
        del req["image_data"]
    else:
        req["image_data"] = pick.one([None, []])
    return NO_IMAGES_IN_IDS


# --- sampling parameters

#: Bad values of each kind of rule; test_validation.py's table holds more, with the fixes named.
BAD_SAMPLING: list[tuple[str, Any]] = [
    ("max_new_tokens", [8]),
    ("temperature", math.inf),
    ("top_p", math.nan),
    ("top_k", True),
    ("min_p", -0.1),
    ("sampling_seed", 1.5),
    ("ignore_eos", "yes"),
    ("stop_token_ids", [None]),
]


@mutation(KINDS)
def sampling_value_refused(w, req, pick):
    key, value = pick.one(BAD_SAMPLING)
    one, put = one_request(req, pick)
    put(dict(one, sampling_params={**one["sampling_params"], key: value}))
    return rf"sampling_params\['{key}'\] is "


@mutation(KINDS)
def sampling_params_not_a_dict(w, req, pick):
    one, put = one_request(req, pick)
    put(dict(one, sampling_params=pick.one(["greedy", 0, [("temperature", 0)], {0.5}, 1.5])))
    return r"sampling_params must be a dict"


@mutation(SINGLE_KINDS, targets=("engine",))
def sampling_max_new_tokens_none(w, req, pick):
    req["sampling_params"] = {**req["sampling_params"], "max_new_tokens": None}
    return r"sampling_params\['max_new_tokens'\] is None"


@mutation(KINDS, targets=("engine",))
def sampling_key_the_reference_engine_lacks(w, req, pick):
    key, value = pick.one(
        [
            ("stop", ["."]),
            ("regex", "a+"),
            ("frequency_penalty", 0.5),
            ("max_tokens", 8),
            ("n", 2),
            ("min_p", 0.1),
            ("json_schema", "{}"),
        ]
    )
    one, put = one_request(req, pick)
    put(dict(one, sampling_params={**one["sampling_params"], key: value}))
    return rf"sampling_params \[{key!r}\]"


# --- engine keywords and batch shapes


@mutation(KINDS, targets=("engine",))
def generate_keyword_the_reference_engine_lacks(w, req, pick):
    key, value = pick.one(
        [
            ("return_logprob", True),
            ("stream", True),
            ("lora_path", "adapter"),
            ("image", "a.png"),
            ("images", ["a.png"]),
            ("sampling_param", {}),
        ]
    )
    req[key] = value
    return rf"does not support \[{key!r}\]"


@mutation(tuple(BATCH_OF), targets=("engine",))
def batch_image_data_length(w, req, pick):
    data = req["image_data"]
    req["image_data"] = pick.one([data[:1], data + data[:1], []]) or [data[0]]
    return r"a batch of 2 requests needs one image_data entry per request"


@mutation(tuple(BATCH_OF), targets=("engine",))
def batch_sampling_params_length(w, req, pick):
    params = req["sampling_params"]
    req["sampling_params"] = pick.one([params[:1], params + params[:1], []])
    return r"sampling_params has \d+ entries for a batch of 2 requests"


@mutation(KINDS, targets=("engine",))
def rid_of_a_bad_shape(w, req, pick):
    n = batch_size(req)
    req["rid"] = pick.one(
        [[f"r{i}" for i in range(n + 1)], ["r"] * (n - 1), 5, [1] * n, b"rid", {"a": 1}, ("r",) * n]
    )
    return r"rid (has \d+ entries for a batch of|must be a str)"


@mutation(("batch_raw",), targets=("engine",))
def batch_prompt_entry_not_a_string(w, req, pick):
    prompts = list(req["prompt"])
    prompts[pick.index(len(prompts))] = pick.one([5, None, b"hi", ["hi"]])
    req["prompt"] = prompts
    return r"prompt must be a str or a non-empty list of str"


@mutation(("raw",), targets=("engine",))
def prompt_empty_batch(w, req, pick):
    req["prompt"] = []
    req.pop("image_data")
    return r"prompt must be a str or a non-empty list of str"


@mutation(BATCH_IDS, targets=("engine",))
def batch_ids_with_one_image_list(w, req, pick):
    req["image_data"] = req["image_data"][0]
    return r"a batch of 2 requests needs one image_data entry per request"


# ------------------------------------------------------------------------------- the drivers


def plain_spec(kind: str) -> Spec:
    sizes = ((64, 48), (48, 64)) if kind in ("raw", "ids_raw", "batch_raw") else ((64, 48),)
    return Spec(kind=kind, sizes=sizes, sampling={"max_new_tokens": 4, "temperature": 0})


def run_case(
    w: World, spec: Spec, mut: Mutation, target: str, pick: Picker, twin_checked: bool = False
) -> None:
    """Build the valid twin, check that it passes, break one thing, check the refusal."""
    request = build(w, spec)
    if not twin_checked:
        assert_passes(w, target, request)
    broken = copy.deepcopy(request)
    result = mut.apply(w, broken, pick)
    field, error = result if isinstance(result, tuple) else (result, VLMTutorialError)
    what = f"{mut.name} on a {w.family.name} {spec.kind} request ({target})"
    assert_refused(w, target, broken, field, error, what)


#: (family, kind, target) whose plain valid request passed: the same twin for every mutation.
PLAIN_TWINS_PASSED: set[tuple[str, str, str]] = set()

CASES = [
    pytest.param(family, mut, target, id=f"{family}-{mut.name}-{target}")
    for mut in MUTATIONS
    for family in FAMILY_NAMES
    for target in TARGETS
    if any(mut.applies(family, kind, target) for kind in KINDS)
]


@pytest.mark.parametrize(("family", "mut", "target"), CASES)
def test_every_mutation_is_refused_by_name_before_generation(worlds, family, mut, target):
    """Each mutation: each of its bad values, and each kind of request it applies to, at least once.

    Value ``k`` goes to kind ``k % len(kinds)``, so a mutation with many
    values and many kinds costs max(values, kinds) requests, not their product.
    """
    w = worlds[family]
    kinds = [kind for kind in KINDS if mut.applies(family, kind, target)]
    k, most = 0, 1
    while k < max(most, len(kinds)):
        kind = kinds[k % len(kinds)]
        pick = Picker(k=k)
        twin = (family, kind, target)
        run_case(w, plain_spec(kind), mut, target, pick, twin_checked=twin in PLAIN_TWINS_PASSED)
        PLAIN_TWINS_PASSED.add(twin)
        most = max(most, pick.most)
        k += 1


def valid_sampling() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"max_new_tokens": st.integers(1, 64)},
        optional={
            "temperature": st.sampled_from([0, 0.0, 1e-7, 0.7, 1, 2.0, None]),
            "top_p": st.one_of(st.floats(0.01, 1.0), st.none()),
            "top_k": st.sampled_from([-1, 1, 5, 1000, None]),
            "sampling_seed": st.integers(0, 2**31),
            "ignore_eos": st.booleans(),
            "skip_special_tokens": st.booleans(),
            "stop_token_ids": st.lists(st.integers(0, 1000), max_size=3),
        },
    )


@st.composite
def specs(draw: Any, family: str) -> Spec:
    kind = draw(st.sampled_from(KINDS))
    n = draw(st.integers(1, 2)) if kind in IMAGE_KINDS else 1
    sizes = tuple(draw(st.sampled_from(SIZES)) for _ in range(n))
    if family == "llama4" and kind in ("embedding", "batch_embedding"):
        sizes = (sizes[0],) * n
    return Spec(
        kind=kind,
        question=draw(st.sampled_from(QUESTIONS)),
        sizes=sizes,
        source=draw(st.sampled_from(SOURCES)),
        ids_as=draw(st.sampled_from(["list", "tuple", "tensor", "tensor2d"])),
        item_bare=n == 1 and draw(st.booleans()),
        emb_dtype=draw(st.sampled_from(["float32", "bfloat16", "float64", "numpy"])),
        grid_as=draw(st.sampled_from(["tensor", "list", "numpy"])),
        pixels_as=draw(st.sampled_from(["tensor", "list"])),
        sampling=draw(valid_sampling()),
    )


FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@FUZZ
@given(data=st.data())
def test_random_malformed_requests_are_refused_by_name(worlds, family, data):
    w = worlds[family]
    spec = data.draw(specs(family), label="valid request")
    target = data.draw(st.sampled_from(sorted(TARGETS)), label="target")
    if target == "validate" and spec.kind not in SINGLE_KINDS:
        target = "engine"
    choices = [m for m in MUTATIONS if m.applies(family, spec.kind, target)]
    mut = data.draw(st.sampled_from(choices), label="mutation")
    run_case(w, spec, mut, target, Picker(draw=data.draw))


#: Valid requests that really generate; with test_reference.py's (the plain formats, batches,
#: every raw source kind), every value of every Spec field.
SAMPLED = {"temperature": 0.7, "top_p": None, "top_k": None, "sampling_seed": 3}
REAL = [
    Spec("raw", sizes=((64, 48), (90, 60)), source="bytes", sampling={**SAMPLED, "top_k": 5}),
    Spec("ids_raw", source="path", ids_as="tensor", item_bare=True),
    Spec("text_ids", ids_as="tuple", sampling={"temperature": None, "stop_token_ids": [1]}),
    Spec("processor_output", ids_as="tensor2d", pixels_as="list", grid_as="list", item_bare=True),
    Spec("embedding", emb_dtype="bfloat16", grid_as="numpy", ids_as="tensor", sampling=SAMPLED),
    Spec("embedding", emb_dtype="numpy", sizes=((56, 56), (56, 56))),
    Spec("batch_embedding", emb_dtype="float64", sampling={"skip_special_tokens": False}),
]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_generators_valid_requests_really_generate(worlds, family):
    """The valid twins are valid for the model too, not only for the checks."""
    w = worlds[family]
    for spec in REAL:
        sampling = {**(spec.sampling or {}), "max_new_tokens": 2, "ignore_eos": True}
        out = w.engine.generate(**build(w, Spec(**{**spec.__dict__, "sampling": sampling})))
        for one in out if isinstance(out, list) else [out]:
            assert one["meta_info"]["completion_tokens"] == 2, spec
