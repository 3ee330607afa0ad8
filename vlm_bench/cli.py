"""Command line of the format benchmark: ``python -m vlm_bench``.

See ``python -m vlm_bench --help`` and ``docs/benchmarks/index.md``.

Example:
    >>> main(["--quick", "--out", "/tmp/bench"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlm_tutorial.families import QWEN2_5_VL, get_family
from vlm_tutorial.settings import check_backend, merge_engine_args, pick_backend

from . import output
from .cases import CACHE_SETTINGS, Context, planned_units, run_formats, run_limit, run_reuse
from .prep import CLIENT_ENCODERS, client_encoder
from .timing import TTFT_METHODS

CASES = ("formats", "reuse", "limit", "load")
ENGINE_CASES = ("formats", "reuse", "limit")

#: Image sides (px) per family and model scale. Real Qwen2.5-VL: 256, 1024 and
#: 4096 image tokens (28 px per token side). Real Llama 4: 1 tile (144 tokens),
#: 2 x 2 tiles + global (720), 4 x 4 tiles + global (2448). Tiny models: their
#: processors' ranges (Qwen: 4..64 tokens; Llama 4: 56 px tiles, at most 4).
SIDES = {
    ("qwen2_5_vl", "real"): [448, 896, 1792],
    ("llama4", "real"): [336, 672, 1344],
    ("qwen2_5_vl", "tiny"): [56, 112, 224],
    ("llama4", "tiny"): [56, 112],
}
QUICK_SIDES = {"qwen2_5_vl": [112, 224], "llama4": [56, 112]}

#: A real-scale model's ``mem_fraction_static`` leaves room for this much KV cache, and for
#: the engine's own CUDA context and workspaces, beside its weights and what the GPU already holds.
KV_CACHE_BYTES = 8 * 2**30
ENGINE_BYTES = 2 * 2**30
MAX_MEM_FRACTION = 0.9

DESCRIPTION = """\
Benchmark SGLang's three image input formats (raw image, processor output,
precomputed embedding) end to end, split into client-side preparation and
engine time, for one model family and one engine.

cases (--cases, comma-separated):
  formats  (a) every format, for several image sizes, one request and a batch
  reuse    (b) one image, K questions: raw image each time vs one embedding reused
               (SGLang: caches off, radix cache only, and SGLang's defaults: radix
               and vision cache on; --reuse-caches)
  limit    (c) precomputed embedding vs a text-only prompt of the same length,
               and raw image minus text-only = the engine's own image work
  load     (d) vision-only loading vs the whole model (fresh processes, cold and
               warm page cache) on the checkpoint given by --model

