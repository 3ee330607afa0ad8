#!/usr/bin/env python3
"""Where SGLang 0.5.17 puts each row of a two-image Llama 4 request, and why answers parted on the GPU.

Runs SGLang's own code, in one process, for the path an offline ``Engine.generate`` request takes:

* tokenizer side: ``Mllama4ImageProcessor.process_mm_data_async`` (``load_mm_data``,
  ``process_and_combine_mm_data``, ``get_mm_items_offset``, ``get_new_expanded_mm_items``);
* scheduler side: ``MultimodalInputs.from_processor_output`` (hash, pad value),
  ``MultiModalityDataPaddingPatternMultimodalTokens.pad_input_tokens`` (``mllama4.pad_input_ids``)
  and ``embed_mm_inputs`` (``get_embedding_and_mask``, ``_get_precomputed_embedding``,
  ``_get_chunked_prefill_embedding``), as ``general_mm_embed_routine`` calls it for one request.

Parts (``--part``):

``placement``
    Real Llama 4 tiling (336-px tiles, up to 16, 144 ``<|patch|>`` tokens a tile), the three
    formats (raw images; ``processor_output`` with pixels; ``processor_output`` with
    ``precomputed_embeddings``) and a vision function whose every row says which tile and row
    it is. For each ``<|patch|>`` position: is the row SGLang put there the row in prompt order?
    Also each request cut into prefill chunks, and the dict with pixels *and* an embedding.
``tower``
    The tiny checkpoint's two-image request of the GPU test, with SGLang's own
    ``Llama4VisionModel`` (its weights loaded by SGLang's ``load_weights``) as the vision
    function, against the client's transformers encoder, row by row.
``sensitivity``
    The tiny checkpoint's greedy answer (transformers, float32) to that request with the exact
    embedding and with relative noise of 2^-9 to 2^-6 on it, against the answers recorded on the
    H100 (``docs/gpu/runs/run-5``), and which MoE router choices the noise moves.

Not exercised: the CUDA IPC transport between SGLang's processes (``--mm-feature-transport``),
which needs two processes; here the items go from the tokenizer side to the scheduler side in
memory, as with ``mm_feature_transport="cpu"``.

CPU, with SGLang 0.5.17 unpacked for import only (``pip install --no-deps --target /tmp/sgl-site``
plus the pure-Python modules it imports)::

    PYTHONPATH=.:/tmp/sgl-site python scripts/diagnose_llama4_mixed.py
    TRITON_INTERPRET=1 PYTHONPATH=.:/tmp/sgl-site python scripts/diagnose_llama4_mixed.py \\
        --part tower --mm-backend triton_attn

GPU box with SGLang installed::

    python scripts/diagnose_llama4_mixed.py --part tower --device cuda --mm-backend triton_attn
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import types
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vlm_tutorial.families import LLAMA4  # noqa: E402
from vlm_tutorial.images import example_image  # noqa: E402
from vlm_tutorial.prompts import build_prompt  # noqa: E402
from vlm_tutorial.requests import run_processor  # noqa: E402

PATCH = LLAMA4.embedding_token_id  # <|patch|> 200092, the config's image_token_index
TILE_PX = 336  # Llama-4-Scout's tile: 24x24 patches of 14 px, pixel shuffle 0.5 -> 144 rows
MAX_TILES = 16
MULTI_IMAGE_QUESTION = "Compare <image> and <image>."  # tests/gpu/gpu_support.py

#: SGLang's default chunked_prefill_size by GPU memory (server_args.py:4634-4690, 0.5.17):
#: 2048 below 35 GB, 4096 below 60 GB, 8192 up to 160 GB (H100, H200), 16384 above.
SMALLEST_DEFAULT_CHUNK = 2048

#: Greedy answers of the GPU test's two-image request (example_image() and
#: example_image((256, 192)), "Compare <image> and <image>.") on an H100, SGLang 0.5.17,
#: tiny checkpoint spec_hash cf1f78f451 (docs/gpu/runs/run-5/gpu-check.log).
H100_RUN5 = {
    "spec_hash": "cf1f78f451",
    "raw": [100318, 193024, 127506, 113834, 107863, 200401, 164381, 162432] + [122663] * 8,
    "precomputed_embedding": [100318, 193024, 127506, 26802, 8755, 71161, 65288, 61308]
    + [96134, 151578, 90823, 42210, 88926, 150637, 156013, 91953],
    # raw's top-5 log-probabilities at step 3, where the two runs part
    "raw_step3_top5": [
        (113834, -3.023),
        (12723, -3.523),
        (170389, -3.898),
        (135476, -4.773),
        (133310, -4.835),
    ],
}


# --------------------------------------------------------------------------- SGLang, in one process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_sglang(mm_backend: str) -> None:
    """Publish a ServerArgs with ``mm_attention_backend`` and a one-rank model-parallel group.

    ``get_context().override_server_args`` is SGLang's own test hook
    (``sglang/srt/runtime_context.py:938``); tensor parallelism of size 1 is what
    ``VisionAttention`` and the parallel linear layers read.
    """
    from sglang.srt.distributed.parallel_state import (
        init_distributed_environment,
        initialize_model_parallel,
    )
    from sglang.srt.managers import mm_utils
    from sglang.srt.runtime_context import get_context

    get_context().override_server_args(mm_attention_backend=mm_backend).install()
    init_distributed_environment(
        backend="gloo",
        world_size=1,
        rank=0,
        local_rank=0,
        distributed_init_method=f"tcp://127.0.0.1:{_free_port()}",
    )
    initialize_model_parallel(1)
    # SGLANG_VLM_CACHE_SIZE_MB=0, as in the GPU tests (tests/gpu/conftest.py)
    mm_utils.init_mm_embedding_cache(0)


def sglang_processor(processor: Any, hf_config: Any, image_device: str = "cuda") -> Any:
    """SGLang's Llama 4 multimodal processor around ``processor``, as the tokenizer manager builds it.

    ``server_args`` holds only the fields ``BaseMultimodalProcessor.__init__`` and
    ``process_mm_data`` read (their defaults; CPU transport). SGLang hands the fast image
    processor ``device="cuda:0"`` (``base_processor.py:490-503``: ``is_cpu()`` is true only with
    ``SGLANG_USE_CPU_ENGINE=1``, which needs ``sgl_kernel``); with ``image_device="cpu"``, or
    without CUDA, raw images are preprocessed on the CPU instead.
    """
    from sglang.srt.multimodal.processors.mllama4 import Mllama4ImageProcessor

    server_args = types.SimpleNamespace(
        mm_feature_transport="cpu",
        disable_fast_image_processor=False,
        skip_tokenizer_init=False,
        mm_process_config={},
        mm_io_worker_num=None,
        mm_processor_worker_num=None,
        rl_on_policy_target=None,
        base_gpu_id=0,
    )
    mm = Mllama4ImageProcessor(hf_config, server_args, processor, "default", skip_mm_pool=True)
    if image_device == "cpu" or not torch.cuda.is_available():
        mm._fast_image_processor_device = lambda _processor: "cpu"
    return mm


@dataclass
class Placed:
    """What SGLang built for one request and which row it put at each ``<|patch|>`` position."""

    items: list[dict[str, Any]]
    input_ids: list[int]
    rows: torch.Tensor  # the embedding at each <|patch|> position, in prompt order


def sglang_place(
    mm: Any,
    image_data: list[Any],
    text: str | list[int],
    vision: Callable[[list[Any]], torch.Tensor],
    hidden: int,
    *,
    device: str = "cpu",
    chunk: int | None = None,
) -> Placed:
    """One request through SGLang's tokenizer side and scheduler side; return the placed rows.

    ``text`` is the prompt (raw images) or the expanded ``input_ids`` (a preprocessed dict), as
    the tokenizer manager passes it (``tokenizer_manager.py:1038-1070``). ``chunk`` cuts the
    prefill into pieces of that many tokens, as chunked prefill does.
    """
    from sglang.srt.managers import mm_utils
    from sglang.srt.managers.schedule_batch import MultimodalInputs

    out = asyncio.run(mm.process_mm_data_async(image_data=image_data, input_text=text))
    mm_inputs = MultimodalInputs.from_processor_output(out)
    padded = mm_utils.MultiModalityDataPaddingPatternMultimodalTokens().pad_input_tokens(
        list(out.input_ids), mm_inputs
    )
    table = torch.nn.Embedding(202048, hidden).to(device)
    torch.nn.init.zeros_(table.weight)
    model = types.SimpleNamespace(get_image_feature=vision)
    step = chunk or len(padded)
    pieces = []
    with torch.no_grad():
        for start in range(0, len(padded), step):
            ids = torch.tensor(padded[start : start + step], device=device)
            embeds, _ = mm_utils.embed_mm_inputs(
                mm_inputs_list=[mm_inputs],
                extend_prefix_lens=[start],
                extend_seq_lens=[len(ids)],
                input_ids=ids,
                input_embedding=table,
                multimodal_model=model,
            )
            pieces.append(embeds)
    embeds = torch.cat(pieces)
    at = [i for i, t in enumerate(out.input_ids) if t == PATCH]
    items = [
        {
            "format": item.format.name,
            "runs": len(item.offsets),
            "feature_rows": None if item.feature is None else int(item.feature.shape[0]),
            "embedding_rows": (
                None
                if item.precomputed_embeddings is None
                else int(item.precomputed_embeddings.shape[0])
            ),
            "pad_value": int(item.pad_value),
        }
        for item in mm_inputs.mm_items
    ]
    return Placed(items, list(out.input_ids), embeds[at].float().cpu())


# --------------------------------------------------------------------------- part 1: placement


def llama4_336_processor(model_path: str) -> Any:
    """The checkpoint's Llama 4 processor with the real model's tiling: 336-px tiles, at most 16."""
    from transformers import AutoProcessor
    from transformers.models.llama4 import Llama4ImageProcessor

    processor = AutoProcessor.from_pretrained(model_path)
    processor.image_processor = Llama4ImageProcessor(
        size={"height": TILE_PX, "width": TILE_PX},
        max_patches=MAX_TILES,
        resize_to_max_canvas=False,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    return processor


def noisy_picture(size: tuple[int, int], seed: int) -> Image.Image:
    """The example picture at ``size`` with a little noise, so that no two tiles are equal."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(example_image(size), dtype=np.int16)
    pixels = pixels + rng.integers(-12, 13, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


class TileIndexVision:
    """A vision function whose rows name themselves: row r of tile t is ``[t * R + r, t, r]``.

    ``t`` is the tile's index in the client's ``pixel_values`` (found by equality, so the
    function works on whatever tiles SGLang hands it, in whatever order), ``R`` the rows per tile.
    The client's embedding built the same way (:meth:`client_embedding`) has row ``k`` equal to
    ``k`` in its first column: the right row at the k-th ``<|patch|>`` position has value k.
    """

    def __init__(self, pixel_values: torch.Tensor, rows_per_tile: int) -> None:
        self.pixel_values = pixel_values
        self.rows = rows_per_tile
        self.calls: list[int] = []

    def _rows(self, tile: int) -> torch.Tensor:
        r = torch.arange(self.rows, dtype=torch.float32)
        return torch.stack([tile * self.rows + r, torch.full_like(r, tile), r], dim=1)

    def client_embedding(self) -> torch.Tensor:
        return torch.cat([self._rows(t) for t in range(self.pixel_values.shape[0])])

    def __call__(self, items: list[Any]) -> torch.Tensor:
        tiles = torch.cat([item.feature for item in items]).cpu()
        self.calls.append(int(tiles.shape[0]))
        out = []
        for tile in tiles:
            match = [
                t
                for t in range(self.pixel_values.shape[0])
                if torch.equal(self.pixel_values[t], tile)
            ]
            if len(match) != 1:
                raise AssertionError(f"tile matches {len(match)} client tiles; use distinct tiles")
            out.append(self._rows(match[0]))
        return torch.cat(out)


@dataclass
class PlacementRow:
    case: str
    sizes: list[tuple[int, int]]
    tokens_per_image: list[int]
    prompt_tokens: int
    fmt: str
    items: int
    runs_per_item: list[int]
    placed_right: int
    patch_tokens: int
    misplaced: list[tuple[int, int]] = field(default_factory=list)  # (position k, row found)
    error: str | None = None


PLACEMENT_CASES: dict[str, list[tuple[int, int]]] = {
    "a: different token counts": [(448, 336), (256, 192)],
    "b: two multi-tile images, one size": [(448, 336), (448, 336)],
    "c: two single-tile images": [(256, 192), (192, 256)],
    "d: one multi-tile image": [(448, 336)],
    "e: same count, other layout": [(672, 336), (336, 672)],
    "f: three images, three counts": [(1008, 336), (256, 192), (448, 336)],
    "g: 16 tiles and 1 tile": [(1344, 1344), (256, 192)],
}


def part_placement(model_path: str, chunk: int | None) -> list[PlacementRow]:
    from transformers import AutoConfig

    processor = llama4_336_processor(model_path)
    # the client's tiles are made on the CPU; SGLang's must be too, to be found among them
    mm = sglang_processor(processor, AutoConfig.from_pretrained(model_path), image_device="cpu")
    rows_per_tile = (TILE_PX // 14) ** 2 // 4
    results = []
    for case, sizes in PLACEMENT_CASES.items():
        images = [noisy_picture(size, seed) for seed, size in enumerate(sizes)]
        prompt = build_prompt(
            processor, " ".join(["<image>"] * len(images)) + " Compare.", len(images)
        )
        inputs = run_processor(processor, prompt, images)
        ids = inputs["input_ids"][0].tolist()
        pixel_values = inputs["pixel_values"]
        vision = TileIndexVision(pixel_values, rows_per_tile)
        embedding = vision.client_embedding()
        requests: dict[str, tuple[list[Any], str | list[int]]] = {
            "raw": (images, prompt),
            "processor_output": ([dict(inputs, format="processor_output")], ids),
            "precomputed_embeddings": (
                [{"format": "processor_output", "precomputed_embeddings": embedding}],
                ids,
            ),
            "pixels+embedding": (
                [dict(inputs, format="processor_output", precomputed_embeddings=embedding)],
                ids,
            ),
        }
        for fmt, (data, text) in requests.items():
            row = PlacementRow(
                case=case,
                sizes=list(sizes),
                tokens_per_image=LLAMA4.tokens_per_image(ids),
                prompt_tokens=len(ids),
                fmt=fmt,
                items=0,
                runs_per_item=[],
                placed_right=0,
                patch_tokens=embedding.shape[0],
            )
            try:
                placed = sglang_place(mm, data, text, vision, hidden=3, chunk=chunk)
            except Exception as exc:  # pixels+embedding: SGLang raises in the scheduler
                row.error = f"{type(exc).__name__}: {str(exc)[:160]}"
                results.append(row)
                continue
            if placed.input_ids != ids:
                row.error = "SGLang's input_ids differ from the client's"
            row.items = len(placed.items)
            row.runs_per_item = [item["runs"] for item in placed.items]
            found = placed.rows[:, 0].round().long()
            want = torch.arange(len(found))
            row.placed_right = int((found == want).sum())
            row.misplaced = [
                (int(k), int(found[k])) for k in (found != want).nonzero().flatten()[:8]
            ]
            results.append(row)
    return results


def print_placement(results: Sequence[PlacementRow], chunk: int | None) -> None:
    print(f"\n## Placement (336-px tiles, 144 rows a tile; prefill chunk: {chunk or 'none'})\n")
    print(
        "| case | image sizes | tokens per image | prompt tokens | format | items | runs per item | "
        "rows in prompt order |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        runs = ",".join(str(n) for n in r.runs_per_item) if r.runs_per_item else "–"
        if len(set(r.runs_per_item)) == 1 and len(r.runs_per_item) > 3:
            runs = f"{r.runs_per_item[0]} x {len(r.runs_per_item)}"
        placed = r.error or f"{r.placed_right}/{r.patch_tokens}"
        if r.misplaced:
            placed += f" (first wrong: {r.misplaced})"
        sizes = ", ".join(f"{w}x{h}" for w, h in r.sizes)
        print(
            f"| {r.case} | {sizes} | {r.tokens_per_image} | {r.prompt_tokens} | {r.fmt} | "
            f"{r.items or '–'} | {runs} | {placed} |"
        )


# --------------------------------------------------------------------------- part 2: SGLang's tower


def sglang_vision(model_path: str, dtype: torch.dtype, device: str) -> Any:
    """SGLang's ``Llama4ForConditionalGeneration`` holding only its vision tower and projector.

    Built without ``__init__`` (which would build the language model too); the tower is SGLang's
    ``Llama4VisionModel`` (``mllama4.py:370-460``), the weights go through the class's own
    ``load_weights`` (q/k/v into ``qkv_proj``, ``o_proj`` renamed ``proj``), and
    ``get_image_feature`` is the class's own (``mllama4.py:571-589``).
    """
    from safetensors import safe_open
    from sglang.srt.models.mllama4 import Llama4ForConditionalGeneration, Llama4VisionModel
    from transformers import AutoConfig
    from transformers.models.llama4.modeling_llama4 import Llama4MultiModalProjector

    config = AutoConfig.from_pretrained(model_path)
    model = Llama4ForConditionalGeneration.__new__(Llama4ForConditionalGeneration)
    torch.nn.Module.__init__(model)
    model.config = config
    model.has_vision = True
    model.vision_model = Llama4VisionModel(config.vision_config, prefix="vision_model")
    model.multi_modal_projector = Llama4MultiModalProjector(config)
    weights = []
    for shard in sorted(Path(model_path).glob("*.safetensors")):
        with safe_open(shard, "pt") as f:
            weights += [
                (k, f.get_tensor(k).float())
                for k in f.keys()  # noqa: SIM118 - safe_open has no __iter__
                if k.startswith(("vision_model.", "multi_modal_projector."))
            ]
    model.load_weights(weights)
    # SGLang keeps freqs_ci as a plain attribute (mllama4.py:345), so .to() leaves it complex.
    return model.to(device=device, dtype=dtype).eval()


def part_tower(model_path: str, device: str, dtype: torch.dtype) -> dict[str, Any]:
    from transformers import AutoConfig, AutoProcessor

    from vlm_tutorial.vision import load_vision_encoder

    processor = AutoProcessor.from_pretrained(model_path)
    mm = sglang_processor(processor, AutoConfig.from_pretrained(model_path), image_device=device)
    sglang_model = sglang_vision(model_path, dtype, device)
    encoder = load_vision_encoder(model_path, device=device, dtype=dtype)
    kwargs = {"device": device} if device != "cpu" else {}
    prompt = build_prompt(processor, MULTI_IMAGE_QUESTION, num_images=2)
    report: dict[str, Any] = {"device": device, "dtype": str(dtype)}
    pairs = {
        "mixed_size": [example_image(), example_image((256, 192))],
        "same_size": [example_image(), example_image().transpose(Image.Transpose.FLIP_LEFT_RIGHT)],
    }
    for pair, images in pairs.items():
        inputs = run_processor(processor, prompt, images, **kwargs)
        ids = inputs["input_ids"][0].tolist()
        with torch.no_grad():
            client = encoder(inputs).float().cpu()
        rows_per_tile = client.shape[0] // inputs["pixel_values"].shape[0]
        requests: dict[str, tuple[list[Any], str | list[int]]] = {
            "raw": (images, prompt),
            "processor_output": ([dict(inputs, format="processor_output")], ids),
            "precomputed_embeddings": (
                [{"format": "processor_output", "precomputed_embeddings": encoder(inputs)}],
                ids,
            ),
        }
        entry: dict[str, Any] = {"tokens_per_image": LLAMA4.tokens_per_image(ids)}
        for fmt, (data, text) in requests.items():
            placed = sglang_place(
                mm, data, text, sglang_model.get_image_feature, client.shape[1], device=device
            )
            diff = (placed.rows - client).abs()
            per_tile = diff.view(-1, rows_per_tile, client.shape[1]).amax(dim=(1, 2))
            entry[fmt] = {
                "items": len(placed.items),
                "distinct_pad_values": len({item["pad_value"] for item in placed.items}),
                "max_abs_diff": float(diff.max()),
                "max_rel_diff": float(diff.max() / client.abs().max()),
                "per_tile_max_abs_diff": [round(float(x), 6) for x in per_tile],
            }
        report[pair] = entry
    return report


def print_tower(report: dict[str, Any]) -> None:
    print(
        f"\n## SGLang's vision tower against the client's encoder ({report['device']}, "
        f"{report['dtype']})\n"
    )
    print(
        "| pair | tokens per image | format | items | distinct pad values | max abs diff | "
        "max rel diff | max abs diff per tile |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for pair in ("mixed_size", "same_size"):
        entry = report[pair]
        for fmt in ("raw", "processor_output", "precomputed_embeddings"):
            e = entry[fmt]
            print(
                f"| {pair} | {entry['tokens_per_image']} | {fmt} | {e['items']} | "
                f"{e['distinct_pad_values']} | {e['max_abs_diff']:.3g} | {e['max_rel_diff']:.3g} | "
                f"{e['per_tile_max_abs_diff']} |"
            )


# --------------------------------------------------------------------------- part 3: sensitivity


def part_sensitivity(model_path: str, seeds: int) -> dict[str, Any]:
    from transformers import AutoProcessor, Llama4ForConditionalGeneration

    from vlm_tutorial.vision import load_vision_encoder

    processor = AutoProcessor.from_pretrained(model_path)
    model = Llama4ForConditionalGeneration.from_pretrained(model_path, dtype=torch.float32).eval()
    encoder = load_vision_encoder(model_path, dtype=torch.float32)
    prompt = build_prompt(processor, MULTI_IMAGE_QUESTION, num_images=2)
    inputs = run_processor(processor, prompt, [example_image(), example_image((256, 192))])
    ids = inputs["input_ids"]
    with torch.no_grad():
        embedding = encoder(inputs).float()
        text_embeds = model.get_input_embeddings()(ids)[0]
    at = (ids[0] == PATCH).nonzero().flatten()
    spec = json.loads((Path(model_path) / "tiny_model.json").read_text()).get("spec_hash")
    recorded = H100_RUN5 if spec == H100_RUN5["spec_hash"] else None

    def embeds(rows: torch.Tensor, extra: Sequence[int] = ()) -> torch.Tensor:
        x = text_embeds.clone()
        x[at] = rows
        if extra:
            x = torch.cat([x, model.get_input_embeddings()(torch.tensor(list(extra)))])
        return x[None]

    def greedy(rows: torch.Tensor, n: int = 16) -> list[int]:
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                inputs_embeds=embeds(rows),
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
            )
        return [int(t) for t in out[0, -n:]]

    routes: list[torch.Tensor] = []
    for layer in model.language_model.model.layers:
        layer.feed_forward.router.register_forward_hook(
            lambda _m, _i, out: routes.append(out[1].argmax(-1).flatten().clone())
        )

    def forced(rows: torch.Tensor, continuation: Sequence[int]) -> tuple[list[Any], list[Any]]:
        """Top-5 at step len(continuation) and each MoE layer's top-1 expert per position."""
        routes.clear()
        x = embeds(rows, continuation)
        with torch.no_grad():
            logits = model(
                inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long)
            ).logits
        lp = torch.log_softmax(logits[0, -1], -1)
        top = torch.topk(lp, 5)
        return [
            (int(i), round(float(v), 3)) for v, i in zip(top.values, top.indices, strict=True)
        ], list(routes)

    exact = greedy(embedding)
    with torch.no_grad():  # transformers' own path: pixels through its own vision tower
        own = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=inputs["pixel_values"].float(),
            max_new_tokens=16,
            do_sample=False,
            pad_token_id=0,
        )
    report: dict[str, Any] = {
        "spec_hash": spec,
        "tokens_per_image": LLAMA4.tokens_per_image(ids[0].tolist()),
        "prompt_tokens": int(ids.shape[1]),
        "exact_embedding": exact,
        "transformers_pixels": [int(t) for t in own[0, -16:]],
        "h100": recorded,
    }
    prefix = exact[:3]
    report["exact_step3_top5"], exact_routes = forced(embedding, prefix)
    outcomes = {}
    flips: list[dict[str, Any]] = []
    for k in (9, 8, 7, 6):
        eps = 2.0**-k
        counts: Counter[str] = Counter()
        for seed in range(seeds):
            g = torch.Generator().manual_seed(seed)
            noisy = embedding * (1 + eps * torch.randn(embedding.shape, generator=g))
            answer = greedy(noisy)
            if answer == exact:
                counts["exact answer"] += 1
            elif recorded is not None and answer == recorded["raw"]:
                counts["H100 raw answer"] += 1
                if not flips:
                    top5, noisy_routes = forced(noisy, prefix)
                    moved = [
                        (layer, [int(p) for p in (a != b).nonzero().flatten()])
                        for layer, (a, b) in enumerate(zip(exact_routes, noisy_routes, strict=True))
                    ]
                    flips.append(
                        {
                            "eps": f"2^-{k}",
                            "seed": seed,
                            "step3_top5": top5,
                            "router_top1_moved": moved,
                        }
                    )
            else:
                counts["other"] += 1
        outcomes[f"2^-{k}"] = dict(counts)
    report["noise"] = outcomes
    report["noisy_run_like_h100_raw"] = flips
    return report


def print_sensitivity(report: dict[str, Any]) -> None:
    print("\n## Sensitivity of the tiny checkpoint's answer (transformers, float32, CPU)\n")
    print(
        f"checkpoint spec_hash {report['spec_hash']}; tokens per image "
        f"{report['tokens_per_image']}; prompt tokens {report['prompt_tokens']}"
    )
    print(f"exact embedding, greedy: {report['exact_embedding']}")
    print(f"transformers from the pixels: {report['transformers_pixels']}")
    h100 = report["h100"]
    if h100:
        for fmt in ("raw", "precomputed_embedding"):
            lead = next(
                (
                    i
                    for i, (a, b) in enumerate(
                        zip(report["exact_embedding"], h100[fmt], strict=True)
                    )
                    if a != b
                ),
                16,
            )
            print(f"H100 {fmt}: {h100[fmt]} (agrees with the exact embedding on {lead} tokens)")
        print(f"H100 raw, step 3 top-5: {h100['raw_step3_top5']}")
    else:
        print("(not the checkpoint of the H100 runs: no recorded answers to compare)")
    print(f"exact embedding, step 3 top-5: {report['exact_step3_top5']}")
    print("\n| relative noise on the embedding | answers |")
    print("| --- | --- |")
    for eps, counts in report["noise"].items():
        print(f"| {eps} | {counts} |")
    for flip in report["noisy_run_like_h100_raw"]:
        print(
            f"\nnoise {flip['eps']}, seed {flip['seed']}: step 3 top-5 {flip['step3_top5']}; "
            f"positions whose top-1 expert moved, per MoE layer: {flip['router_top1_moved']}"
        )


# --------------------------------------------------------------------------- main


def environment(device: str) -> dict[str, str]:
    """Versions and hardware the numbers come from."""
    from importlib.metadata import version

    return {
        "sglang": version("sglang"),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "device": torch.cuda.get_device_name()
        if device.startswith("cuda")
        else platform.processor() or platform.machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--part", choices=("placement", "tower", "sensitivity", "all"), default="all"
    )
    parser.add_argument("--model", help="tiny Llama 4 checkpoint (default: vlm_tutorial.tiny's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        help="tower dtype (default: bfloat16 on cuda, float32 on cpu)",
    )
    parser.add_argument(
        "--mm-backend",
        default="sdpa",
        help="SGLang's mm_attention_backend (sdpa; triton_attn as the GPU kit "
        "uses, on the CPU with TRITON_INTERPRET=1)",
    )
    parser.add_argument(
        "--chunk", type=int, help="also run the placement in prefill chunks of this many tokens"
    )
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    if args.model is None:
        from vlm_tutorial.tiny import tiny_model_path

        args.model = str(tiny_model_path("llama4"))
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device != "cpu" else "float32"))
    init_sglang(args.mm_backend)
    results: dict[str, Any] = {
        "model": Path(args.model).name,
        "mm_backend": args.mm_backend,
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
        "environment": environment(args.device),
    }
    if args.part in ("placement", "all"):
        for chunk in dict.fromkeys([None, args.chunk]):
            rows = part_placement(args.model, chunk)
            print_placement(rows, chunk)
            results[f"placement_chunk_{chunk or 'none'}"] = [asdict(r) for r in rows]
        longest = max(r["prompt_tokens"] for r in results["placement_chunk_none"])
        print(
            f"\nlongest prompt: {longest} tokens; SGLang's smallest default chunked_prefill_size "
            f"is {SMALLEST_DEFAULT_CHUNK} (8192 on an H100/H200)"
        )
    if args.part in ("tower", "all"):
        results["tower"] = part_tower(args.model, args.device, dtype)
        print_tower(results["tower"])
    if args.part in ("sensitivity", "all"):
        results["sensitivity"] = part_sensitivity(args.model, args.seeds)
        print_sensitivity(results["sensitivity"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
