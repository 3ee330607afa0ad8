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
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlm_tutorial.families import get_family
from . import output
from .cases import Context, planned_units, run_formats, run_limit, run_reuse
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

#: Engine arguments the benchmark uses on SGLang unless told otherwise: the
#: kernels that the offline GPU kit has (docs/gpu.md). ``--engine-args`` and
#: ``VLM_TUTORIAL_ENGINE_ARGS`` override them.
SGLANG_DEFAULTS: dict[str, Any] = {
    "attention_backend": "triton",
    "mm_attention_backend": "triton_attn",
    "sampling_backend": "pytorch",
}

DESCRIPTION = """\
Benchmark SGLang's three image input formats (raw image, processor output,
precomputed embedding) end to end, split into client-side preparation and
engine time, for one model family and one engine.

cases (--cases, comma-separated):
  formats  (a) every format, for several image sizes, one request and a batch
  reuse    (b) one image, K questions: raw image each time vs one embedding reused
               (SGLang: radix cache off and on)
  limit    (c) precomputed embedding vs a text-only prompt of the same length,
               and raw image minus text-only = the engine's own image work
  load     (d) vision-only loading vs the whole model (fresh processes, cold and
               warm page cache) on the checkpoint given by --model

defaults: on the transformers backend the tiny offline models; on sglang a
real-scale folder (Qwen2.5-VL-3B / Llama 4 Scout config, random weights through
load_format="dummy"). Output: results.json (all raw timings), results.md,
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


def _csv_cases(text: str) -> list[str]:
    cases = [x.strip() for x in text.split(",") if x.strip()]
    if cases == ["all"]:
        return list(CASES)
    bad = [c for c in cases if c not in CASES]
    if bad or not cases:
        raise argparse.ArgumentTypeError(
            f"unknown case(s) {bad or text!r}; choose from {list(CASES)} or 'all'"
        )
    return cases


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
        type=_csv_cases,
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
        "--image-tokens",
        type=_csv_ints,
        help="Qwen2.5-VL: image token counts instead of --sizes (perfect squares: 256,1024,4096)",
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
        "--load-device",
        default="cpu",
        help="where case (d) loads the weights: cpu (default) or cuda (then it also reports the "
        "GPU memory peak)",
    )
    p.add_argument(
        "--device", help="client-side vision encoder device (default cuda with sglang, else cpu)"
    )
    p.add_argument(
        "--dtype", help="client encoder dtype (default bfloat16 on cuda, float32 on cpu)"
    )
    p.add_argument(
        "--encoder-attn",
        choices=["auto", "fast", "cudnn", "varlen", "reference"],
        default="auto",
        help="client encoder attention (load_vision_encoder's attn; cudnn, varlen: Qwen2.5-VL on cuda)",
    )
    p.add_argument(
        "--encoder-compile",
        action="store_true",
        help="torch.compile the client encoder (Qwen2.5-VL's fast tower, Llama 4's encoder "
        "layers; compiled during the warm-up runs)",
    )
    p.add_argument(
        "--processor-device",
        help="where the client's fast image processor works (default: the encoder's --device)",
    )
    p.add_argument(
        "--batch-prep",
        choices=["together", "one-by-one"],
        default="together",
        help="client preparation of a batch: images decoded in a thread pool and encoded in "
        "one call (together, default), or each request on its own",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads in this process (default: 1 for "
        "tiny models on the CPU, where per-operation thread start-up dominates; else "
        "torch's default)",
    )
    p.add_argument(
        "--engine-args",
        type=_json_object,
        default={},
        help="JSON object of extra sglang.Engine arguments (win over the defaults)",
    )
    p.add_argument(
        "--text-layers",
        type=int,
        help="Llama 4 real scale: decoder layers kept (default 8 of 48, about 41 GB of weights)",
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
    for name in ("torch", "transformers", "sglang"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    from vlm_tutorial import __version__

    out["vlm_tutorial"] = __version__
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


def sglang_engine_args(
    family: str, kind: str, batch: int, radix: bool, user_args: dict[str, Any]
) -> dict[str, Any]:
    """SGLang engine arguments: kit defaults < ``VLM_TUTORIAL_ENGINE_ARGS`` < ``--engine-args`` < the benchmark's.

    The benchmark always sets ``disable_radix_cache`` (off unless the reuse
    case asks for it), decode CUDA graphs up to the batch size unless CUDA
    graphs are disabled, and ``load_format="dummy"`` for a real-scale folder.

    Example:
        >>> args = sglang_engine_args("qwen2_5_vl", "tiny", 8, False, {}) # doctest: +SKIP
        >>> args["disable_radix_cache"], args["cuda_graph_max_bs_decode"]  # doctest: +SKIP
        (True, 8)
    """
    from vlm_tutorial.settings import machine_engine_args

    args: dict[str, Any] = dict(SGLANG_DEFAULTS)
    args["mem_fraction_static"] = 0.8 if family == "llama4" and kind != "tiny" else 0.6
    if family == "llama4" and kind != "tiny":
        args["context_length"] = 32768
    args.update(machine_engine_args())
    args.update(user_args)
    args["disable_radix_cache"] = not radix
    if not args.get("disable_cuda_graph"):
        args.setdefault("cuda_graph_max_bs_decode", max(int(batch), 1))
        args.setdefault("disable_prefill_cuda_graph", True)
    if kind == "realscale-dummy":
        args["load_format"] = "dummy"
    return args


# --------------------------------------------------------------------------- settings


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Fill in every default that depends on the backend, the model scale and ``--quick``.

    Example:
        >>> resolve(build_parser().parse_args(["--quick", "--backend", "transformers"]))["repeats"]  # doctest: +SKIP
        2
    """
    from vlm_tutorial.settings import pick_backend

    family = get_family(args.family).name
    cases = args.cases or list(ENGINE_CASES)
    backend = args.backend
    if backend == "auto":
        backend = "transformers" if args.quick else pick_backend()[0]
    engine_cases = [c for c in cases if c in ENGINE_CASES]

    model: Path | None = Path(args.model).resolve() if args.model else None
    if engine_cases and model is None:
        if backend == "sglang" and not args.quick:
            from .realscale import realscale_folder

            model = realscale_folder(family, args.text_layers)
        else:
            from vlm_tutorial.offline.tiny import tiny_model_path

            model = tiny_model_path(family)
    kind = model_kind(model) if model is not None else "none"
    scale = "tiny" if kind == "tiny" else "real"
    quick = args.quick
    on_gpu = backend == "sglang"

    sides = args.sizes
    if args.image_tokens:
        if family != "qwen2_5_vl":
            raise SystemExit("--image-tokens is for Qwen2.5-VL; use --sizes for Llama 4")
        from .inputs import image_side_for_tokens

        sides = [image_side_for_tokens(t) for t in args.image_tokens]
    if sides is None:
        sides = QUICK_SIDES[family] if quick and scale == "tiny" else SIDES[(family, scale)]
    device = args.device or ("cuda" if on_gpu else "cpu")
    processor_device = args.processor_device or device
    if processor_device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(
                f"--processor-device {processor_device} (or --device) but torch sees no CUDA GPU "
                "here; use --processor-device cpu"
            )
    settings = {
        "family": family,
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
        "load_repeats": args.load_repeats or (1 if quick else 3),
        "load_device": args.load_device,
        "device": device,
        "dtype": args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"),
        "encoder_attn": args.encoder_attn,
        "encoder_compile": bool(args.encoder_compile),
        "processor_device": processor_device,
        "batch_prep": args.batch_prep,
        "threads": args.threads
        or (1 if scale == "tiny" and not device.startswith("cuda") else None),
        "engine_args_cli": args.engine_args,
        "text_layers": args.text_layers,
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


class _NoBar:
    """Stands in for a tqdm bar where tqdm is not installed."""

    def update(self, n: int = 1) -> None:
        return None

    def set_description(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        return None


@contextlib.contextmanager
def _progress(total: int, disable: bool, desc: str) -> Iterator[Any]:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        bar: Any = _NoBar()
    else:
        bar = tqdm(
            total=total, disable=disable, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True
        )
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
    encoder = load_vision_encoder(
        model,
        device=settings["device"],
        dtype=dtype,
        attn=settings["encoder_attn"],
        compile=settings["encoder_compile"],
    )
    if settings["device"].startswith("cuda"):

        def sync() -> None:
            torch.cuda.synchronize()
    else:

        def sync() -> None:
            return None

    return processor, encoder, sync


def processor_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """Processor arguments of the client's requests: ``device`` of the fast image processor.

    Example:
        >>> processor_kwargs({"processor_device": "cuda"}), processor_kwargs({"processor_device": "cpu"})
        ({'device': 'cuda'}, {})
    """
    device = settings.get("processor_device") or "cpu"
    return {} if device == "cpu" else {"device": device}


def _run_engine_cases(
    settings: dict[str, Any], bar: Any, records: list[dict[str, Any]]
) -> dict[str, Any]:
    from transformers.utils import logging as hf_logging

    from .engines import open_engine

    hf_logging.disable_progress_bar()  # no "Loading weights" bar inside the benchmark's own bar
    family = get_family(settings["family"])
    processor, encoder, sync = _client(settings)
    cases = settings["cases"]
    backend = settings["backend"]
    radix_settings = [False, True] if backend == "sglang" and "reuse" in cases else [None]
    engines_used: dict[str, Any] = {}
    if backend == "sglang":
        # Read by SGLang's processes at start: no multimodal embedding cache.
        os.environ["SGLANG_VLM_CACHE_SIZE_MB"] = "0"
    for radix in radix_settings:
        wanted = [
            c for c in cases if c in ENGINE_CASES and (radix in (None, False) or c == "reuse")
        ]
        if not wanted:
            continue
        if backend == "sglang":
            engine_args = sglang_engine_args(
                family.name,
                settings["model_kind"],
                settings["batch"],
                bool(radix),
                settings["engine_args_cli"],
            )
        else:
            engine_args = {}
        bar.set_description(f"{family.name}: starting the {backend} engine")
        start = time.perf_counter()
        with open_engine(settings["model"], backend=backend, **engine_args) as engine:
            engines_used[f"radix_{radix}"] = {
                "engine_args": {k: v for k, v in engine_args.items()},
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
                radix=radix,
                records=records,
                processor_kwargs=processor_kwargs(settings),
                together=settings["batch_prep"] == "together",
            )
            if "formats" in wanted:
                bar.set_description(f"{family.name}: (a) formats")
                run_formats(ctx, settings["sides"], sorted({1, settings["batch"]}))
            if "reuse" in wanted:
                bar.set_description(f"{family.name}: (b) reuse, radix {radix}")
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
    radix_n = 2 if settings["backend"] == "sglang" else 1
    total = planned_units(
        family,
        engine_cases,
        settings["sides"],
        sorted({1, settings["batch"]}),
        settings["reuse_k"],
        settings["repeats"],
        radix_n,
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
                load_path,
                repeats=settings["load_repeats"],
                progress=lambda: bar.update(1),
                device=settings["load_device"],
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
    if settings["threads"]:
        import torch

        torch.set_num_threads(settings["threads"])
    results = run(settings, argv, no_progress=args.no_progress)
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
    "SGLANG_DEFAULTS",
    "SIDES",
    "build_parser",
    "device_info",
    "main",
    "model_kind",
    "processor_kwargs",
    "resolve",
    "run",
    "sglang_engine_args",
    "versions",
]
