"""The one GPU entry point: the GPU tests and the notebooks on SGLang, recorded in docs/gpu/.

Stages (``--stage``, default ``all``), each logged with its wall time:

  tests      ``pytest -m gpu tests/gpu`` (formats, batches, multi-image, reference parity,
             engine shutdown, Llama 4 tensor parallelism)
  notebooks  every notebook on SGLang through the main job (``python -m tools.run_notebooks``
             with VLM_TUTORIAL_BACKEND=sglang and the tiny models); the executed copies go to
             docs/gpu/ without SGLang's log, which goes to ``<notebook>.engine.log`` beside them
  nbval      the notebooks again through ``pytest --nbval-lax``
  all        the three above, in that order, into a fresh results file

The tiny models are made ready first. Every stage merges what it measured into
docs/gpu/results.json (written only by this tool, with repo-relative paths and the home folder
as ``~``) and re-renders docs/gpu/results.md, so stages can run in separate calls.

Engine arguments merge as everywhere in the project: the family registry's tutorial values
(``mem_fraction_static`` included), then the machine's (``VLM_TUTORIAL_ENGINE_ARGS``), then the
caller's. ``--kit DIR`` installs the wheel kit of ``tools/make_gpu_kit.py`` (offline) and sets
``VLM_TUTORIAL_ENGINE_ARGS`` to what that trimmed install needs (tools/gpu_engine_args.json;
a value already in the variable wins). The record says which arguments each run used.

Examples:
  python3 tools/gpu_check.py                          # full install, tiny models, every stage
  python3 tools/gpu_check.py --kit .gpu-kit --stage tests --out-dir out --timeout 540
  python3 tools/gpu_check.py --real --stage notebooks  # the real model ids (needs the hub)
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import hashlib
import json
import os
import re
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

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "gpu" / "results.json"
BUILD = REPO / "build" / "gpu"
ENGINE_ARGS_FILE = REPO / "tools" / "gpu_engine_args.json"
ENGINE_ARGS_VAR = "VLM_TUTORIAL_ENGINE_ARGS"
DEFAULT_KIT_TARGET = Path("/tmp/vlm-gpu-kit")
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

#: Lines SGLang and the libraries log while the engine starts: they belong in the engine log,
#: not in the notebook a learner reads, even where they arrive on stdout.
ENGINE_NOISE = (
    "Ignore import error when loading",
    "torchcodec is not installed",
    "Fail to set RLIMIT_NOFILE",
    "SGLANG_USE_CUDA_IPC_TRANSPORT is deprecated",
    "The `use_fast` parameter is deprecated",
    "TqdmWarning: IProgress not found",
)
_SITE_PACKAGES = re.compile(r"(?:[^\s'\"()]*/)?(?:site|dist)-packages/")


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[gpu-check {stamp}] {message}", flush=True)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docs)."""
    head, examples = (__doc__ or "").split("\n\nExamples:\n", 1)
    parser = argparse.ArgumentParser(
        prog="tools/gpu_check.py",
        description=head,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + examples,
    )
    parser.add_argument("--stage", choices=(*STAGES, "all"), default="all")
    parser.add_argument(
        "--kit", metavar="DIR", help="install this wheel kit and use its engine arguments"
    )
    parser.add_argument(
        "--kit-target",
        type=Path,
        default=DEFAULT_KIT_TARGET,
        help=f"where --kit installs (default: {DEFAULT_KIT_TARGET})",
    )
    parser.add_argument("--real", action="store_true", help="the real model ids, not tiny models")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="default: docs/gpu/results.json"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start a new results file (implied by --stage all)"
    )
    parser.add_argument("--notebooks", nargs="+", metavar="NAME", help="only these notebooks")
    parser.add_argument(
        "--pytest-args", default="", help='extra arguments of the tests stage, e.g. "-k qwen"'
    )
    parser.add_argument(
        "--test-files",
        nargs="+",
        metavar="FILE",
        help="only these GPU test files; parts from several calls on one box add up to one record",
    )
    parser.add_argument(
        "--run-diagnostics",
        action="store_true",
        help="also run the opt-in diagnostics (the Llama 4 parity variants)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=0,
        help="stop after this many seconds and still write the results (0: no limit)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="also copy the results, the executed notebooks and the log here",
    )
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="check the plumbing without a GPU (reference engine; pair with --results elsewhere)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    # A bare file name is one of tests/gpu, as --help lists them.
    args.test_files = [f if "/" in f else f"tests/gpu/{f}" for f in args.test_files or []] or None
    return args


