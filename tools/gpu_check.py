#!/bin/sh
# A Python 3.10+ script; this preamble lets `bash tools/gpu_check.py`, `sh ...`, `python3 ...`
# and `./tools/gpu_check.py` all run it ($PYTHON picks the interpreter, default python3).
# fmt: off
"true" '''\'
exec "${PYTHON:-python3}" "$0" "$@"
'''
# fmt: on

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HELP = """gpu-check: the one GPU entry point. Runs the GPU tests and the notebooks on SGLang, records results.

Stages (``--stage``, default ``all``), each logged with its wall time:

  tests      build the tiny models, then ``pytest -m gpu tests/gpu`` (formats, batches,
             multi-image, reference parity, engine shutdown, Llama 4 tensor parallelism)
  notebooks  execute every notebook with papermill on SGLang (``python -m tools.run_notebooks``
             with VLM_TUTORIAL_BACKEND=sglang and the tiny models), copy the executed notebooks,
             stripped of large outputs, to docs/gpu/
  nbval      run the notebooks again through ``pytest --nbval-lax``
  all        the three above, in that order, into a fresh results file

Every stage merges what it measured into docs/gpu/results.json (written only by this script) and
re-renders docs/gpu/results.md, so stages can run in separate calls of at most 600 s each.

``--kit DIR`` installs the wheel kit of ``tools/make_gpu_kit.sh`` (offline, into /tmp) and
exports the engine arguments only the trimmed kit needs, from tools/gpu_engine_args.json, as
VLM_TUTORIAL_ENGINE_ARGS. Without ``--kit`` SGLang runs with its own defaults (a full install, e.g.
the conda environment of environment.yml). ``--real`` (or VLM_TUTORIAL_GPU_REAL=1) uses the real
model ids instead of the tiny ones (needs the model hub, and four GPUs for Llama 4 Scout).

Examples:
  tools/gpu_check.py                                   # full install, tiny models, every stage
  tools/gpu_check.py --kit .gpu-kit --stage tests --out-dir out --timeout 540
  tools/gpu_check.py --real --stage notebooks
"""

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "gpu" / "results.json"
BUILD = REPO / "build" / "gpu"
ENGINE_ARGS_FILE = REPO / "scripts" / "gpu_engine_args.json"
RENDERER = REPO / "scripts" / "render_gpu_results.py"
STAGES = ("tests", "notebooks", "nbval")
TINY_MODELS = (("qwen2_5_vl", "tiny"), ("llama4", "tiny"), ("llama4", "tp4"))
VERSION_PACKAGES = (
    "sglang",
    "sglang-kernel",
    "flashinfer-python",
    "torch",
    "transformers",
    "tokenizers",
    "triton",
    "xgrammar",
    "papermill",
    "nbval",
    "nbclient",
    "ipykernel",
    "pytest",
)
# Never use NVLink multicast on a shared multi-GPU host.
NCCL_SAFE_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}
KEEP_IMAGES = 1  # base64 images kept per executed notebook (the example image)
MAX_TEXT_CHARS = 20_000  # per text output in the copies under docs/gpu/


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[gpu-check {stamp}] {message}", flush=True)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/gpu_check.py",
        description="Run the GPU tests and the notebooks on SGLang; record docs/gpu/results.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=HELP.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--stage",
        choices=(*STAGES, "all"),
        default="all",
        help="what to run (default: all); results accumulate across stages",
    )
    parser.add_argument(
        "--kit",
        metavar="DIR",
        default=os.environ.get("VLM_TUTORIAL_GPU_KIT"),
        help="install this wheel kit (tools/make_gpu_kit.sh) and use its engine "
        "arguments (env VLM_TUTORIAL_GPU_KIT)",
    )
    parser.add_argument(
        "--real",
        action="store_true",
        default=os.environ.get("VLM_TUTORIAL_GPU_REAL", "") not in ("", "0"),
        help="use the real model ids, not the tiny models (env VLM_TUTORIAL_GPU_REAL=1)",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"default: {RESULTS.relative_to(REPO)}"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start a new results file instead of adding to it (implied by --stage all)",
    )
    parser.add_argument(
        "--notebooks",
        nargs="+",
        metavar="NAME",
        help="only these notebooks (file names in notebooks/)",
    )
    parser.add_argument(
        "--pytest-args", default="", help='extra arguments for the tests stage, e.g. "-k qwen"'
    )
    parser.add_argument(
        "--test-files",
        nargs="+",
        metavar="FILE",
        help="run only these GPU test files in the tests stage, and merge them into the record "
        "as one part (several calls on one box then make one record)",
    )
    parser.add_argument(
        "--parity-variants",
        action="store_true",
        help="also build Llama 4 variants to locate the SGLang/reference difference",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("VLM_TUTORIAL_GPU_TIMEOUT", "0") or 0),
        help="stop a stage after this many seconds and still write the results "
        "(0: no limit; for a 600 s device call use about 540)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="also copy results.json, results.md, the executed notebooks and the "
        "log here (e.g. $OUT on a device call)",
    )
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="check this script's plumbing on a machine without a GPU: notebooks on the "
        "transformers reference engine, GPU tests skipped; results are marked mode=cpu-smoke "
        "(use with --results somewhere else than docs/gpu)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (stages, commands, environment) and exit",
    )
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- environment