defaults: on the transformers backend the tiny offline models; on sglang a
real-scale folder (Qwen2.5-VL-3B / Llama 4 Scout config with 8 of 48 decoder
layers, random weights through load_format="dummy"; mem_fraction_static from the
weights and this GPU's memory). Engine arguments: the family's tutorial values,
then VLM_TUTORIAL_ENGINE_ARGS, then the benchmark's (caches, load_format,
memory), then --engine-args. Output: results.json (all raw timings), results.md,
results.svg in --out.
"""


def _csv_ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _csv_choices(allowed: tuple[str, ...], what: str) -> Any:
    def parse(text: str) -> list[str]:
        chosen = [x.strip() for x in text.split(",") if x.strip()]
        if chosen == ["all"]:
            return list(allowed)
        bad = [c for c in chosen if c not in allowed]
        if bad or not chosen:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {bad or text!r}; choose from {list(allowed)} or 'all'"
            )
        return chosen

    return parse


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``--help`` prints its description and options).

    Example:
        >>> build_parser().parse_args(["--quick"]).quick
        True
    """
    p = argparse.ArgumentParser(
        prog="python -m vlm_bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--family", choices=["qwen2_5_vl", "llama4"], default="qwen2_5_vl")
    p.add_argument(
        "--backend",
        choices=["auto", "sglang", "transformers"],
        default="auto",
        help="engine: sglang (GPU), transformers (the reference engine), or auto",
    )
    p.add_argument(
        "--model",
        help="checkpoint folder (default: see above; for 'load': the "
        "family's 'text-heavy' tiny checkpoint)",
    )
    p.add_argument(
        "--cases",
        type=_csv_choices(CASES, "case(s)"),
        default=None,
        help="comma-separated cases, or 'all' (default: formats,reuse,limit)",
    )
    p.add_argument("--repeats", type=int, help="measured repeats per variant (default 5; quick 2)")
    p.add_argument(
        "--warmup", type=int, help="unmeasured runs per variant first (default 2; quick 1)"
    )
    p.add_argument(
        "--batch",
        type=int,
        help="concurrent requests in case (a)'s batch (default 8 on "
        "sglang, 4 on transformers; quick 2)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        help="tokens generated per request (default 16; transformers 8; quick 4)",
    )
    p.add_argument(
        "--sizes",
        type=_csv_ints,
        help="square image sides in px (default per family and model scale)",
    )
    p.add_argument(
        "--reuse-k", type=_csv_ints, help="K values of case (b) (default 1,4,16; quick 1,4)"
    )
    p.add_argument(
        "--reuse-size", type=int, help="image side of case (b) (default: the middle size)"
    )
    p.add_argument(
        "--load-repeats",
        type=int,
        help="fresh processes per mode and cache state in case (d) (default 3; quick 1)",
    )
    p.add_argument(
        "--reuse-caches",
        type=_csv_choices(tuple(CACHE_SETTINGS), "cache setting(s)"),
        help=f"SGLang cache settings of case (b), from {list(CACHE_SETTINGS)} (default: all)",
    )
    p.add_argument(
        "--device", help="client-side vision encoder device (default cuda with sglang, else cpu)"
    )
    p.add_argument(
        "--dtype", help="client encoder dtype (default bfloat16 on cuda, float32 on cpu)"
    )
    p.add_argument(
        "--client-encoder",
        choices=list(CLIENT_ENCODERS),
        help="the client's vision encoder: transformers' forward of the checkpoint's module (the "
        "notebooks' path), or the fast Qwen2.5-VL tower (fast, cudnn, varlen: batched attention); "
        "+compile: torch.compile, compiled during the warm-up runs (default: fast for "
        "Qwen2.5-VL, transformers for Llama 4)",
    )
    p.add_argument(
        "--engine-args",
        type=_json_object,
        default={},
        help="JSON object of sglang.Engine arguments (win over every other source)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output folder (default docs/benchmarks/<device>/<family>; "
        "quick: build/bench/<device>/<family>)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI mode: tiny models, few repeats, small sizes (under a minute on 2 CPU cores)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the measurements of an existing "
        "results.json in --out that this run does not redo (split a long run into "
        "several commands, e.g. one per case)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--replot",
        type=Path,
        metavar="RESULTS_JSON",
        help="only rewrite results.md and results.svg from an existing results.json",
    )
    return p


# --------------------------------------------------------------------------- environment


def device_info() -> dict[str, Any]:
    """Name and a short slug of the device the run uses (GPU 0, or the CPU).

    Example:
        >>> device_info()["slug"]  # doctest: +SKIP
        'cpu'
    """
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        return {
            "name": name,
            "slug": slug,
            "gpus": torch.cuda.device_count(),
            "cpu_cores": os.cpu_count(),
        }
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "name": f"CPU ({os.cpu_count()} cores, {model})",
        "slug": "cpu",
        "gpus": 0,
        "cpu_cores": os.cpu_count(),
    }


def versions() -> dict[str, str]:
    """Versions of python, torch, transformers, sglang (or ``not installed``) and this package.

    Example:
        >>> sorted(versions())
        ['python', 'sglang', 'torch', 'transformers', 'vlm_tutorial']
    """
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "sglang", "vlm_tutorial"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def model_kind(path: Path) -> str:
    """``tiny``, ``realscale-dummy`` (random weights through load_format="dummy") or ``checkpoint``.

    Example:
        >>> model_kind(tiny_model_path("qwen2_5_vl"))  # doctest: +SKIP
        'tiny'
    """
    if (path / "tiny_model.json").is_file():
        return "tiny"
    marker = path / "realscale.json"
    if marker.is_file() and json.loads(marker.read_text()).get("weights") != "all":
        return "realscale-dummy"
    return "checkpoint"


def weight_bytes(model: str | os.PathLike[str], kind: str) -> int:
    """Bytes of the weights the engine loads: bf16 parameters of the config (``realscale-dummy``),
    else the safetensors files.

    Example:
        >>> weight_bytes(realscale_folder("llama4"), "realscale-dummy") / 2**30  # doctest: +SKIP
        38.3
    """
    folder = Path(model)
    if kind != "realscale-dummy":
        return sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    from transformers import AutoConfig

    from .realscale import parameter_count

    config = AutoConfig.from_pretrained(folder)
    return 2 * parameter_count(get_family(config.model_type).name, config)["total"]