# --------------------------------------------------------------------------- environment


def install_kit(kit: Path, target: Path, python: str) -> dict[str, Any]:
    """Install the kit into ``target`` once per kit (a stamp holds the kit's hash)."""
    manifest = kit / "kit.json"
    if not manifest.is_file():
        raise SystemExit(
            f"--kit {kit}: no kit.json there; build it with python tools/make_gpu_kit.py {kit}"
        )
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    stamp = target / "installed.stamp"
    info = json.loads(manifest.read_text())
    result: dict[str, Any] = {
        "dir": os.path.relpath(kit, REPO) if kit.is_relative_to(REPO) else kit.name,
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
    pip = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    pip.append("--disable-pip-version-check")
    for sub, dest in (("whl", "site"), ("whl-nb", "site"), ("whl-tf", "site_tf")):
        wheels = sorted(str(p) for p in (kit / sub).glob("*.whl"))
        if wheels:
            subprocess.run([*pip, "--target", str(target / dest), *wheels], check=True)
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", str(target)], check=False)
    stamp.write_text(digest + "\n")
    result["install_s"] = round(time.perf_counter() - start, 1)
    log(f"kit installed in {target} in {result['install_s']} s")
    return result


def kit_env(env: dict[str, str], kit_target: Path | None) -> dict[str, str]:
    """``env`` with the repository on the path, and the kit and its engine arguments if a kit.

    The kit's file (tools/gpu_engine_args.json) comes first; this machine's own
    ``VLM_TUTORIAL_ENGINE_ARGS`` wins over it.
    """
    paths = [str(REPO)]
    if kit_target is not None:
        paths = [str(kit_target / "site_tf"), str(kit_target / "site"), str(REPO)]
        env["PATH"] = f"{kit_target / 'site' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        engine_args = json.loads(ENGINE_ARGS_FILE.read_text())
        if env.get(ENGINE_ARGS_VAR, "").strip():  # this machine's own settings win
            engine_args.update(json.loads(env[ENGINE_ARGS_VAR]))
        env[ENGINE_ARGS_VAR] = json.dumps(engine_args)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def build_env(args: argparse.Namespace, kit_target: Path | None) -> dict[str, str]:
    """The environment of every child: the kit on the path, its engine arguments, offline hub."""
    env = kit_env(dict(os.environ), kit_target)
    env.setdefault("VLM_TUTORIAL_CACHE", str(BUILD / "cache"))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name, value in NCCL_SAFE_ENV.items():
        env.setdefault(name, value)
    # tests/conftest.py defaults HF_HUB_OFFLINE to 1; the real models may need the hub.
    env.setdefault("HF_HUB_OFFLINE", "0" if args.real else "1")
    return env


PROBE = r"""
import importlib.metadata as md, json, platform, subprocess, sys
out = {"python": platform.python_version(), "versions": {}}
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
    out["nvidia_smi"] = [dict(zip(q.split(","), (v.strip() for v in line.split(","))))
                         for line in text.strip().splitlines()]
except Exception as exc:
    out["nvidia_smi"] = repr(exc)
print(json.dumps(out))
"""


def probe_environment(python: str, env: dict[str, str]) -> dict[str, Any]:
    """Versions, the GPU and the driver, as the children see them."""
    proc = subprocess.run(
        [python, "-c", PROBE, *VERSION_PACKAGES], env=env, capture_output=True, text=True, cwd=REPO
    )
    if proc.returncode != 0:
        return {"probe_error": proc.stderr[-2000:]}
    info: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
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
        self, cmd: list[str], extra_env: dict[str, str | None] | None = None
    ) -> tuple[int, float]:
        """Run ``cmd`` in the repository; return its exit status (124: time limit) and seconds.

        ``extra_env`` adds variables to the environment; a ``None`` value removes one.
        """
        env = dict(self.env)
        for name, value in (extra_env or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
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

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            self.log_file.write(line)

    @staticmethod
    def _kill(proc: subprocess.Popen[str]) -> None:
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


PREPARE = r"""
import json, sys, time
from vlm_tutorial.families import get_family
from vlm_tutorial.offline.tiny import tiny_model_path
from vlm_tutorial.settings import merge_engine_args
target, real, specs = sys.argv[1], sys.argv[2] == "real", sys.argv[3:]
out = {"tiny_models": {}, "engine_args": {}}
for spec in specs:
    family, preset = spec.split(":")
    start = time.perf_counter()
    path = tiny_model_path(family, preset)
    seconds = round(time.perf_counter() - start, 2)
    out["tiny_models"][spec] = {"path": str(path), "seconds": seconds}
    print(f"tiny {spec}: ready in {seconds} s", flush=True)
    if preset == "tiny":
        model = get_family(family).real_model_id if real else path
        out["engine_args"][family] = merge_engine_args(model)
open(target, "w").write(json.dumps(out))
"""


def prepare_models(
    runner: Runner, python: str, args: argparse.Namespace, results: dict[str, Any]
) -> int:
    """Make the tiny models ready; record them and each family's merged engine arguments."""
    marker = BUILD / "prepared.json"
    marker.unlink(missing_ok=True)
    specs = [f"{family}:{preset}" for family, preset in TINY_MODELS]
    mode = "real" if args.real else "tiny"
    rc, seconds = runner.run([python, "-c", PREPARE, str(marker), mode, *specs])
    prepared = json.loads(marker.read_text()) if rc == 0 and marker.is_file() else {}
    results["build"] = {
        "tiny_models": prepared.get("tiny_models", {}),
        "seconds": round(seconds, 2),
        "rc": rc,
    }
    results["engine_args"] = prepared.get("engine_args", {})
    log(f"tiny models: rc {rc} in {seconds:.1f} s")
    return rc


def junit_cases(path: Path) -> list[dict[str, Any]]:
    """Each test case of a junit XML file: name, file, outcome, seconds, message."""
    if not path.is_file():
        return []
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", None
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
                message = child.get("message")
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
    """Counts per outcome.

    Example:
        >>> summarize([{"outcome": "passed"}, {"outcome": "skipped"}])
        {'passed': 1, 'failed': 0, 'error': 0, 'skipped': 1}
    """
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


def pytest_command(python: str, args: argparse.Namespace, junit: Path, record: Path) -> list[str]:
    """The pytest command of the tests stage; its options replace environment switches."""
    files = args.test_files or ["tests/gpu"]
    cmd = [python, "-m", "pytest", "-m", "gpu", *files, "-v", "-rA", "-p", "no:cacheprovider"]
    cmd += [f"--junitxml={junit}", f"--gpu-record={record}"]
    if args.real:
        cmd.append("--gpu-real")
    if args.run_diagnostics:
        cmd.append("--run-diagnostics")
    return cmd + shlex.split(args.pytest_args)


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
    cmd = pytest_command(python, args, junit, record)
    rc, seconds = runner.run(cmd)
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
    key = " ".join(args.test_files or ["tests/gpu"])
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
    """The notebooks the stages run: all of notebooks/, or those of ``--notebooks``."""
    paths = sorted((REPO / "notebooks").glob("*.ipynb"))
    if args.notebooks:
        wanted = {Path(n).name if n.endswith(".ipynb") else f"{n}.ipynb" for n in args.notebooks}
        missing = wanted - {p.name for p in paths}
        if missing:
            raise SystemExit(f"--notebooks: not in notebooks/: {sorted(missing)}")
        paths = [p for p in paths if p.name in wanted]
    return paths


def notebook_env(args: argparse.Namespace) -> dict[str, str | None]:
    """The notebooks' settings: SGLang (the reference engine with --cpu-smoke), tiny unless --real.

    ``None`` removes the variable: with ``--real`` each notebook picks its real model.

    Example:
        >>> notebook_env(argparse.Namespace(cpu_smoke=False, real=False))
        {'VLM_TUTORIAL_BACKEND': 'sglang', 'VLM_TUTORIAL_MODEL_PATH': 'tiny'}
    """
    return {
        "VLM_TUTORIAL_BACKEND": "transformers" if args.cpu_smoke else "sglang",
        "VLM_TUTORIAL_MODEL_PATH": None if args.real else "tiny",
    }


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


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
                if images and kept < keep_images:
                    kept += 1
                elif images:
                    size = sum(len(_text(data[k])) for k in images)
                    for k in images:
                        del data[k]
                    data["text/plain"] = (
                        f"[image omitted from this copy: {size // 1024} KB of base64]"
                    )
                data.pop("application/vnd.jupyter.widget-view+json", None)
            if "text" in output:
                text = _text(output["text"])
                if len(text) > max_chars:
                    half = max_chars // 2
                    output["text"] = (
                        text[:half] + f"\n[... {len(text) - max_chars} characters "
                        "omitted from this copy ...]\n" + text[-half:]
                    )
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def is_engine_noise(line: str) -> bool:
    """True for a line of the engine's log that a learner need not read.

    Example:
        >>> is_engine_noise("[2026-12-01 20:57:07] Fail to set RLIMIT_NOFILE: current limit ...")
        True
        >>> is_engine_noise("raw: prompt_tokens=9")
        False
    """
    return any(marker in line for marker in ENGINE_NOISE)


def split_engine_log(nb: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Move the engine's log out of ``nb``: every stderr stream, and noise lines on stdout.

    The notebooks teach through stdout; what SGLang's processes and the libraries write to
    stderr (RLIMIT notes, optional-import errors, deprecations, loading bars) goes to the
    returned log text, cell by cell, for a file beside the executed copy.
    """
    lines: list[str] = []
    for index, cell in enumerate(nb.get("cells", [])):
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") != "stream":
                kept.append(output)
                continue
            text = _text(output.get("text", ""))
            if output.get("name") == "stderr":
                noise, rest = text.splitlines(keepends=True), ""
            else:
                noise = [line for line in text.splitlines(keepends=True) if is_engine_noise(line)]
                rest = "".join(
                    ln for ln in text.splitlines(keepends=True) if not is_engine_noise(ln)
                )
            if noise:
                lines.append(
                    f"--- cell {index} ({output.get('name')}) ---\n{''.join(noise).rstrip()}\n"
                )
            if rest:
                kept.append(dict(output, text=rest))
        if "outputs" in cell:
            cell["outputs"] = kept
    return nb, "".join(lines)


def engine_noise(nb: dict[str, Any]) -> list[str]:
    """The engine-noise lines left in any output of ``nb`` (none in a clean copy)."""
    found = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            texts = [output.get("text", ""), *output.get("data", {}).values()]
            for text in texts:
                found += [ln for ln in _text(text).splitlines() if is_engine_noise(ln)]
    return found


def printed_engine_args(nb: dict[str, Any]) -> dict[str, Any] | None:
    """The ``engine_args: {...}`` a notebook's engine cell printed, parsed (None if none).

    Example:
        >>> out = {"output_type": "stream", "name": "stdout", "text": "engine_args: {'tp_size': 1}"}
        >>> printed_engine_args({"cells": [{"cell_type": "code", "outputs": [out]}]})
        {'tp_size': 1}
    """
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            for line in _text(output.get("text", "")).splitlines():
                if line.startswith("engine_args: "):
                    try:
                        value = ast.literal_eval(line[len("engine_args: ") :])
                    except (ValueError, SyntaxError):
                        return None
                    return value if isinstance(value, dict) else None
    return None


def sanitize(value: Any, replacements: list[tuple[str, str]]) -> Any:
    """``value`` with machine paths made repo-relative or replaced by a name (for the record).

    Example:
        >>> sanitize({"p": "/repo/docs/x", "c": ["/venv/lib/site-packages/tqdm/a.py"]}, [("/repo/", "")])
        {'p': 'docs/x', 'c': ['site-packages/tqdm/a.py']}
    """
    if isinstance(value, dict):
        return {k: sanitize(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize(v, replacements) for v in value]
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        value = _SITE_PACKAGES.sub("site-packages/", value)
    return value


def drop_out_dir(command: str) -> str:
    """A command line without its ``--out-dir DIR`` (where copies went is not part of the record).

    Example:
        >>> drop_out_dir("tools/gpu_check.py --stage tests --out-dir /tmp/out --timeout 540")
        'tools/gpu_check.py --stage tests --timeout 540'
    """
    kept: list[str] = []
    skip = False
    for word in shlex.split(command):
        if skip:
            skip = False
        elif word == "--out-dir":
            skip = True
        elif not word.startswith("--out-dir="):
            kept.append(word)
    return shlex.join(kept)


def boot_id() -> str | None:
    """This machine's boot id: two stages with the same one ran on one box, without a reboot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def copy_executed(
    executed: Path, target: Path, replacements: list[tuple[str, str]]
) -> dict[str, Any]:
    """Copy an executed notebook to ``target`` without the engine log, which goes beside it."""
    nb = json.loads(executed.read_text())
    nb, engine_log = split_engine_log(strip_notebook(nb))
    nb = sanitize(nb, replacements)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    log_file = target.with_suffix(".engine.log")
    log_file.write_text(sanitize(engine_log, replacements))
    return {
        "copied_to": os.path.relpath(target, REPO),
        "copy_bytes": target.stat().st_size,
        "engine_log": os.path.relpath(log_file, REPO),
        "engine_noise_left": engine_noise(nb),
        "engine_args": printed_engine_args(nb),
    }


def stage_notebooks(
    runner: Runner, python: str, args: argparse.Namespace, results: dict[str, Any]
) -> int:
    """Execute each notebook through the main job; copy it, without the engine log, to docs/gpu."""
    out_dir = BUILD / "notebooks"
    extra = notebook_env(args)
    section = results.setdefault("notebooks", {})
    worst = 0
    for path in notebook_list(args):
        summary_path = out_dir / f"{path.stem}.summary.json"
        summary_path.unlink(missing_ok=True)
        cmd = [python, "-m", "tools.run_notebooks", str(path.relative_to(REPO))]
        cmd += ["--out", str(out_dir), "--summary", str(summary_path)]
        rc, seconds = runner.run(cmd, extra_env=extra)
        entry: dict[str, Any] = {
            "rc": rc,
            "seconds": round(seconds, 1),
            "command": shlex.join(cmd),
            "env": {k: v for k, v in extra.items() if v is not None},
        }
        if summary_path.is_file():
            entry["runner_summary"] = json.loads(summary_path.read_text())
        executed = out_dir / path.name
        if rc == 0 and executed.is_file():
            nb = json.loads(executed.read_text())
            entry["metadata"] = nb.get("metadata", {}).get("vlm_tutorial")
            replacements = machine_paths(python, runner.env)
            entry.update(copy_executed(executed, args.results.parent / path.name, replacements))
            if entry["engine_args"] is None:  # the cell did not print them: the family's merge
                family = (entry["metadata"] or {}).get("family")
                entry["engine_args"] = results.get("engine_args", {}).get(family)
            if entry["engine_noise_left"]:
                log(f"{path.name}: engine log lines left in the copy: {entry['engine_noise_left']}")
                rc = 1
        section[path.name] = entry
        log(f"notebook {path.name}: rc {rc} in {seconds:.1f} s")
        worst = worst or rc
    return worst


def stage_nbval(
    runner: Runner, python: str, args: argparse.Namespace, results: dict[str, Any]
) -> int:
    """Run the notebooks through ``pytest --nbval-lax``; record the cells per notebook."""
    junit = BUILD / "nbval-junit.xml"
    junit.unlink(missing_ok=True)
    paths = [str(p.relative_to(REPO)) for p in notebook_list(args)]
    cmd = [python, "-m", "pytest", "--nbval-lax", "--nbval-current-env", *paths]
    cmd += ["-p", "no:cacheprovider", f"--junitxml={junit}", "-q"]
    rc, seconds = runner.run(cmd, extra_env=notebook_env(args))
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
            results: dict[str, Any] = json.loads(path.read_text())
            return results
        except json.JSONDecodeError:
            log(f"{path} is not valid JSON: starting a new one")
    return {"schema": 1, "generated_by": "tools/gpu_check.py", "stages": {}, "commands": {}}


def machine_paths(
    python: str, env: dict[str, str] | None = None, kit_target: Path = DEFAULT_KIT_TARGET
) -> list[tuple[str, str]]:
    """Replacements that keep the record free of this machine's folders (longest first).

    Example:
        >>> ("/tmp/vlm-gpu-kit", "<kit>") in machine_paths("/usr/bin/python3")
        True
    """
    env = env or {}
    pairs = [(f"{REPO}/", ""), (str(REPO), "."), (str(kit_target), "<kit>"), (python, "python3")]
    cache = env.get("VLM_TUTORIAL_CACHE")
    if cache:
        pairs.append((str(Path(cache)), "$VLM_TUTORIAL_CACHE"))
    pairs.append((str(Path.home()), "~"))
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def write_results(path: Path, results: dict[str, Any], replacements: list[tuple[str, str]]) -> None:
    """Write ``results`` without machine paths, and render the page beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    results["updated"] = now_iso()
    clean = sanitize(results, replacements)
    path.write_text(json.dumps(clean, indent=2, ensure_ascii=False, default=str) + "\n")
    markdown = path.with_suffix(".md")
    cmd = [sys.executable, "-m", "tools.render_gpu_results", os.path.relpath(path, REPO)]
    cmd += ["-o", os.path.relpath(markdown, REPO)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
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
    words = sys.argv[1:] if argv is None else argv
    command = drop_out_dir(shlex.join(["tools/gpu_check.py", *words]))
    if args.dry_run:
        env = build_env(args, args.kit_target if args.kit else None)
        plan = {
            "command": command,
            "stages": stages,
            "mode": "real" if args.real else "tiny",
            "kit": args.kit,
            "engine_args_env": env.get(ENGINE_ARGS_VAR),
            "pytest_command": pytest_command("python3", args, Path("junit.xml"), Path("rec.json")),
            "notebooks": [p.name for p in notebook_list(args)],
            "notebook_env": notebook_env(args),
            "results": str(args.results),
        }
        print(json.dumps(plan, indent=2))
        return 0

    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    BUILD.mkdir(parents=True, exist_ok=True)
    log_path = BUILD / "gpu-check.log"
    if args.fresh or args.stage == "all":
        log_path.unlink(missing_ok=True)
    kit_info = install_kit(Path(args.kit).resolve(), args.kit_target, python) if args.kit else None
    env = build_env(args, args.kit_target if args.kit else None)
    replacements = machine_paths(python, env, args.kit_target)
    environment = probe_environment(python, env)
    environment["engine_args_env"] = json.loads(env.get(ENGINE_ARGS_VAR) or "{}")
    environment["kit"] = kit_info
    gpu = environment.get("gpu", {})
    versions = environment.get("versions", {})
    log(
        f"GPU: {gpu.get('name')} x{gpu.get('count')} (driver {gpu.get('driver')}); "
        f"sglang {versions.get('sglang')}, torch {versions.get('torch')}, "
        f"transformers {versions.get('transformers')}"
    )
    if args.cpu_smoke:
        log("--cpu-smoke: no GPU needed; notebooks on the reference engine, GPU tests skip")
    elif not environment.get("cuda_available"):
        log("no CUDA GPU is visible to torch: this is the GPU entry point, nothing to run")
        return 2
    elif versions.get("sglang") is None:
        log("sglang is not installed: install environment.yml, or pass --kit DIR")
        return 2

    results = load_results(args.results, fresh=args.fresh or args.stage == "all")
    results["command"] = command
    results["mode"] = "cpu-smoke" if args.cpu_smoke else "real" if args.real else "tiny"
    results["environment"] = environment
    runner = Runner(env, log_path, deadline)
    failures = []
    if prepare_models(runner, python, args, results) != 0:
        failures.append("build")
    write_results(args.results, results, replacements)
    handlers = {"tests": stage_tests, "notebooks": stage_notebooks, "nbval": stage_nbval}
    for stage in stages:
        started = now_iso()
        start = time.perf_counter()
        log(f"stage {stage}: start")
        rc = handlers[stage](runner, python, args, results)
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
        write_results(args.results, results, replacements)
        log(f"stage {stage}: {'ok' if rc == 0 else f'FAILED (rc {rc})'} in {seconds:.1f} s")
        if rc != 0:
            failures.append(stage)
    if args.out_dir:
        copy_out(args.out_dir, args.results, log_path)
    outcome = "all stages passed" if not failures else "failed: " + ", ".join(failures)
    log(f"done: {outcome}; results in {os.path.relpath(args.results, REPO)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
