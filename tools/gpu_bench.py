"""The benchmark's GPU measurements, planned to fit device calls of at most 600 s each.

Steps run in order, each a child process under one deadline (``--timeout``); a step whose
estimated duration no longer fits is skipped and logged (a benchmark killed at the deadline would
write nothing), so the call always ends with its results copied to ``--out-dir``. Steps:

  warm-jit                   in the background: build flashinfer's norm module (nvcc, about a
                             minute on a fresh box), which SGLang's first request needs
  probe-encoder:FAMILY       python -m vlm_bench.probe --parts encoder: every client encoder
                             against transformers' tower, on the same real-scale weights
  probe-processor            python -m vlm_bench.probe --parts processor (both families)
  bench:FAMILY:CASES         python -m vlm_bench --backend sglang --cases CASES at real scale,
                             with the probe's fastest client encoder (the goal rows), --merge
                             into docs/benchmarks/<gpu>/FAMILY/
  bench:FAMILY:CASES:ENC     the same with client encoder ENC, into FAMILY-ENC/ (e.g.
                             ENC=transformers: the notebooks' path, beside the goal rows)

``--call 1`` to ``4`` are the planned calls (in that order: a probe picks the client encoder of
the later benchmarks); ``--steps`` gives any list. Results stay on the device between
calls only if the checkout keeps them: unpack each call's archive into the checkout first.

``--kit DIR`` installs the wheel kit of tools/make_gpu_kit (offline, into ``--kit-target``) and
exports the engine arguments only the trimmed kit needs, from tools/gpu_engine_args.json, as
VLM_TUTORIAL_ENGINE_ARGS (a value already in the environment wins). The memory fraction is not
among them: the benchmark derives it from the GPU and the model.

Examples:
  python tools/gpu_bench.py --kit .gpu-kit --call 1 --timeout 570 --out-dir "$OUT"
  python tools/gpu_bench.py --call 2 --dry-run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file (python tools/gpu_bench.py), not as python -m tools.gpu_bench
    sys.path.insert(0, str(REPO))
from tools.gpu_check import install_kit, kit_env  # noqa: E402

BUILD = REPO / "build" / "gpu"
DEFAULT_KIT_TARGET = Path("/tmp/vlm-gpu-kit")
FAMILIES = ("qwen2_5_vl", "llama4")
BENCH_CASES = ("formats", "reuse", "limit")
#: The planned device calls, each within 570 s once the kit is installed (warm-jit goes first).
CALLS: dict[str, list[str]] = {
    "1": ["probe-encoder:qwen2_5_vl", "bench:qwen2_5_vl:formats,limit", "probe-encoder:llama4"],
    "2": ["bench:llama4:formats,limit", "bench:qwen2_5_vl:formats,limit:transformers"],
    "3": ["bench:qwen2_5_vl:reuse", "bench:llama4:reuse"],
    "4": ["bench:llama4:formats,limit:transformers", "probe-processor"],
}

#: Seconds each step is expected to take (H200 run of 2026-12-01; reuse starts three engines,
#: one per SGLang cache setting); a bench step with a named client encoder takes 30 s more.
ESTIMATES: dict[str, float] = {
    "probe-encoder:qwen2_5_vl": 165,
    "probe-encoder:llama4": 100,
    "probe-processor": 95,
    "bench:qwen2_5_vl:formats,limit": 205,
    "bench:llama4:formats,limit": 220,
    "bench:qwen2_5_vl:reuse": 250,
    "bench:llama4:reuse": 290,
}
DEFAULT_ESTIMATE = 200.0

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

GPU_NAME = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"


def log(message: str) -> None:
    print(f"[gpu-bench {dt.datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def slug(name: str) -> str:
    """The benchmark's folder name for a device name (as ``vlm_bench.cli.device_info``).

    Example:
        >>> slug("NVIDIA H100 80GB HBM3")
        'nvidia-h100-80gb-hbm3'
    """
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def parse_step(step: str) -> tuple[str, list[str]]:
    """``("bench", ["llama4", "formats,limit"])`` for ``bench:llama4:formats,limit``; checks names.

    Example:
        >>> parse_step("bench:qwen2_5_vl:reuse:transformers")
        ('bench', ['qwen2_5_vl', 'reuse', 'transformers'])
    """
    kind, *rest = step.split(":")
    valid = {
        "warm-jit": not rest,
        "probe-processor": not rest,
        "probe-encoder": len(rest) == 1 and rest[0] in FAMILIES,
        # ENCODER: the benchmark checks it
        "bench": len(rest) in (2, 3)
        and rest[0] in FAMILIES
        and all(c in BENCH_CASES for c in rest[1].split(",")),
    }
    if not valid.get(kind):
        raise SystemExit(
            f"unknown step {step!r}; use warm-jit, probe-encoder:FAMILY, probe-processor or "
            f"bench:FAMILY:CASES[:ENCODER], with FAMILY in {FAMILIES} and CASES from "
            f"{','.join(BENCH_CASES)}"
        )
    return kind, rest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docs)."""
    head, examples = (__doc__ or "").split("\n\nExamples:\n", 1)
    parser = argparse.ArgumentParser(
        prog="python tools/gpu_bench.py",
        description=head,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + examples,
    )
    parser.add_argument("--call", choices=sorted(CALLS), default="1", help="the planned call")
    parser.add_argument("--steps", nargs="+", metavar="STEP", help="these steps instead")
    parser.add_argument("--kit", type=Path, metavar="DIR", help="install this wheel kit first")
    parser.add_argument(
        "--kit-target",
        type=Path,
        default=DEFAULT_KIT_TARGET,
        help=f"where --kit installs (default {DEFAULT_KIT_TARGET})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=570,
        help="seconds for every step together (default 570, for a 600 s device call)",
    )
    parser.add_argument("--out-dir", type=Path, help="copy the results and the log here ($OUT)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    args.steps = args.steps or ["warm-jit", *CALLS[args.call]]
    for step in args.steps:
        parse_step(step)
    return args


def build_env(kit_target: Path | None) -> dict[str, str]:
    """The children's environment: the kit on the path and its engine arguments, if a kit."""
    env = kit_env(dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1"), kit_target)
    env.setdefault("VLM_TUTORIAL_CACHE", "/tmp/vlm-tutorial-cache")
    return env


def estimate(step: str) -> float:
    """Expected seconds of ``step`` (see :data:`ESTIMATES`).

    Example:
        >>> estimate("bench:qwen2_5_vl:formats,limit:transformers")
        235
    """
    base = ESTIMATES.get(":".join(step.split(":")[:3]), DEFAULT_ESTIMATE)
    return base + (30 if step.count(":") == 3 else 0)


def bench_out(device_slug: str, family: str, encoder: str | None) -> str:
    """Where a bench step writes: ``docs/benchmarks/<gpu>/FAMILY[-ENCODER]``.

    Example:
        >>> bench_out("nvidia-h100-80gb-hbm3", "qwen2_5_vl", "transformers")
        'docs/benchmarks/nvidia-h100-80gb-hbm3/qwen2_5_vl-transformers'
    """
    return f"docs/benchmarks/{device_slug}/{family}" + (f"-{encoder}" if encoder else "")


def step_command(step: str, python: str, device_slug: str, best: dict[str, str]) -> list[str]:
    """The child command of ``step`` (not warm-jit, which runs in the background).

    ``best``: the probe's fastest client encoder per family, for the goal rows.
    """
    kind, rest = parse_step(step)
    probe = [
        python,
        "-m",
        "vlm_bench.probe",
        "--out",
        f"docs/benchmarks/{device_slug}/client-probe",
    ]
    if kind == "probe-encoder":
        return [*probe, "--parts", "encoder", "--families", rest[0], "--repeats", "5",
                "--warmup", "1", "--cell-seconds", "3", "--merge"]  # fmt: skip
    if kind == "probe-processor":
        return [*probe, "--parts", "processor", "--families", ",".join(FAMILIES),
                "--busy", "0,2", "--repeats", "3", "--merge"]  # fmt: skip
    family, cases, *encoder = rest
    chosen = encoder[0] if encoder else best.get(family)
    return [
        python, "-m", "vlm_bench", "--backend", "sglang", "--family", family, "--cases", cases,
        *BENCH_ARGS, *(["--client-encoder", chosen] if chosen else []),
        "--out", bench_out(device_slug, family, encoder[0] if encoder else None), "--merge",
    ]  # fmt: skip


def best_encoder(python: str, env: dict[str, str], device_slug: str, family: str) -> str | None:
    """The probe's fastest client encoder within rounding (None without a probe)."""
    probe = REPO / "docs" / "benchmarks" / device_slug / "client-probe" / "probe.json"
    if not probe.is_file():
        return None
    cmd = [python, "-m", "vlm_bench.probe", "--best", str(probe), "--families", family]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    words = proc.stdout.split()
    if proc.returncode != 0 or words[:1] != ["--client-encoder"]:
        log(f"no encoder choice from {probe}: {proc.stderr.strip()[-300:]}")
        return None
    return words[1]


def run_step(cmd: list[str], env: dict[str, str], log_file: Any, deadline: float) -> int:
    """Run ``cmd``, its output to stdout and ``log_file``; killed (rc 124) at the deadline."""
    log(f"$ {shlex.join(cmd)}")
    log_file.write(f"\n$ {shlex.join(cmd)}\n")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace", start_new_session=True,
    )  # fmt: skip
    # The step and every process it started (SGLang's scheduler, detokenizer) form one group.
    kill = threading.Timer(deadline - time.monotonic(), os.killpg, (proc.pid, signal.SIGKILL))
    kill.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        log_file.write(line)
    log_file.flush()
    rc = proc.wait()
    kill.cancel()
    return 124 if time.monotonic() >= deadline else rc


def copy_out(out_dir: Path, device_slug: str, files: list[Path]) -> Path | None:
    """Archive ``docs/benchmarks/<gpu>/`` into ``out_dir``, beside ``files``.

    A device call brings back few files, none deep: the folder goes as
    ``benchmarks-<gpu>.tar.gz`` with paths relative to the repository (unpack it
    in the checkout's root).
    """
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


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """What ``--dry-run`` prints: the steps, their commands and estimates, the engine arguments."""
    env = build_env(args.kit_target if args.kit else None)
    steps = [s for s in args.steps if s != "warm-jit"]
    return {
        "steps": [
            {
                "step": s,
                "estimate_s": estimate(s),
                "command": shlex.join(step_command(s, "python", "<gpu>", {})),
            }
            for s in steps
        ],
        "timeout_s": args.timeout,
        "engine_args_env": env.get("VLM_TUTORIAL_ENGINE_ARGS"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        print(json.dumps(plan(args), indent=2))
        return 0
    deadline = time.monotonic() + args.timeout
    python = sys.executable
    BUILD.mkdir(parents=True, exist_ok=True)
    log_path, summary_path, warm_log = (
        BUILD / "gpu-bench.log",
        BUILD / "gpu-bench.json",
        BUILD / "warm-jit.log",
    )
    if args.kit:
        install_kit(args.kit.resolve(), args.kit_target, python)
    env = build_env(args.kit_target if args.kit else None)
    name = subprocess.run(
        [python, "-c", GPU_NAME], env=env, capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    if not name:
        log("no CUDA GPU is visible to torch: nothing to measure")
        return 2
    device_slug = slug(name)
    log(f"GPU {name}; engine arguments {env.get('VLM_TUTORIAL_ENGINE_ARGS')}")
    summary: dict[str, Any] = {
        "command": shlex.join(["python", "tools/gpu_bench.py", *sys.argv[1:]]),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gpu": name,
        "engine_args_env": env.get("VLM_TUTORIAL_ENGINE_ARGS"),
        "steps": [],
    }
    warm: subprocess.Popen[bytes] | None = None
    best: dict[str, str] = {}
    failures = []
    with log_path.open("w") as log_file:
        try:
            for step in args.steps:
                kind, rest = parse_step(step)
                entry: dict[str, Any] = {"step": step}
                summary["steps"].append(entry)
                if kind == "warm-jit":
                    with warm_log.open("w") as out:
                        warm = subprocess.Popen(
                            [python, "-c", WARM_JIT], cwd=REPO, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True,
                        )  # fmt: skip
                    continue
                left, expected = deadline - time.monotonic(), estimate(step)
                if left < expected:  # a step killed at the deadline would write nothing
                    entry["skipped"] = f"{left:.0f} s left, estimate {expected:.0f} s"
                    log(f"{step}: skipped ({entry['skipped']})")
                    continue
                if kind == "bench" and rest[0] not in best:
                    found = best_encoder(python, env, device_slug, rest[0])
                    if found:
                        best[rest[0]] = found
                    log(f"{rest[0]} client encoder for the goal rows: {found or 'the default'}")
                if kind == "bench" and rest[2:] and rest[2] == best.get(rest[0]):
                    entry["skipped"] = "the goal rows already use this client encoder"
                    log(f"{step}: skipped ({entry['skipped']})")
                    continue
                cmd = step_command(step, python, device_slug, best)
                start = time.perf_counter()
                rc = run_step(cmd, env, log_file, deadline)
                seconds = round(time.perf_counter() - start, 1)
                entry.update(command=shlex.join(cmd), rc=rc, seconds=seconds)
                log(f"{step}: rc {rc} in {entry['seconds']:.0f} s")
                if rc != 0:
                    failures.append(step)
                summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        finally:
            if warm is not None:
                if warm.poll() is None:
                    warm.kill()
                warm.wait()
                summary["warm_jit"] = {"rc": warm.returncode, "log": warm_log.read_text()[-2000:]}
            summary["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            summary_path.write_text(json.dumps(summary, indent=2) + "\n")
            if args.out_dir:
                copy_out(args.out_dir, device_slug, [log_path, summary_path, warm_log])
    log("done: " + ("every step ran" if not failures else "failed: " + ", ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