def install_kit(kit: Path, python: str) -> dict[str, Any]:
    """Install the kit into $VLM_TUTORIAL_KIT_TARGET (default /tmp/vlm-gpu-kit) once per kit."""
    manifest = kit / "kit.json"
    if not manifest.is_file():
        raise SystemExit(
            f"--kit {kit}: no kit.json there; build the kit with tools/make_gpu_kit.sh {kit}"
        )
    target = Path(os.environ.get("VLM_TUTORIAL_KIT_TARGET", "/tmp/vlm-gpu-kit"))
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    stamp = target / "installed.stamp"
    info = json.loads(manifest.read_text())
    result = {
        "dir": str(kit),
        "target": str(target),
        "total_bytes": info.get("total_bytes"),
        "kit_hash": digest,
    }
    if stamp.is_file() and stamp.read_text().strip() == digest:
        log(f"kit already installed in {target}")
        result["install_s"] = 0.0
        return result
    start = time.perf_counter()
    shutil.rmtree(target, ignore_errors=True)
    pip = [
        python,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--disable-pip-version-check",
    ]
    for sub, dest in (("whl", "site"), ("whl-nb", "site"), ("whl-tf", "site_tf")):
        wheels = sorted(str(p) for p in (kit / sub).glob("*.whl"))
        if wheels:
            subprocess.run([*pip, "--target", str(target / dest), *wheels], check=True)
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", str(target)], check=False)
    stamp.write_text(digest + "\n")
    result["install_s"] = round(time.perf_counter() - start, 1)
    log(f"kit installed in {target} in {result['install_s']} s")
    return result


def build_env(args: argparse.Namespace, kit_info: dict[str, Any] | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO)]
    if kit_info is not None:
        target = Path(kit_info["target"])
        paths = [str(target / "site_tf"), str(target / "site"), str(REPO)]
        env["PATH"] = f"{target / 'site' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        engine_args = json.loads(ENGINE_ARGS_FILE.read_text())
        # Arguments already in the environment win over the kit's.
        if env.get("VLM_TUTORIAL_ENGINE_ARGS", "").strip():
            engine_args.update(json.loads(env["VLM_TUTORIAL_ENGINE_ARGS"]))
        env["VLM_TUTORIAL_ENGINE_ARGS"] = json.dumps(engine_args)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("VLM_TUTORIAL_CACHE", str(BUILD / "cache"))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name, value in NCCL_SAFE_ENV.items():
        env.setdefault(name, value)
    if args.real:
        env["VLM_TUTORIAL_GPU_REAL"] = "1"
        # tests/conftest.py defaults HF_HUB_OFFLINE to 1; the real models may need the hub.
        env.setdefault("HF_HUB_OFFLINE", "0")
    else:
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.pop("VLM_TUTORIAL_GPU_REAL", None)
    if args.parity_variants:
        env["VLM_TUTORIAL_GPU_PARITY_VARIANTS"] = "1"
    return env