def memory_fraction(weights: int, used: int, total: int) -> float:
    """``mem_fraction_static`` for a model of ``weights`` bytes on a GPU of ``total`` bytes.

    SGLang's static pool must hold what the GPU already holds (``used``: this
    process's client encoder), the weights, the engine's own
    :data:`ENGINE_BYTES` and a KV cache of :data:`KV_CACHE_BYTES`; the rest
    stays free for activations and CUDA graphs. Rounded up to a hundredth.

    Example:
        >>> memory_fraction(41 * 10**9, 2 * 2**30, 85 * 10**9)  # Llama 4, 8 layers, H100 80 GB
        0.64
    """
    need = used + weights + ENGINE_BYTES + KV_CACHE_BYTES
    fraction = math.ceil(100 * need / total) / 100
    if fraction > MAX_MEM_FRACTION:
        raise SystemExit(
            f"the model needs mem_fraction_static {fraction} ({need / 2**30:.1f} of "
            f"{total / 2**30:.1f} GiB: {weights / 2**30:.1f} GiB of weights, {used / 2**30:.1f} "
            f"in use), above {MAX_MEM_FRACTION}; use a larger GPU or a smaller model"
        )
    return fraction


def engine_args(settings: dict[str, Any], caches: str) -> dict[str, Any]:
    """The benchmark's ``sglang.Engine`` arguments for one cache setting, before the merge.

    :func:`vlm_tutorial.settings.merge_engine_args` puts them over the family's
    tutorial values and ``VLM_TUTORIAL_ENGINE_ARGS``: the radix cache of
    ``caches``, ``load_format="dummy"`` for a real-scale folder, and for a
    model other than the tutorial's a memory fraction from its weights and
    this GPU (:func:`memory_fraction`); then ``--engine-args``.

    Example:
        >>> engine_args({"model_kind": "tiny", "engine_args_cli": {}}, "default")
        {'disable_radix_cache': False}
    """
    args: dict[str, Any] = {"disable_radix_cache": not CACHE_SETTINGS[caches][0]}
    kind = settings["model_kind"]
    if kind == "realscale-dummy":
        args["load_format"] = "dummy"
    if kind != "tiny":
        import torch

        free, total = torch.cuda.mem_get_info()
        weights = weight_bytes(settings["model"], kind)
        args["mem_fraction_static"] = memory_fraction(weights, total - free, total)
    return {**args, **settings["engine_args_cli"]}


