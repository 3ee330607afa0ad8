"""What the client's preparation costs, part by part, without an engine: processor and encoder.

``python -m vlm_bench.probe`` measures two things and writes
``probe.json`` (every timing, the command, device and versions) and
``probe.md`` into ``--out``:

* ``processor``: for each family, at its largest benchmark image, the
  processor call split into image decode (PNG to pixels), image processing
  (the fast image processor alone), tokenization of the expanded prompt (the
  processor's own tokenizer on the text with every image token written out),
  transformers' image-token count check (``ProcessorMixin._check_special_mm_tokens``
  counts the tokens of ``list(input_ids)``, one 0-d tensor per id), and the
  rest; on the CPU and, where there is one, the GPU (``device="cuda"``);
  optionally (``--busy N``) with N busy processes spinning, as SGLang's
  scheduler and detokenizer do beside the client; the CPU rows with torch's
  default thread count, one thread less per busy process, and one thread
  (OpenMP threads that spin-wait for a descheduled peer make every small
  parallel operation slow); plus a cProfile of one call.
* ``encoder``: every client encoder of the benchmark
  (:data:`vlm_bench.prep.CLIENT_ENCODERS`) on the same weights: transformers'
  forward of the checkpoint's module, and for Qwen2.5-VL the fast tower
  (``fast``, ``cudnn``, ``varlen``; eager and ``+compile``), at the benchmark's
  image sizes (256, 1024, 4096 tokens) and ``--batch`` images of the largest
  in one call. Llama 4: ``transformers`` and ``transformers+compile``. Medians
  of repeats timed on the wall clock with the GPU synchronised; each
  variant's error against transformers' float32 output at the middle size;
  a ``torch.profiler`` table of the kernels at the largest size.

The weights are the benchmark's own: the real-scale folders of
:mod:`vlm_bench.realscale` (random vision weights), or the tiny
checkpoints with ``--tiny``. :func:`best_encoder` reads a ``probe.json`` and
names the fastest variant within rounding of transformers' tower, as
``python -m vlm_bench --client-encoder`` option (``--best``).

Example:
    >>> main(["--tiny", "--out", "/tmp/probe", "--repeats", "2"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import io
import json
import os
import platform
import pstats
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from vlm_tutorial.families import QWEN2_5_VL, get_family

from .prep import CLIENT_ENCODERS
from .stats import summarize

FAMILY_NAMES = ("qwen2_5_vl", "llama4")
PARTS = ("processor", "encoder")


def variants_for(family: str) -> list[str]:
    """The client encoders the probe times for ``family`` by default.

    Example:
        >>> variants_for("llama4")
        ['transformers', 'transformers+compile']
    """
    if get_family(family) is QWEN2_5_VL:
        return [v for v in CLIENT_ENCODERS if v != "transformers+compile"]
    return [v for v, (attention, _) in CLIENT_ENCODERS.items() if attention is None]


QUESTION = "Describe this image in one sentence."


# --------------------------------------------------------------------------- timing


def _sync_for(device: str) -> Callable[[], None]:
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


def time_calls(
    fn: Callable[[], Any],
    *,
    repeats: int,
    warmup: int,
    sync: Callable[[], None],
    budget_s: float = float("inf"),
) -> dict[str, Any]:
    """Time ``fn``: the first call apart (compiles, caches), then ``warmup`` more, then ``repeats``.

    Warm-up stops once it took ``budget_s / 2`` seconds, repeating once the
    repeats took ``budget_s`` (at least 3 are kept). Returns ``first_s`` and the
    summary of the repeats (``median``, quartiles, ``values``).

    Example:
        >>> time_calls(lambda: sum(range(1000)), repeats=3, warmup=0, sync=lambda: None)["n"]
        3
    """
    sync()
    start = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - start
    warm = 0.0
    for _ in range(warmup):
        if warm >= budget_s / 2:
            break
        start = time.perf_counter()
        fn()
        sync()
        warm += time.perf_counter() - start
    values: list[float] = []
    spent = 0.0
    while len(values) < repeats and (len(values) < 3 or spent < budget_s):
        start = time.perf_counter()
        fn()
        sync()
        values.append(time.perf_counter() - start)
        spent += values[-1]
    out: dict[str, Any] = dict(summarize(values))
    out.update(first_s=first, values=values)
    return out


@contextlib.contextmanager
def busy_processes(n: int) -> Iterator[list[int]]:
    """``n`` child processes that spin on a CPU core each until the block ends (their pids).

    Example:
        >>> with busy_processes(1) as pids:
        ...     len(pids)
        1
    """
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(n)
    ]
    try:
        time.sleep(0.2 if n else 0)
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)


# --------------------------------------------------------------------------- processor


def _image_token_counts(processor: Any, input_ids: Any) -> list[list[int]]:
    """What transformers' ``_check_special_mm_tokens`` computes: per modality token, its counts."""
    counts = []
    for modality in ("image", "video", "audio"):
        token = getattr(processor, f"{modality}_token", None)
        token_id = getattr(processor, f"{modality}_token_id", None)
        if token is not None and token_id is not None:
            counts.append([list(ids).count(token_id) for ids in input_ids])
    return counts