PROBE = r"""
import importlib.metadata as md, json, platform, subprocess, sys
out = {"python": platform.python_version(), "executable": sys.executable, "versions": {}}
for name in sys.argv[1:]:
    try:
        out["versions"][name] = md.version(name)
    except md.PackageNotFoundError:
        out["versions"][name] = None
try:
    import torch
    out["cuda_available"] = torch.cuda.is_available()
    out["torch_cuda"] = torch.version.cuda
    out["gpu_count"] = torch.cuda.device_count()
    out["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
except Exception as exc:
    out["cuda_available"] = False
    out["torch_error"] = repr(exc)
try:
    q = "name,driver_version,memory.total"
    text = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30).stdout
    out["nvidia_smi"] = [dict(zip(q.split(","), (v.strip() for v in line.split(",")))) for line in text.strip().splitlines()]
except Exception as exc:
    out["nvidia_smi"] = repr(exc)
print(json.dumps(out))
"""


def probe_environment(python: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [python, "-c", PROBE, *VERSION_PACKAGES], env=env, capture_output=True, text=True, cwd=REPO
    )
    if proc.returncode != 0:
        return {"probe_error": proc.stderr[-2000:]}
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    smi = info.get("nvidia_smi")
    first = smi[0] if isinstance(smi, list) and smi else {}
    info["gpu"] = {
        "name": first.get("name") or (info.get("gpu_names") or [None])[0],
        "driver": first.get("driver_version"),
        "memory": first.get("memory.total"),
        "count": info.get("gpu_count"),
    }
    return info


# --------------------------------------------------------------------------- running


class Runner:
    """Runs child commands, streams their output to stdout and a log file, enforces a deadline."""

    def __init__(self, env: dict[str, str], log_path: Path, deadline: float | None) -> None:
        self.env = env
        self.log_path = log_path
        self.deadline = deadline
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_path.open("a", encoding="utf-8")

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def run(
        self,
        cmd: list[str],
        extra_env: dict[str, str] | None = None,
        drop_env: tuple[str, ...] = (),
    ) -> tuple[int, float]:
        env = dict(self.env, **(extra_env or {}))
        for name in drop_env:
            env.pop(name, None)
        remaining = self.remaining()
        if remaining is not None and remaining <= 5:
            log(f"skipped (time limit reached): {shlex.join(cmd)}")
            return 124, 0.0
        log(f"$ {shlex.join(cmd)}")
        self.log_file.write(f"\n$ {shlex.join(cmd)}\n")
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        pump = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        pump.start()
        try:
            proc.wait(timeout=None if remaining is None else max(remaining, 1))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            log("time limit reached: stopping the command and its processes")
            self._kill(proc)
            rc = 124
        pump.join(timeout=10)
        self.log_file.flush()
        return rc, time.perf_counter() - start

    def _pump(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            self.log_file.write(line)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=15)
                return
            except subprocess.TimeoutExpired:
                continue


# --------------------------------------------------------------------------- stages


TINY_BUILD = r"""
import json, sys, time
from vlm_tutorial.offline.tiny import tiny_model_path
out = {}
for spec in sys.argv[2:]:
    family, preset = spec.split(":")
    start = time.perf_counter()
    path = tiny_model_path(family, preset)
    out[spec] = {"path": str(path), "seconds": round(time.perf_counter() - start, 2)}
    print(f"tiny {spec}: {path} ({out[spec]['seconds']} s)", flush=True)
open(sys.argv[1], "w").write(json.dumps(out))
"""


def build_tiny_models(runner: Runner, python: str, results: dict[str, Any]) -> int:
    """Build (or reuse from $VLM_TUTORIAL_CACHE) the tiny checkpoints every stage uses."""
    marker = BUILD / "tiny_models.json"
    marker.unlink(missing_ok=True)
    rc, seconds = runner.run(
        [python, "-c", TINY_BUILD, str(marker), *(f"{f}:{p}" for f, p in TINY_MODELS)]
    )
    built = json.loads(marker.read_text()) if rc == 0 and marker.is_file() else {}
    results["build"] = {"tiny_models": built, "seconds": round(seconds, 2), "rc": rc}
    log(f"tiny models: rc {rc} in {seconds:.1f} s")
    return rc