# --------------------------------------------------------------------------- settings


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Fill in every default that depends on the backend, the model scale and ``--quick``.

    Example:
        >>> resolve(build_parser().parse_args(["--quick", "--backend", "transformers"]))["repeats"]  # doctest: +SKIP
        2
    """
    family = get_family(args.family)
    cases = args.cases or list(ENGINE_CASES)
    backend = args.backend
    if backend == "auto":
        backend = "transformers" if args.quick else pick_backend()[0]
    backend = check_backend(backend)
    engine_cases = [c for c in cases if c in ENGINE_CASES]

    model: Path | None = Path(args.model).resolve() if args.model else None
    if engine_cases and model is None:
        if backend == "sglang" and not args.quick:
            from .realscale import realscale_folder

            model = realscale_folder(family.name)
        else:
            from vlm_tutorial.offline.tiny import tiny_model_path

            model = tiny_model_path(family.name)
    kind = model_kind(model) if model is not None else "none"
    scale = "tiny" if kind == "tiny" else "real"
    quick = args.quick
    on_gpu = backend == "sglang"

    sides = args.sizes
    if sides is None:
        sides = (
            QUICK_SIDES[family.name] if quick and scale == "tiny" else SIDES[(family.name, scale)]
        )
    device = args.device or ("cuda" if on_gpu else "cpu")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(f"--device {device} but torch sees no CUDA GPU here; use --device cpu")
    settings = {
        "family": family.name,
        "backend": backend,
        "cases": cases,
        "model": os.fspath(model) if model else None,
        "model_kind": kind,
        "scale": scale,
        "quick": quick,
        "repeats": args.repeats or (2 if quick else 5),
        "warmup": args.warmup if args.warmup is not None else (1 if quick else 2),
        "batch": args.batch or (2 if quick else (8 if on_gpu else 4)),
        "max_new_tokens": args.max_new_tokens or (4 if quick else (16 if on_gpu else 8)),
        "sides": sides,
        "reuse_k": args.reuse_k or ([1, 4] if quick else [1, 4, 16]),
        "reuse_side": args.reuse_size or sides[len(sides) // 2],
        # Other engines than SGLang have none of its caches.
        "reuse_caches": (args.reuse_caches or list(CACHE_SETTINGS)) if on_gpu else [None],
        "load_repeats": args.load_repeats or (1 if quick else 3),
        "device": device,
        "dtype": args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"),
        # The fast tower is bit-identical to transformers' on the CPU; Llama 4 has no fast tower.
        "client_encoder": args.client_encoder
        or ("fast" if family is QWEN2_5_VL else "transformers"),
        # Tiny models on the CPU: per-operation thread start-up dominates; one thread.
        "threads": 1 if scale == "tiny" and not device.startswith("cuda") else None,
        "engine_args_cli": args.engine_args,
        "ttft_method": TTFT_METHODS.get(backend, ""),
    }
    return settings


def default_out(settings: dict[str, Any], device: dict[str, Any]) -> Path:
    """``docs/benchmarks/<device>/<family>`` (quick: ``build/bench/...``; load only: ``load-<family>``).

    Example:
        >>> default_out({"quick": True, "family": "llama4", "cases": ["formats"]}, {"slug": "cpu"})
        PosixPath('build/bench/cpu/llama4')
    """
    leaf = settings["family"] if settings["cases"] != ["load"] else f"load-{settings['family']}"
    root = Path("build/bench") if settings["quick"] else Path("docs/benchmarks")
    return root / device["slug"] / leaf


# --------------------------------------------------------------------------- running


@contextlib.contextmanager
def _progress(total: int, disable: bool, desc: str) -> Iterator[Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, disable=disable, desc=desc, unit="run", file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()


def _client(settings: dict[str, Any]) -> tuple[Any, Any, Any]:
    import torch
    from transformers import AutoProcessor

    from vlm_tutorial.vision import load_vision_encoder

    model = settings["model"]
    processor = AutoProcessor.from_pretrained(model)
    dtype = getattr(torch, settings["dtype"])
    encoder = load_vision_encoder(model, device=settings["device"], dtype=dtype)
    encoder = client_encoder(encoder, settings["client_encoder"])
    sync = torch.cuda.synchronize if settings["device"].startswith("cuda") else lambda: None
    return processor, encoder, sync


def engine_runs(settings: dict[str, Any]) -> list[tuple[str | None, list[str]]]:
    """One engine per cache setting: ``(caches, cases)``; every case runs with the caches off.

    Example:
        >>> engine_runs({"cases": ["formats", "reuse"], "reuse_caches": ["off", "default"]})
        [('off', ['formats', 'reuse']), ('default', ['reuse'])]
    """
    cases = [c for c in settings["cases"] if c in ENGINE_CASES]
    first = None if settings["reuse_caches"] == [None] else "off"
    runs = [(first, [c for c in cases if c != "reuse" or first in settings["reuse_caches"]])]
    if "reuse" in cases:
        runs += [(c, ["reuse"]) for c in settings["reuse_caches"] if c != first]
    return [run for run in runs if run[1]]


def _run_engine_cases(
    settings: dict[str, Any], bar: Any, records: list[dict[str, Any]]
) -> dict[str, Any]:
    from transformers.utils import logging as hf_logging

    from .engines import open_engine

    hf_logging.disable_progress_bar()  # no "Loading weights" bar inside the benchmark's own bar
    family = get_family(settings["family"])
    processor, encoder, sync = _client(settings)
    backend = settings["backend"]
    device = settings["device"]
    engines_used: dict[str, Any] = {}
    for caches, wanted in engine_runs(settings):
        args: dict[str, Any] = {}
        if backend == "sglang":
            assert caches is not None
            args = engine_args(settings, caches)
            # Read by SGLang's processes at start: 0 turns its cache of vision outputs off.
            if CACHE_SETTINGS[caches][1]:
                os.environ.pop("SGLANG_VLM_CACHE_SIZE_MB", None)
            else:
                os.environ["SGLANG_VLM_CACHE_SIZE_MB"] = "0"
        bar.set_description(f"{family.name}: starting the {backend} engine (caches {caches})")
        start = time.perf_counter()
        with open_engine(settings["model"], backend=backend, **args) as engine:
            engines_used[f"caches_{caches}"] = {
                # What the engine ran with (the reference engine ignores SGLang's arguments).
                "engine_args": merge_engine_args(settings["model"], args) if args else {},
                "vlm_cache_size_mb": os.environ.get("SGLANG_VLM_CACHE_SIZE_MB", "default"),
                "start_seconds": time.perf_counter() - start,
            }
            ctx = Context(
                family=family,
                backend=backend,
                engine=engine,
                processor=processor,
                encoder=encoder,
                max_new_tokens=settings["max_new_tokens"],
                repeats=settings["repeats"],
                warmup=settings["warmup"],
                sync=sync,
                progress=lambda: bar.update(1),
                caches=caches,
                records=records,
                # The fast image processor works where the encoder does, as SGLang's does.
                processor_kwargs={} if device == "cpu" else {"device": device},
            )
            if "formats" in wanted:
                bar.set_description(f"{family.name}: (a) formats")
                run_formats(ctx, settings["sides"], sorted({1, settings["batch"]}))
            if "reuse" in wanted:
                bar.set_description(f"{family.name}: (b) reuse, caches {caches}")
                run_reuse(ctx, settings["reuse_side"], settings["reuse_k"])
            if "limit" in wanted:
                bar.set_description(f"{family.name}: (c) limit")
                run_limit(ctx, settings["sides"])
    return engines_used


def run(settings: dict[str, Any], argv: list[str], no_progress: bool = False) -> dict[str, Any]:
    """Run the selected cases and return the results dict (before the summary is added).

    Example:
        >>> results = run(resolve(build_parser().parse_args(["--quick"])), ["--quick"])  # doctest: +SKIP
    """
    from .loading import checkpoint_info, run_load_case

    device = device_info()
    results: dict[str, Any] = {
        "schema": 1,
        "meta": {
            "command": "python -m vlm_bench " + shlex.join(argv),
            "argv": list(argv),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "device": device,
            "versions": versions(),
            "platform": platform.platform(),
            "load_average_before": list(os.getloadavg()),
        },
        "settings": {k: v for k, v in settings.items()},
        "records": [],
    }
    family = get_family(settings["family"])
    engine_cases = [c for c in settings["cases"] if c in ENGINE_CASES]
    total = planned_units(
        family,
        engine_cases,
        settings["sides"],
        sorted({1, settings["batch"]}),
        settings["reuse_k"],
        settings["repeats"],
        len(settings["reuse_caches"]),
    )
    load_path = None
    if "load" in settings["cases"]:
        if (
            settings["model"]
            and settings["model_kind"] != "realscale-dummy"
            and settings["model_kind"] != "tiny"
        ):
            load_path = Path(settings["model"])
        else:
            from vlm_tutorial.offline.tiny import tiny_model_path

            load_path = tiny_model_path(family.name, "text-heavy")
        total += settings["load_repeats"] * 4
    start = time.perf_counter()
    with _progress(total, no_progress, family.name) as bar:
        if engine_cases:
            results["engines"] = _run_engine_cases(settings, bar, results["records"])
        if load_path is not None:
            bar.set_description(f"{family.name}: (d) load")
            rows = run_load_case(
                load_path, repeats=settings["load_repeats"], progress=lambda: bar.update(1)
            )
            results["load"] = {"checkpoint": checkpoint_info(load_path), "rows": rows}
    results["meta"]["seconds"] = round(time.perf_counter() - start, 2)
    results["meta"]["load_average_after"] = list(os.getloadavg())
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m vlm_bench``; returns the exit status.

    Example:
        >>> main(["--help"])  # doctest: +SKIP
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.replot:
        results = json.loads(args.replot.read_text())
        paths = output.write_outputs(results, args.replot.parent)
        print(f"rewrote {paths['table']}" + (f" and {paths['figure']}" if paths["figure"] else ""))
        return 0
    settings = resolve(args)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(settings["threads"] or threads)
    try:
        results = run(settings, argv, no_progress=args.no_progress)
    finally:
        torch.set_num_threads(threads)  # as it was, for a caller in the same process
    out = Path(args.out or default_out(settings, results["meta"]["device"]))
    existing = out / output.RESULTS_FILE
    if args.merge and existing.is_file():
        results = output.merge_results(json.loads(existing.read_text()), results)
    paths = output.write_outputs(results, out)
    print(
        f"wrote {paths['json']}, {paths['table']}"
        + (
            f", {paths['figure']}"
            if paths["figure"]
            else " (no figure: matplotlib is not installed; "
            f"rerun with --replot {paths['json']} where it is)"
        )
    )
    for item in results["ratios"]["limit"]:
        print(
            f"limit {item['side']}px: precomputed/text TTFT {item['precomputed_over_text_ttft']:.2f}x, "
            f"engine image work {output.fmt_seconds(item['engine_vision_s'])}"
        )
    return 0


__all__ = [
    "CASES",
    "SIDES",
    "build_parser",
    "device_info",
    "engine_args",
    "engine_runs",
    "main",
    "memory_fraction",
    "model_kind",
    "resolve",
    "run",
    "versions",
    "weight_bytes",
]