def _profile_rows(fn: Callable[[], Any], top: int = 15) -> list[dict[str, Any]]:
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (file, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
        rows.append(
            {
                "function": f"{where}({name})",
                "calls": calls,
                "cum_ms": cumtime * 1e3,
                "own_ms": tottime * 1e3,
            }
        )
    rows.sort(key=lambda r: -r["cum_ms"])
    return rows[:top]


def processor_split(
    processor: Any,
    path: str,
    *,
    device: str = "cpu",
    repeats: int = 5,
    warmup: int = 1,
    to_device: str | None = None,
) -> dict[str, Any]:
    """The processor call on the image file ``path`` split into its parts (see the module docs).

    ``device``: where the fast image processor works. ``to_device``: also
    time copying ``pixel_values`` there (what the encoder does with CPU output).

    Example:
        >>> split = processor_split(processor, image_file(1792), device="cuda")  # doctest: +SKIP
        >>> split["parts_ms"]["image_processing"]  # doctest: +SKIP
        6.1
    """
    import torch

    from vlm_tutorial.images import load_image
    from vlm_tutorial.prompts import build_prompt

    from .requests import run_processor

    sync = _sync_for(device if device != "cpu" else (to_device or "cpu"))
    kwargs = {} if device == "cpu" else {"device": device}
    prompt = build_prompt(processor, QUESTION, num_images=1)
    tokenizer = processor.tokenizer
    bos = getattr(tokenizer, "bos_token", None)
    text_kwargs = {"add_special_tokens": False} if bos and prompt.startswith(bos) else {}
    image = load_image(path)
    out = run_processor(processor, prompt, [image], **kwargs)
    ids = out["input_ids"]
    expanded = tokenizer.decode(ids[0].tolist(), skip_special_tokens=False)
    retokenized = tokenizer([expanded], return_tensors="pt", **text_kwargs)["input_ids"]

    def timed(fn: Callable[[], Any]) -> dict[str, Any]:
        return time_calls(fn, repeats=repeats, warmup=warmup, sync=sync)

    timings = {
        "decode": timed(lambda: load_image(path)),
        "image_processing": timed(
            lambda: processor.image_processor(images=[image], return_tensors="pt", **kwargs)
        ),
        "tokenization": timed(lambda: tokenizer([expanded], return_tensors="pt", **text_kwargs)),
        "token_count_check": timed(lambda: _image_token_counts(processor, ids)),
        "processor_call": timed(
            lambda: processor(
                text=[prompt], images=[image], return_tensors="pt", **kwargs, **text_kwargs
            )
        ),
        "run_processor": timed(lambda: run_processor(processor, prompt, [image], **kwargs)),
    }
    if to_device is not None:
        pixels = out["pixel_values"]
        timings["pixels_to_" + to_device] = timed(lambda: pixels.to(to_device))
    parts = {name: t["median"] * 1e3 for name, t in timings.items()}
    parts["rest_of_processor_call"] = parts["processor_call"] - sum(
        parts[k] for k in ("image_processing", "tokenization", "token_count_check")
    )
    return {
        "device": device,
        "threads": torch.get_num_threads(),
        "image_px": list(image.size),
        "input_ids": int(ids.shape[-1]),
        "pixel_values": list(out["pixel_values"].shape),
        "pixel_dtype": str(out["pixel_values"].dtype).removeprefix("torch."),
        "tokenizer": type(tokenizer).__name__,
        "retokenized_equal": bool(torch.equal(retokenized, ids)),
        "parts_ms": parts,
        "timings": timings,
        "profile": _profile_rows(
            lambda: processor(
                text=[prompt], images=[image], return_tensors="pt", **kwargs, **text_kwargs
            )
        ),
        "pixels": out["pixel_values"],
    }


def run_processor_part(
    family: str,
    model: str,
    side: int,
    *,
    devices: Sequence[str],
    busy: Sequence[int],
    repeats: int,
    image_dir: str | None = None,
) -> dict[str, Any]:
    """:func:`processor_split` on every device, with each number of busy processes."""
    import torch
    from transformers import AutoProcessor

    from .inputs import image_file

    processor = AutoProcessor.from_pretrained(model)
    path = image_file(side, 0, image_dir)
    cuda = next((d for d in devices if d.startswith("cuda")), None)
    default_threads = torch.get_num_threads()
    rows = []
    pixels: dict[str, Any] = {}
    for n_busy in busy:
        with busy_processes(n_busy):
            thread_counts = [default_threads]
            if n_busy and default_threads > n_busy + 1:
                thread_counts.append(default_threads - n_busy)
            if default_threads > 1:
                thread_counts.append(1)
            for device in devices:
                for threads in thread_counts if device == "cpu" else [default_threads]:
                    torch.set_num_threads(threads)
                    try:
                        split = processor_split(
                            processor,
                            path,
                            device=device,
                            repeats=repeats,
                            to_device=cuda if device == "cpu" else None,
                        )
                    finally:
                        torch.set_num_threads(default_threads)
                    pixels.setdefault(device, split.pop("pixels"))
                    split.pop("pixels", None)
                    rows.append({"busy_processes": n_busy, **split})
    same = None
    if len(pixels) > 1:
        values = [p.to("cpu") for p in pixels.values()]
        same = all(torch.equal(values[0], v) for v in values[1:])
    return {
        "family": family,
        "model": model,
        "side": side,
        "cpu_cores": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "pixels_identical_across_devices": same,
        "rows": rows,
    }


# --------------------------------------------------------------------------- encoder


def _encoder_inputs(
    processor: Any, side: int, copies: int, device: str, dtype: Any
) -> dict[str, Any]:
    import torch

    from vlm_tutorial.prompts import build_prompt

    from .inputs import bench_image
    from .requests import run_processor

    prompt = build_prompt(processor, QUESTION, num_images=1)
    out = run_processor(processor, prompt, [bench_image(side)])
    pixels = out["pixel_values"].to(device=device, dtype=dtype)
    inputs: dict[str, Any] = {"pixel_values": torch.cat([pixels] * copies)}
    if "image_grid_thw" in out:
        inputs["image_grid_thw"] = torch.cat([out["image_grid_thw"]] * copies)
    return inputs


def _kernel_table(fn: Callable[[], Any], device: str, top: int = 15) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    cuda = device.startswith("cuda")
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    sync = _sync_for(device)
    with profile(activities=activities) as prof:
        fn()
        sync()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    rows = []
    for event in prof.key_averages():
        own: float | None = getattr(event, key, None)
        if own is None:  # older torch names
            own = getattr(event, "self_cuda_time_total" if cuda else "self_cpu_time_total", 0)
        rows.append({"name": event.key[:120], "calls": event.count, "self_ms": own / 1e3})
    rows.sort(key=lambda r: -r["self_ms"])
    total = sum(r["self_ms"] for r in rows)
    return [dict(r, share=r["self_ms"] / total if total else 0.0) for r in rows[:top]]


def _errors(got: Any, truth: Any) -> dict[str, float]:
    diff = (got.float() - truth.float()).abs()
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}


