#!/bin/sh
# A Python 3.10+ script; this preamble lets `bash tools/gpu_bench.py`, `sh ...`, `python3 ...`
# and `./tools/gpu_bench.py` all run it ($PYTHON picks the interpreter, default python3).
# fmt: off
"true" '''\'
exec "${PYTHON:-python3}" "$0" "$@"
'''
# fmt: on

from __future__ import annotations

import argparse
import datetime as dt
import importlib.machinery
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HELP = """gpu-bench: the benchmark's GPU measurements in one device call of at most 600 s.

Steps run in order, each a child process under one deadline (--timeout); a step whose estimated
duration no longer fits is skipped and logged (a benchmark killed at the deadline would write
nothing), so the call always ends with its results copied to --out-dir. Steps:

  warm-jit                  in the background: build flashinfer's norm module (nvcc, about a
                            minute on a fresh box), which SGLang's first request needs
  probe-encoder:FAMILY      python -m vlm_bench.probe --parts encoder (encoder variants
                            against transformers' tower, same random real-scale weights)
  probe-processor           python -m vlm_bench.probe --parts processor (both families;
                            CPU and GPU; idle and beside busy processes); waits for warm-jit
  bench:FAMILY:CASES        python -m vlm_bench --backend sglang --cases CASES at real
                            scale, --merge into docs/benchmarks/<gpu>/FAMILY/; Qwen2.5-VL's client
                            encoder is the probe's fastest variant within rounding
  test-tower                pytest -m gpu tests/gpu/test_fast_tower_on_gpu.py (every fast-tower variant
                            against transformers' float32 tower at bfloat16 rounding)

--call 1 (the default) and --call 2 are the two planned calls; --steps gives any list.

The kit (--kit) is installed and its engine arguments exported as tools/gpu_check.py does
(tools/gpu_engine_args.json, overridden by VLM_TUTORIAL_ENGINE_ARGS from the environment).

Examples:
  VLM_TUTORIAL_ENGINE_ARGS='{"disable_cuda_graph": false}' \\
      tools/gpu_bench.py --kit .gpu-kit --call 1 --timeout 570 --out-dir "$OUT"
  tools/gpu_bench.py --kit .gpu-kit --call 2 --dry-run
"""

REPO = Path(__file__).resolve().parent.parent
GPU_CHECK = REPO / "scripts" / "gpu-check"
BUILD = REPO / "build" / "gpu"
FAMILIES = ("qwen2_5_vl", "llama4")
BENCH_CASES = ("formats", "reuse", "limit")

#: The two planned device calls; call 1 holds what the issue's goals need first.
CALLS: dict[str, list[str]] = {
    "1": [
        "warm-jit",
        "probe-encoder:qwen2_5_vl",
        "probe-processor",
        "bench:qwen2_5_vl:formats,limit",
        "bench:llama4:formats,limit",
    ],
    "2": [
        "warm-jit",
        "bench:qwen2_5_vl:reuse",
        "bench:llama4:reuse",
        "probe-encoder:llama4",
        "test-tower",
    ],
}

#: Seconds each step is expected to take on an H200 (from the 2026-12-01 run: engine start about
#: 39 s, first request on a fresh box about 98 s with the flashinfer build; see docs/benchmarks).
ESTIMATES: dict[str, float] = {
    "probe-encoder:qwen2_5_vl": 140,
    "probe-encoder:llama4": 100,
    "probe-processor": 50,
    "bench:qwen2_5_vl:formats,limit": 170,
    "bench:llama4:formats,limit": 190,
    "bench:qwen2_5_vl:reuse": 160,
    "bench:llama4:reuse": 190,
    "test-tower": 90,
}
DEFAULT_ESTIMATE = 120.0

#: The benchmark's settings in these runs: medians of 3 repeats after one warm-up run.
BENCH_ARGS = ["--repeats", "3", "--warmup", "1", "--no-progress"]

WARM_JIT = r"""
import time, torch
start = time.perf_counter()
x = torch.randn(8, 2048, device="cuda", dtype=torch.bfloat16)
w = torch.ones(2048, device="cuda", dtype=torch.bfloat16)
try:
    from sgl_kernel import fused_add_rmsnorm, rmsnorm
except ImportError:
    from flashinfer.norm import fused_add_rmsnorm, rmsnorm
rmsnorm(x, w, 1e-6)
fused_add_rmsnorm(x, x.clone(), w, 1e-6)
torch.cuda.synchronize()
print(f"warm-jit: flashinfer norm ready in {time.perf_counter() - start:.1f} s", flush=True)
"""


def log(message: str) -> None:
    print(f"[gpu-bench {dt.datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def load_gpu_check() -> ModuleType:
    """tools/gpu_check.py as a module: its kit installer, environment and runner."""
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(GPU_CHECK))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    loader.exec_module(module)
    return module