def junit_cases(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", None
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = (
                    ("failed" if child.tag == "failure" else "error"),
                    child.get("message"),
                )
            elif child.tag == "skipped":
                outcome, message = "skipped", child.get("message")
        cases.append(
            {
                "name": f"{case.get('classname', '')}::{case.get('name', '')}",
                "file": case.get("file"),
                "outcome": outcome,
                "seconds": round(float(case.get("time") or 0), 3),
                "message": (message or "")[:500] or None,
            }
        )
    return cases


def summarize(cases: list[dict[str, Any]]) -> dict[str, int]:
    summary: dict[str, int] = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for case in cases:
        summary[case["outcome"]] = summary.get(case["outcome"], 0) + 1
    return summary


def gpu_test_files() -> list[str]:
    """Every test module of tests/gpu, repo-relative: what one complete record covers."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests" / "gpu").glob("test_*.py"))


def merge_records(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the ``gpu_record`` dicts of several pytest runs (later parts add keys).

    Example:
        >>> merge_records([{"a": {"x": 1}, "b": [1]}, {"a": {"y": 2}, "b": [2]}])
        {'a': {'x': 1, 'y': 2}, 'b': [1, 2]}
    """
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge_records([merged[key], value])
            elif isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = merged[key] + value
            else:
                merged[key] = value
    return merged


def stage_tests(
    runner: Runner, python: str, args: argparse.Namespace, results: dict[str, Any]
) -> int:
    """Run GPU test files (all of tests/gpu, or --test-files); merge the part into the record.

    Parts made by separate calls on one box add up to one record; ``complete`` says whether
    the parts together cover every test module of tests/gpu, with nothing deselected.
    """
    junit = BUILD / "tests-junit.xml"
    record = BUILD / "tests-record.json"
    for path in (junit, record):
        path.unlink(missing_ok=True)
    files = args.test_files or ["tests/gpu"]
    cmd = [
        python,
        "-m",
        "pytest",
        "-m",
        "gpu",
        *files,
        "-v",
        "-rA",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        *shlex.split(args.pytest_args),
    ]
    rc, seconds = runner.run(cmd, extra_env={"VLM_TUTORIAL_GPU_RECORD": str(record)})
    cases = junit_cases(junit)
    if rc == 0 and summarize(cases)["passed"] == 0 and not args.cpu_smoke:
        log("no GPU test passed (all skipped?): counting the stage as failed")
        rc = 1
    part = {
        "command": shlex.join(cmd),
        "rc": rc,
        "seconds": round(seconds, 1),
        "boot_id": boot_id(),
        "summary": summarize(cases),
        "cases": cases,
        "record": json.loads(record.read_text()) if record.is_file() else {},
    }
    key = " ".join(files)
    previous = results.get("tests", {}).get("parts", {}) if args.test_files else {}
    parts = {k: v for k, v in previous.items() if k != key}
    parts[key] = part
    covered = {
        f for k in parts for f in gpu_test_files() if any(f.startswith(x) for x in k.split())
    }
    all_cases = [c for p in parts.values() for c in p["cases"]]
    results["tests"] = {
        "command": " ; ".join(p["command"] for p in parts.values()),
        "rc": max(p["rc"] for p in parts.values()),
        "seconds": round(sum(p["seconds"] for p in parts.values()), 1),
        "summary": summarize(all_cases),
        "cases": all_cases,
        "record": merge_records([p["record"] for p in parts.values()]),
        "parts": parts,
        "boot_ids": sorted({p["boot_id"] for p in parts.values() if p.get("boot_id")}),
        "complete": covered == set(gpu_test_files()) and not args.pytest_args.strip(),
    }
    return rc


def notebook_list(args: argparse.Namespace) -> list[Path]:
    paths = sorted((REPO / "notebooks").glob("*.ipynb"))
    if args.notebooks:
        wanted = {Path(n).name for n in args.notebooks}
        missing = wanted - {p.name for p in paths}
        if missing:
            raise SystemExit(f"--notebooks: not in notebooks/: {sorted(missing)}")
        paths = [p for p in paths if p.name in wanted]
    return paths


def notebook_env(args: argparse.Namespace) -> tuple[dict[str, str], tuple[str, ...]]:
    extra = {"VLM_TUTORIAL_BACKEND": "transformers" if args.cpu_smoke else "sglang"}
    if args.real:
        return extra, ("VLM_TUTORIAL_MODEL_PATH",)
    extra["VLM_TUTORIAL_MODEL_PATH"] = "tiny"
    return extra, ()


def strip_notebook(
    nb: dict[str, Any], keep_images: int = KEEP_IMAGES, max_chars: int = MAX_TEXT_CHARS
) -> dict[str, Any]:
    """Drop base64 images after the first ``keep_images`` and shorten very long text outputs."""
    kept = 0
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data")
            if isinstance(data, dict):
                images = [k for k in data if k.startswith("image/")]
                if images:
                    if kept < keep_images:
                        kept += 1
                    else:
                        size = sum(
                            len("".join(data[k]) if isinstance(data[k], list) else data[k])
                            for k in images
                        )
                        for k in images:
                            del data[k]
                        data["text/plain"] = (
                            f"[image omitted from this copy: {size // 1024} KB of base64]"
                        )
                data.pop("application/vnd.jupyter.widget-view+json", None)
            for key in ("text",):
                if key in output:
                    text = "".join(output[key]) if isinstance(output[key], list) else output[key]
                    if len(text) > max_chars:
                        half = max_chars // 2
                        output[key] = (
                            text[:half] + f"\n[... {len(text) - max_chars} characters "
                            "omitted from this copy ...]\n" + text[-half:]
                        )
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def split_engine_log(nb: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Move every stderr stream output (SGLang's and transformers' logs) out of ``nb``.

    The notebooks teach through stdout; what SGLang's processes and the libraries write to
    stderr (RLIMIT notes, optional-import errors, MoE config warnings, loading bars) goes to the
    returned log text, cell by cell, for a file beside the executed copy.
    """
    lines: list[str] = []
    for index, cell in enumerate(nb.get("cells", [])):
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
                lines.append(f"--- cell {index} ---\n{text.rstrip()}\n")
            else:
                kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    return nb, "".join(lines)


def sanitize(value: Any, replacements: list[tuple[str, str]]) -> Any:
    """``value`` with machine paths made repo-relative or replaced by a name (for the record).

    Example:
        >>> sanitize({"p": "/repo/docs/x", "c": ["--out-dir /tmp/o"]}, [("/repo/", "")])
        {'p': 'docs/x', 'c': ['--out-dir /tmp/o']}
    """
    if isinstance(value, dict):
        return {k: sanitize(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize(v, replacements) for v in value]
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
    return value


def drop_out_dir(command: str) -> str:
    """A gpu-check command line without its ``--out-dir DIR`` (where the copies went is not part of the record).

    Example:
        >>> drop_out_dir("tools/gpu_check.py --stage tests --out-dir /tmp/out --timeout 540")
        'tools/gpu_check.py --stage tests --timeout 540'
    """
    words = shlex.split(command)
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word == "--out-dir":
            skip = True
            continue
        if word.startswith("--out-dir="):
            continue
        kept.append(word)
    return shlex.join(kept)


def boot_id() -> str | None:
    """This machine's boot id: two stages with the same one ran on one box, without a reboot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def stage_notebooks(
    runner: Runner, python: str, args: argparse.Namespace, results: dict[str, Any]
) -> int:
    out_dir = BUILD / "notebooks"
    extra, drop = notebook_env(args)
    section = results.setdefault("notebooks", {})
    worst = 0
    for path in notebook_list(args):
        summary_path = out_dir / f"{path.stem}.summary.json"
        summary_path.unlink(missing_ok=True)
        cmd = [
            python,
            "-m",
            "tools.run_notebooks",
            str(path.relative_to(REPO)),
            "--out",
            str(out_dir),
            "--summary",
            str(summary_path),
        ]
        rc, seconds = runner.run(cmd, extra_env=extra, drop_env=drop)
        entry: dict[str, Any] = {
            "rc": rc,
            "seconds": round(seconds, 1),
            "command": shlex.join(cmd),
            "env": extra,
        }
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            entry["runner_summary"] = summary
        executed = out_dir / path.name
        if rc == 0 and executed.is_file():
            nb = json.loads(executed.read_text())
            entry["metadata"] = nb.get("metadata", {}).get("vlm_tutorial")
            copies = args.results.parent
            copies.mkdir(parents=True, exist_ok=True)
            target = copies / path.name
            nb, engine_log = split_engine_log(strip_notebook(nb))
            target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            log_file = target.with_suffix(".engine.log")
            log_file.write_text(engine_log)
            entry["copied_to"] = os.path.relpath(target, REPO)
            entry["copy_bytes"] = target.stat().st_size
            entry["engine_log"] = os.path.relpath(log_file, REPO)
        section[path.name] = entry
        log(f"notebook {path.name}: rc {rc} in {seconds:.1f} s")
        worst = worst or rc
    return worst


def stage_nbval(
    runner: Runner, python: str, args: argparse.Namespace, results: dict[str, Any]
) -> int:
    junit = BUILD / "nbval-junit.xml"
    junit.unlink(missing_ok=True)
    extra, drop = notebook_env(args)
    paths = [str(p.relative_to(REPO)) for p in notebook_list(args)]
    cmd = [
        python,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-current-env",
        *paths,
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        "-q",
    ]
    rc, seconds = runner.run(cmd, extra_env=extra, drop_env=drop)
    cases = junit_cases(junit)
    per_notebook: dict[str, dict[str, Any]] = {}
    names = [Path(p).name for p in paths]
    for case in cases:
        where = f"{case.get('file') or ''} {case['name']}"
        name = next((n for n in names if n in where), case["name"].split("::")[0])
        entry = per_notebook.setdefault(name, {"cells": 0, "failed": 0, "seconds": 0.0})
        entry["cells"] += 1
        entry["failed"] += case["outcome"] in ("failed", "error")
        entry["seconds"] = round(entry["seconds"] + case["seconds"], 2)
    results["nbval"] = {
        "command": shlex.join(cmd),
        "rc": rc,
        "seconds": round(seconds, 1),
        "summary": summarize(cases),
        "per_notebook": per_notebook,
    }
    return rc


# --------------------------------------------------------------------------- results


def load_results(path: Path, fresh: bool) -> dict[str, Any]:
    if path.is_file() and not fresh:
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            log(f"{path} is not valid JSON: starting a new one")
    return {"schema": 1, "generated_by": "tools/gpu_check.py", "stages": {}, "commands": {}}


def machine_paths(python: str, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Replacements that keep the record free of this machine's folders (longest first)."""
    env = env or {}
    pairs = [(f"{REPO}/", ""), (str(REPO), ".")]
    cache = env.get("VLM_TUTORIAL_CACHE")
    if cache:
        pairs.append((str(Path(cache)), "$VLM_TUTORIAL_CACHE"))
    kit_target = env.get("VLM_TUTORIAL_KIT_TARGET", "/tmp/vlm-gpu-kit")
    pairs.append((kit_target, "$VLM_TUTORIAL_KIT_TARGET"))
    pairs.append((python, "python3"))
    pairs.append((str(Path.home()), "~"))
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def write_results(
    path: Path, results: dict[str, Any], python: str, env: dict[str, str] | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    results["updated"] = now_iso()
    clean = sanitize(results, machine_paths(python, env))
    path.write_text(json.dumps(clean, indent=2, ensure_ascii=False, default=str) + "\n")
    markdown = path.with_suffix(".md")
    proc = subprocess.run(
        [python, str(RENDERER), os.path.relpath(path, REPO), "-o", os.path.relpath(markdown, REPO)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if proc.returncode != 0:
        log(f"rendering {markdown.name} failed: {proc.stderr.strip()[-500:]}")


def copy_out(out_dir: Path, results_path: Path, log_path: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [
        results_path,
        results_path.with_suffix(".md"),
        log_path,
        *sorted(results_path.parent.glob("*.ipynb")),
        *sorted(results_path.parent.glob("*.engine.log")),
    ]
    for path in files:
        if path.is_file():
            shutil.copy2(path, out_dir / path.name)
    log(f"copied {sum(p.is_file() for p in files)} files to {out_dir}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = sys.executable
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    command = drop_out_dir(
        shlex.join(["tools/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    )
    if args.dry_run:
        env_preview = build_env(args, {"target": "/tmp/vlm-gpu-kit"} if args.kit else None)
        plan = {
            "command": command,
            "stages": stages,
            "mode": "real" if args.real else "tiny",
            "kit": args.kit,
            "engine_args_env": env_preview.get("VLM_TUTORIAL_ENGINE_ARGS"),
            "notebooks": [p.name for p in notebook_list(args)],
            "notebook_env": notebook_env(args)[0],
            "results": str(args.results),
        }
        print(json.dumps(plan, indent=2))
        return 0

    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    BUILD.mkdir(parents=True, exist_ok=True)
    log_path = BUILD / "gpu-check.log"
    if args.fresh or args.stage == "all":
        log_path.unlink(missing_ok=True)
    kit_info = install_kit(Path(args.kit).resolve(), python) if args.kit else None
    env = build_env(args, kit_info)
    environment = probe_environment(python, env)
    environment["engine_args_env"] = json.loads(env.get("VLM_TUTORIAL_ENGINE_ARGS") or "{}")
    environment["kit"] = kit_info
    gpu = environment.get("gpu", {})
    log(
        f"GPU: {gpu.get('name')} x{gpu.get('count')} (driver {gpu.get('driver')}); "
        f"sglang {environment.get('versions', {}).get('sglang')}, "
        f"torch {environment.get('versions', {}).get('torch')}, "
        f"transformers {environment.get('versions', {}).get('transformers')}"
    )
    if args.cpu_smoke:
        log("--cpu-smoke: no GPU needed; notebooks on the reference engine, GPU tests skip")
    elif not environment.get("cuda_available"):
        log("no CUDA GPU is visible to torch: this is the GPU entry point, nothing to run")
        return 2
    if environment.get("versions", {}).get("sglang") is None and not args.cpu_smoke:
        log("sglang is not installed: install environment.yml, or pass --kit DIR")
        return 2

    results = load_results(args.results, fresh=args.fresh or args.stage == "all")
    results["command"] = command
    results["mode"] = "cpu-smoke" if args.cpu_smoke else "real" if args.real else "tiny"
    results["environment"] = environment
    runner = Runner(env, log_path, deadline)
    failures = []
    if build_tiny_models(runner, python, results) != 0:
        failures.append("build")
    write_results(args.results, results, python, env)
    for stage in stages:
        started = now_iso()
        start = time.perf_counter()
        log(f"stage {stage}: start")
        handler = {"tests": stage_tests, "notebooks": stage_notebooks, "nbval": stage_nbval}[stage]
        rc = handler(runner, python, args, results)
        seconds = time.perf_counter() - start
        results["stages"][stage] = {
            "rc": rc,
            "seconds": round(seconds, 1),
            "started": started,
            "finished": now_iso(),
            "command": command,
            "boot_id": boot_id(),
        }
        results["commands"][stage] = command
        write_results(args.results, results, python, env)
        log(f"stage {stage}: {'ok' if rc == 0 else f'FAILED (rc {rc})'} in {seconds:.1f} s")
        if rc != 0:
            failures.append(stage)
    if args.out_dir:
        copy_out(args.out_dir, args.results, log_path)
    log(
        f"done: {'all stages passed' if not failures else 'failed: ' + ', '.join(failures)}; "
        f"results in {args.results}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