def _cells(sides: Sequence[int], batch: int) -> list[tuple[str, int, int]]:
    cells = [(f"{side}px", side, 1) for side in sides]
    if batch > 1:
        cells.append((f"{batch}x{sides[-1]}px", sides[-1], batch))
    return cells


def run_encoder_part(
    family: str,
    model: str,
    sides: Sequence[int],
    *,
    device: str,
    dtype: Any,
    batch: int,
    repeats: int,
    warmup: int,
    budget_s: float,
    variants: Sequence[str] | None = None,
    profile_kernels: bool = True,
) -> dict[str, Any]:
    """Every encoder variant of ``family`` at ``sides`` (and a batch of the largest), same weights."""
    import torch
    from transformers import AutoProcessor

    from vlm_tutorial.vision import load_vision_encoder

    from .prep import client_encoder

    processor = AutoProcessor.from_pretrained(model)
    sync = _sync_for(device)
    base = load_vision_encoder(model, device=device, dtype=dtype)
    runners: dict[str, Callable[[dict[str, Any]], Any]] = {}
    skipped: dict[str, str] = {}
    for name in variants_for(family):
        if variants is not None and name not in (*variants, "transformers"):
            continue
        try:
            # transformers+compile compiles the module's layers in place: on weights of its own.
            own = name == "transformers+compile"
            weights = load_vision_encoder(model, device=device, dtype=dtype) if own else base
            runners[name] = client_encoder(weights, name)
        except ValueError as exc:
            skipped[name] = str(exc)
    cells = _cells(sides, batch)
    inputs = {
        label: _encoder_inputs(processor, side, copies, device, dtype)
        for label, side, copies in cells
    }
    middle = cells[len(sides) // 2][0]
    truth_encoder = load_vision_encoder(model, device=device, dtype=torch.float32)
    with torch.inference_mode():
        truth = truth_encoder(
            {k: v.float() if v.is_floating_point() else v for k, v in inputs[middle].items()}
        )
    del truth_encoder

    rows = []
    kernels: dict[str, Any] = {}
    for name, runner in runners.items():
        try:
            with torch.inference_mode():
                errors = _errors(runner(inputs[middle]), truth)
        except Exception as exc:  # a variant this torch or GPU cannot run: say so, go on
            skipped[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            continue
        for label, side, copies in cells:
            call = inputs[label]

            def step(call: dict[str, Any] = call, runner: Callable[..., Any] = runner) -> Any:
                with torch.inference_mode():
                    return runner(call)

            timing = time_calls(step, repeats=repeats, warmup=warmup, sync=sync, budget_s=budget_s)
            rows.append(
                {
                    "variant": name,
                    "cell": label,
                    "side": side,
                    "images": copies,
                    "pixel_rows": int(call["pixel_values"].shape[0]),
                    "median_ms": timing["median"] * 1e3,
                    "q1_ms": timing["q1"] * 1e3,
                    "q3_ms": timing["q3"] * 1e3,
                    "first_ms": timing["first_s"] * 1e3,
                    "n": timing["n"],
                    "errors_vs_fp32": errors,
                }
            )
        if profile_kernels and name in (
            "transformers",
            "fast",
            "varlen+compile",
            "transformers+compile",
        ):
            largest = cells[len(sides) - 1][0]

            def largest_step(runner: Callable[..., Any] = runner, label: str = largest) -> Any:
                with torch.inference_mode():
                    return runner(inputs[label])

            kernels[name] = _kernel_table(largest_step, device)
    return {
        "family": family,
        "model": model,
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "cells": [c[0] for c in cells],
        "largest_cell": cells[len(sides) - 1][0],
        "accuracy_cell": middle,
        "rows": rows,
        "skipped": skipped,
        "kernels_at_largest": kernels,
    }


def best_encoder(results: dict[str, Any], family: str) -> dict[str, Any] | None:
    """The fastest encoder variant of ``family`` at the largest single image, within rounding.

    "Within rounding": its error against transformers' float32 output is at
    most twice that of transformers' own tower in the same dtype (or 1e-3 where
    that is 0). Returns the row and the benchmark options that time it.

    Example:
        >>> best_encoder(json.loads(Path("probe.json").read_text()), "qwen2_5_vl")["options"]  # doctest: +SKIP
        ['--client-encoder', 'varlen+compile']
    """
    part = results.get("encoder", {}).get(family)
    if not part:
        return None
    rows = part["rows"]
    largest = part["largest_cell"]
    reference = next(r for r in rows if r["variant"] == "transformers")
    limit = 2 * reference["errors_vs_fp32"]["max_abs"] or 1e-3
    candidates = [
        r for r in rows if r["cell"] == largest and r["errors_vs_fp32"]["max_abs"] <= limit
    ]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: r["median_ms"])
    return {
        "variant": best["variant"],
        "row": best,
        "options": ["--client-encoder", best["variant"]],
    }


# --------------------------------------------------------------------------- report


def _identical(value: bool | None) -> str:
    return "n/a (one device)" if value is None else "yes" if value else "no"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new``, plus the parts and families of ``old`` that ``new`` did not measure.

    Example:
        >>> merge({"meta": {"command": "a"}, "processor": {"x": 1}, "encoder": {}},
        ...       {"meta": {"command": "b"}, "processor": {}, "encoder": {"y": 2}})["processor"]
        {'x': 1}
    """
    merged = dict(new)
    for part in PARTS:
        merged[part] = {**old.get(part, {}), **new.get(part, {})}
    meta = dict(new["meta"])
    meta["merged_from"] = [*old["meta"].get("merged_from", []), old["meta"]["command"]]
    merged["meta"] = meta
    return merged


def markdown(results: dict[str, Any]) -> str:
    """``probe.md``: the processor split and the encoder table of a probe's results."""
    meta = results["meta"]
    lines = [
        "---",
        "orphan: true",  # linked from the benchmark page's table, not from a toctree
        "---",
        "",
        f"# Client-side probe on {meta['device']['name']}",
        "",
        f"- command: `{meta['command']}`",
        f"- started {meta['started']}; torch {meta['versions'].get('torch')}, "
        f"transformers {meta['versions'].get('transformers')}",
        "- medians of repeats, wall clock with the GPU synchronised; times in ms",
        "",
    ]
    for family, part in results.get("processor", {}).items():
        lines += [
            f"## Processor split: {family}, {part['side']} px image",
            "",
            f"Checkpoint `{part['model']}`, tokenizer `{part['rows'][0]['tokenizer']}`; "
            f"{part['rows'][0]['input_ids']} input ids. Columns: *decode* (PNG file to RGB "
            "pixels), *image processing* (the image processor alone), *tokenization* (the "
            "processor's tokenizer on the expanded prompt, every image token written out; the "
            f"same ids as the processor's: {part['rows'][0]['retokenized_equal']}), *token-count "
            "check* (transformers' `_check_special_mm_tokens`: `list(input_ids).count(id)` per "
            "modality token), *rest* (the processor call minus those three: text expansion, "
            "`mm_token_type_ids`, tensor conversion), *run_processor* (the package's call: image "
            "copy, validation, processor), *pixels to GPU* (the CPU output's `pixel_values` "
            "copied to the GPU, as the encoder does). Pixels identical across devices: "
            f"{_identical(part['pixels_identical_across_devices'])}.",
            "",
            "| device | threads | busy procs | decode | image processing | tokenization "
            "| token-count check | rest | processor call | run_processor | pixels to GPU |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in part["rows"]:
            p = row["parts_ms"]
            copy = next((v for k, v in p.items() if k.startswith("pixels_to_")), None)
            lines.append(
                f"| {row['device']} | {row['threads']} | {row['busy_processes']} "
                f"| {_ms(p['decode'])} | {_ms(p['image_processing'])} | {_ms(p['tokenization'])} "
                f"| {_ms(p['token_count_check'])} | {_ms(p['rest_of_processor_call'])} "
                f"| {_ms(p['processor_call'])} | {_ms(p['run_processor'])} "
                f"| {_ms(copy) if copy is not None else '–'} |"
            )
        lines.append("")
    for family, part in results.get("encoder", {}).items():
        cells = part["cells"]
        lines += [
            f"## Encoder: {family} ({part['dtype']} on {part['device']})",
            "",
            f"Error against transformers' float32 output at {part['accuracy_cell']}: max abs "
            "(mean abs).",
            "",
            "| variant | " + " | ".join(cells) + " | first call, largest | error |",
            "| --- | " + " | ".join("---" for _ in cells) + " | --- | --- |",
        ]
        by_variant: dict[str, dict[str, Any]] = {}
        for row in part["rows"]:
            by_variant.setdefault(row["variant"], {})[row["cell"]] = row
        for variant, row_cells in by_variant.items():
            err = next(iter(row_cells.values()))["errors_vs_fp32"]
            first = row_cells[cells[len(cells) - 1]]["first_ms"]
            lines.append(
                f"| {variant} | "
                + " | ".join(
                    _ms(row_cells[c]["median_ms"]) if c in row_cells else "–" for c in cells
                )
                + f" | {_ms(first)} | {err['max_abs']:.3g} ({err['mean_abs']:.2g}) |"
            )
        if part["skipped"]:
            lines.append("")
        for name, reason in part["skipped"].items():
            lines.append(f"- {name}: not run ({reason})")
        best = best_encoder(results, family)
        if best:
            lines.append(
                f"\nFastest within rounding: **{best['variant']}** "
                f"(`python -m vlm_bench {' '.join(best['options'])}`)."
            )
        for name, table in part["kernels_at_largest"].items():
            lines += [
                "",
                f"Kernels of `{name}` at the largest single image (self time):",
                "",
                "| kernel | calls | ms | share |",
                "| --- | --- | --- | --- |",
            ]
            lines += [
                f"| `{r['name'][:80]}` | {r['calls']} | {_ms(r['self_ms'])} | {r['share']:.0%} |"
                for r in table
            ]
        lines.append("")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The probe's argument parser.

    Example:
        >>> build_parser().parse_args(["--tiny"]).tiny
        True
    """
    p = argparse.ArgumentParser(
        prog="python -m vlm_bench.probe",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--families", default=",".join(FAMILY_NAMES), help="comma-separated")
    p.add_argument("--parts", default=",".join(PARTS), help="processor,encoder (comma-separated)")
    p.add_argument("--tiny", action="store_true", help="the tiny checkpoints (CPU check)")
    p.add_argument("--device", help="encoder device (default cuda if available, else cpu)")
    p.add_argument("--dtype", help="encoder dtype (default bfloat16 on cuda, float32 on cpu)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--cell-seconds", type=float, default=4.0, help="time cap per encoder cell")
    p.add_argument("--batch", type=int, default=8, help="images of the largest size in one call")
    p.add_argument(
        "--sides",
        help="square image sides in px, comma-separated (default: the benchmark's for the scale)",
    )
    p.add_argument("--variants", help="only these encoder variants (comma-separated)")
    p.add_argument("--busy", default="0", help="busy processes beside the processor, e.g. 0,2")
    p.add_argument("--no-profile", action="store_true", help="no kernel table")
    p.add_argument("--out", type=Path, help="output folder (default build/bench/<device>/probe)")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep what an existing probe.json in --out has and this run does not redo",
    )
    p.add_argument(
        "--best",
        type=Path,
        metavar="PROBE_JSON",
        help="print the benchmark options of the fastest encoder of --families' first family",
    )
    return p


def _model(family: str, tiny: bool) -> str:
    if tiny:
        from vlm_tutorial.offline.tiny import tiny_model_path

        return str(tiny_model_path(family))
    from .realscale import realscale_folder

    return str(realscale_folder(family))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m vlm_bench.probe``; returns the exit status."""
    import torch

    from .cli import SIDES, device_info, versions

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    families = [get_family(f.strip()).name for f in args.families.split(",") if f.strip()]
    if args.best:
        best = best_encoder(json.loads(args.best.read_text()), families[0])
        print(" ".join(best["options"]) if best else "")
        return 0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise SystemExit(f"--parts: unknown {bad}; choose from {list(PARTS)}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device} but torch sees no CUDA GPU here; use --device cpu")
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    busy = [int(x) for x in args.busy.split(",") if x.strip()]
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    info = device_info()
    out = args.out or Path("build/bench") / info["slug"] / "probe"
    results: dict[str, Any] = {
        "schema": 1,
        "meta": {
            "command": "python -m vlm_bench.probe " + shlex.join(argv),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "device": info,
            "versions": versions(),
            "platform": platform.platform(),
            "load_average_before": list(os.getloadavg()),
        },
        "processor": {},
        "encoder": {},
    }
    scale = "tiny" if args.tiny else "real"
    start = time.perf_counter()
    for family in families:
        model = _model(family, args.tiny)
        sides = [int(x) for x in args.sides.split(",")] if args.sides else SIDES[(family, scale)]
        if "processor" in parts:
            devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
            print(f"probe: {family} processor split", file=sys.stderr, flush=True)
            results["processor"][family] = run_processor_part(
                family, model, sides[-1], devices=devices, busy=busy, repeats=args.repeats
            )
        if "encoder" in parts:
            print(f"probe: {family} encoder variants", file=sys.stderr, flush=True)
            results["encoder"][family] = run_encoder_part(
                family,
                model,
                sides,
                device=device,
                dtype=dtype,
                batch=args.batch,
                repeats=args.repeats,
                warmup=args.warmup,
                budget_s=args.cell_seconds,
                variants=variants,
                profile_kernels=not args.no_profile,
            )
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    results["meta"]["seconds"] = round(time.perf_counter() - start, 2)
    results["meta"]["load_average_after"] = list(os.getloadavg())
    out.mkdir(parents=True, exist_ok=True)
    if args.merge and (out / "probe.json").is_file():
        results = merge(json.loads((out / "probe.json").read_text()), results)
    (out / "probe.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "probe.md").write_text(markdown(results))
    print(f"wrote {out / 'probe.json'}, {out / 'probe.md'}")
    for family in results["encoder"]:
        best = best_encoder(results, family)
        if best:
            print(f"{family}: fastest encoder {best['variant']} ({' '.join(best['options'])})")
    return 0


__all__ = [
    "best_encoder",
    "busy_processes",
    "main",
    "markdown",
    "merge",
    "processor_split",
    "run_encoder_part",
    "run_processor_part",
    "time_calls",
    "variants_for",
]


if __name__ == "__main__":
    sys.exit(main())