def slug(name: str) -> str:
    """The benchmark's folder name for a device name (as ``vlm_bench.cli.device_info``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def parse_step(step: str) -> tuple[str, list[str]]:
    """``("bench", ["llama4", "formats,limit"])`` for ``bench:llama4:formats,limit``; checks names."""
    kind, *rest = step.split(":")
    if kind in ("warm-jit", "probe-processor", "test-tower") and not rest:
        return kind, []
    if kind == "probe-encoder" and len(rest) == 1 and rest[0] in FAMILIES:
        return kind, rest
    if kind == "bench" and len(rest) == 2 and rest[0] in FAMILIES:
        cases = rest[1].split(",")
        if cases and all(c in BENCH_CASES for c in cases):
            return kind, rest
    raise SystemExit(
        f"unknown step {step!r}; use warm-jit, probe-encoder:FAMILY, probe-processor, "
        f"bench:FAMILY:CASES (CASES from {','.join(BENCH_CASES)}) or test-tower, with FAMILY in "
        f"{FAMILIES}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/gpu_bench.py",
        description="The benchmark's GPU measurements in one device call.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=HELP.split("\n\n", 1)[1],
    )
    parser.add_argument("--call", choices=sorted(CALLS), default="1", help="the planned call")
    parser.add_argument("--steps", nargs="+", metavar="STEP", help="these steps instead")
    parser.add_argument("--kit", metavar="DIR", default=os.environ.get("VLM_TUTORIAL_GPU_KIT"))
    parser.add_argument(
        "--timeout",
        type=float,
        default=570,
        help="seconds for every step together (default 570, for a 600 s device call)",
    )
    parser.add_argument("--out-dir", type=Path, help="copy the results and the log here ($OUT)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    args.steps = args.steps or CALLS[args.call]
    for step in args.steps:
        parse_step(step)
    return args


def step_command(
    step: str, python: str, device_slug: str, encoder_options: dict[str, list[str]]
) -> list[str]:
    """The child command of ``step`` (not for warm-jit, which runs in the background)."""
    kind, rest = parse_step(step)
    results = f"docs/benchmarks/{device_slug}"
    if kind == "probe-encoder":
        return [
            python, "-m", "vlm_bench.probe", "--parts", "encoder",
            "--families", rest[0], "--repeats", "5", "--warmup", "1", "--cell-seconds", "3",
            "--out", f"{results}/client-probe", "--merge",
        ]  # fmt: skip
    if kind == "probe-processor":
        return [
            python, "-m", "vlm_bench.probe", "--parts", "processor",
            "--families", ",".join(FAMILIES), "--busy", "0,2", "--repeats", "3",
            "--out", f"{results}/client-probe", "--merge",
        ]  # fmt: skip
    if kind == "bench":
        family, cases = rest
        return [
            python, "-m", "vlm_bench", "--backend", "sglang", "--family", family,
            "--cases", cases, *BENCH_ARGS, *encoder_options.get(family, []),
            "--out", f"{results}/{family}", "--merge",
        ]  # fmt: skip
    if kind == "test-tower":
        return [
            python, "-m", "pytest", "-m", "gpu", "tests/gpu/test_fast_tower_on_gpu.py", "-v", "-rA",
            "-p", "no:cacheprovider", f"--junitxml={BUILD / 'tower-junit.xml'}",
        ]  # fmt: skip
    raise ValueError(step)


def best_encoder_options(python: str, env: dict[str, str], device_slug: str, family: str) -> list[str]:
    """The probe's fastest encoder within rounding, as benchmark options ([] without a probe)."""
    probe = REPO / "docs" / "benchmarks" / device_slug / "client-probe" / "probe.json"
    if not probe.is_file():
        return []
    cmd = [python, "-m", "vlm_bench.probe", "--best", str(probe), "--families", family]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        log(f"no encoder choice from {probe}: {proc.stderr.strip()[-300:]}")
        return []
    return shlex.split(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else []


def copy_out(out_dir: Path, device_slug: str, files: list[Path]) -> Path | None:
    """Put the results folder into one archive in ``out_dir``, beside ``files``.

    A device call brings back at most 8 files, none deeper than two folders: the folder
    ``docs/benchmarks/<gpu>/<family>/`` goes as ``benchmarks-<gpu>.tar.gz``, with paths
    relative to the repository (unpack it in the checkout's root).
    """
    import tarfile

    out_dir.mkdir(parents=True, exist_ok=True)
    results = REPO / "docs" / "benchmarks" / device_slug
    archive = None
    if results.is_dir():
        archive = out_dir / f"benchmarks-{device_slug}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(results, arcname=str(results.relative_to(REPO)))
    for path in files:
        if path.is_file():
            shutil.copy2(path, out_dir / path.name)
    log(f"archived docs/benchmarks/{device_slug} and copied {len(files)} files to {out_dir}")
    return archive


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = sys.executable
    os.environ.setdefault("VLM_TUTORIAL_CACHE", "/tmp/vlm-tutorial-cache")
    gpu_check = load_gpu_check()
    check_args = argparse.Namespace(real=False, parity_variants=False)
    if args.dry_run:
        env = gpu_check.build_env(check_args, {"target": "/tmp/vlm-gpu-kit"} if args.kit else None)
        plan = {
            "steps": [
                {
                    "step": s,
                    "estimate_s": 0 if s == "warm-jit" else ESTIMATES.get(s, DEFAULT_ESTIMATE),
                    "command": None
                    if s == "warm-jit"
                    else shlex.join(step_command(s, "python", "<gpu>", {})),
                }
                for s in args.steps
            ],
            "estimate_s": sum(ESTIMATES.get(s, DEFAULT_ESTIMATE) for s in args.steps if s != "warm-jit"),
            "timeout_s": args.timeout,
            "engine_args_env": env.get("VLM_TUTORIAL_ENGINE_ARGS"),
            "cache": env.get("VLM_TUTORIAL_CACHE"),
        }
        print(json.dumps(plan, indent=2))
        return 0

    deadline = time.monotonic() + args.timeout
    BUILD.mkdir(parents=True, exist_ok=True)
    log_path = BUILD / "gpu-bench.log"
    log_path.unlink(missing_ok=True)
    summary_path = BUILD / "gpu-bench.json"
    kit_info = gpu_check.install_kit(Path(args.kit).resolve(), python) if args.kit else None
    env = gpu_check.build_env(check_args, kit_info)
    environment = gpu_check.probe_environment(python, env)
    gpu_name = (environment.get("gpu") or {}).get("name")
    if not environment.get("cuda_available") or not gpu_name:
        log("no CUDA GPU is visible to torch: nothing to measure")
        return 2
    device_slug = slug(gpu_name)
    log(f"GPU {gpu_name}; engine arguments {env.get('VLM_TUTORIAL_ENGINE_ARGS')}")
    runner = gpu_check.Runner(env, log_path, deadline)
    summary: dict[str, Any] = {
        "command": shlex.join(["tools/gpu_bench.py", *(sys.argv[1:] if argv is None else argv)]),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment,
        "steps": [],
    }
    warm: subprocess.Popen[str] | None = None
    warm_log = BUILD / "warm-jit.log"
    encoder_options: dict[str, list[str]] = {}
    failures = []
    try:
        for step in args.steps:
            kind, rest = parse_step(step)
            entry: dict[str, Any] = {"step": step}
            summary["steps"].append(entry)
            if kind == "warm-jit":
                with warm_log.open("w") as out:
                    warm = subprocess.Popen(
                        [python, "-c", WARM_JIT], cwd=REPO, env=env, stdout=out,
                        stderr=subprocess.STDOUT, text=True, start_new_session=True,
                    )  # fmt: skip
                entry["started_in_background"] = True
                log("warm-jit: started in the background")
                continue
            if kind == "probe-processor" and warm is not None and warm.poll() is None:
                log("probe-processor: waiting (at most 90 s) for warm-jit to leave the CPU")
                try:
                    warm.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    log("warm-jit still running: measuring beside it")
            left = deadline - time.monotonic()
            estimate = ESTIMATES.get(step, DEFAULT_ESTIMATE)
            if left < estimate:  # a step killed at the deadline writes nothing: skip it whole
                entry["skipped"] = f"{left:.0f} s left, estimate {estimate:.0f} s"
                log(f"{step}: skipped ({entry['skipped']})")
                continue
            if kind == "bench" and rest[0] == "qwen2_5_vl" and "qwen2_5_vl" not in encoder_options:
                encoder_options["qwen2_5_vl"] = best_encoder_options(
                    python, env, device_slug, "qwen2_5_vl"
                )
                log(f"qwen2_5_vl client encoder: {encoder_options['qwen2_5_vl'] or 'default'}")
            cmd = step_command(step, python, device_slug, encoder_options)
            extra = {}
            if kind == "test-tower":
                extra["VLM_TUTORIAL_GPU_RECORD"] = str(BUILD / "tower-record.json")
            rc, seconds = runner.run(cmd, extra_env=extra)
            entry.update(command=shlex.join(cmd), rc=rc, seconds=round(seconds, 1))
            log(f"{step}: rc {rc} in {seconds:.0f} s")
            if rc != 0:
                failures.append(step)
            summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    finally:
        if warm is not None:
            if warm.poll() is None:
                try:
                    warm.wait(timeout=max(1.0, min(30.0, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    warm.kill()
                    warm.wait(timeout=10)
            summary["warm_jit"] = {"rc": warm.returncode, "log": warm_log.read_text()[-2000:]}
        summary["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        if args.out_dir:
            files = [log_path, summary_path, warm_log]
            files += [BUILD / "tower-junit.xml", BUILD / "tower-record.json"]
            copy_out(args.out_dir, device_slug, files)
    log("done: " + ("every step ran" if not failures else "failed: " + ", ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
