"""Tests of the client-side probe (vlm_bench.probe) and of tools/gpu_bench.py, on a CPU.

The probe runs end to end on the tiny checkpoints; what it writes is checked
for structure and for the facts a CPU can establish (the eager fast tower is
bit-identical to transformers', so its error is 0). Nothing asserts speed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlm_bench import probe
from vlm_bench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
GPU_BENCH = ROOT / "scripts" / "gpu-bench"


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    argv = [
        "--tiny", "--out", str(out), "--repeats", "3", "--warmup", "1", "--busy", "0,1",
        "--batch", "2", "--variants", "fast", "--no-profile",
    ]  # fmt: skip
    assert probe.main(argv) == 0
    return out, json.loads((out / "probe.json").read_text())


def test_probe_writes_processor_split_for_both_families(probe_run):
    out, results = probe_run
    assert results["meta"]["command"].startswith("python -m vlm_bench.probe --tiny")
    assert set(results["processor"]) == {"qwen2_5_vl", "llama4"}
    for part in results["processor"].values():
        rows = part["rows"]
        # idle, then beside one busy process; torch's thread count and one thread
        assert [r["busy_processes"] for r in rows][0] == 0
        assert {r["busy_processes"] for r in rows} == {0, 1}
        if (os.cpu_count() or 1) > 1:
            assert {(r["busy_processes"], r["threads"]) for r in rows} >= {(0, 1), (1, 1)}
        for row in rows:
            assert row["retokenized_equal"] is True
            parts = row["parts_ms"]
            for key in ("decode", "image_processing", "tokenization", "token_count_check"):
                assert parts[key] > 0
            assert parts["processor_call"] > 0
            assert "pixels" not in row
    assert "| device | threads | busy procs |" in (out / "probe.md").read_text()


def test_probe_encoder_rows_cover_every_cell_and_the_fast_tower_is_exact(probe_run):
    out, results = probe_run
    qwen = results["encoder"]["qwen2_5_vl"]
    assert qwen["cells"] == ["56px", "112px", "224px", "2x224px"]
    assert qwen["largest_cell"] == "224px"
    variants = {r["variant"] for r in qwen["rows"]}
    assert variants == {"transformers", "fast"}
    for row in qwen["rows"]:
        assert row["n"] >= 3 and row["median_ms"] > 0
    fast = [r for r in qwen["rows"] if r["variant"] == "fast"]
    assert all(r["errors_vs_fp32"]["max_abs"] == 0 for r in fast)  # bit-identical on the CPU
    batch = next(r for r in qwen["rows"] if r["cell"] == "2x224px")
    single = next(r for r in qwen["rows"] if r["cell"] == "224px")
    assert batch["images"] == 2 and batch["pixel_rows"] == 2 * single["pixel_rows"]
    assert {r["variant"] for r in results["encoder"]["llama4"]["rows"]} == {"transformers"}
    assert probe.best_encoder(results, "qwen2_5_vl")["variant"] in variants
    assert "Fastest within rounding" in (out / "probe.md").read_text()


def test_probe_merge_keeps_the_other_part(probe_run, tmp_path):
    out, results = probe_run
    (tmp_path / "probe.json").write_text(json.dumps(results))
    argv = ["--tiny", "--families", "llama4", "--parts", "processor", "--repeats", "3"]
    assert probe.main([*argv, "--warmup", "0", "--out", str(tmp_path), "--merge"]) == 0
    merged = json.loads((tmp_path / "probe.json").read_text())
    assert set(merged["encoder"]) == {"qwen2_5_vl", "llama4"}
    assert set(merged["processor"]) == {"qwen2_5_vl", "llama4"}
    assert merged["meta"]["merged_from"] == [results["meta"]["command"]]


def _synthetic(errors: dict[str, float], medians: dict[str, float]) -> dict:
    rows = [
        {"variant": v, "cell": "1792px", "median_ms": medians[v], "errors_vs_fp32": {"max_abs": e}}
        for v, e in errors.items()
    ]
    part = {"rows": rows, "cells": ["1792px"], "largest_cell": "1792px"}
    return {"encoder": {"qwen2_5_vl": part}}


def test_best_encoder_is_the_fastest_within_rounding():
    results = _synthetic(
        {"transformers": 0.1, "fast": 0.1, "varlen+compile": 0.15, "cudnn": 0.5},
        {"transformers": 478, "fast": 140, "varlen+compile": 60, "cudnn": 40},
    )
    best = probe.best_encoder(results, "qwen2_5_vl")
    assert best["variant"] == "varlen+compile"  # cudnn is faster but 5x off
    assert best["options"] == ["--encoder-attn", "varlen", "--encoder-compile"]
    assert probe.best_encoder(results, "llama4") is None


def test_every_variant_maps_to_benchmark_options_the_parser_accepts():
    parser = build_parser()
    assert set(probe.QWEN_VARIANTS) | {"transformers", "transformers+compile"} == set(
        probe.BENCH_OPTIONS
    )
    for options in probe.BENCH_OPTIONS.values():
        args = parser.parse_args(options)
        assert args.encoder_attn in ("fast", "cudnn", "varlen", "reference")


def test_time_calls_counts_the_first_call_apart_and_keeps_three_repeats():
    calls = []
    timing = probe.time_calls(
        lambda: calls.append(1), repeats=10, warmup=2, sync=lambda: None, budget_s=0.0
    )
    # first call, no warm-up (its budget is spent), three repeats at least
    assert timing["n"] == 3 and len(calls) == 4
    assert timing["first_s"] >= 0 and len(timing["values"]) == 3


def test_busy_processes_end_with_the_block():
    with probe.busy_processes(2) as pids:
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, 0)  # running
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# --------------------------------------------------------------------------- tools/gpu_bench.py


def _gpu_bench():
    loader = importlib.machinery.SourceFileLoader("gpu_bench", str(GPU_BENCH))
    spec = importlib.util.spec_from_loader("gpu_bench", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _dry_run(*args: str, env_args: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLM_TUTORIAL_ENGINE")}
    if env_args is not None:
        env["VLM_TUTORIAL_ENGINE_ARGS"] = env_args
    proc = subprocess.run(
        [sys.executable, str(GPU_BENCH), "--dry-run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_gpu_bench_call_1_fits_its_timeout_with_cuda_graphs_on():
    plan = _dry_run("--kit", ".gpu-kit", env_args='{"disable_cuda_graph": false}')
    steps = [s["step"] for s in plan["steps"]]
    assert steps[0] == "warm-jit" and "probe-encoder:qwen2_5_vl" in steps
    assert steps.index("probe-encoder:qwen2_5_vl") < steps.index("bench:qwen2_5_vl:formats,limit")
    assert {"bench:qwen2_5_vl:formats,limit", "bench:llama4:formats,limit"} <= set(steps)
    assert plan["estimate_s"] <= plan["timeout_s"] <= 600
    engine_args = json.loads(plan["engine_args_env"])
    assert engine_args["disable_cuda_graph"] is False  # the environment wins over the kit's
    assert engine_args["attention_backend"] == "triton"


def test_gpu_bench_call_2_runs_reuse_the_llama4_probe_and_the_tower_test():
    plan = _dry_run("--call", "2")
    steps = [s["step"] for s in plan["steps"]]
    assert {"bench:qwen2_5_vl:reuse", "bench:llama4:reuse", "test-tower"} <= set(steps)
    commands = {s["step"]: s["command"] for s in plan["steps"]}
    assert "tests/gpu/test_fast_tower_on_gpu.py" in commands["test-tower"]
    assert "--merge" in commands["bench:llama4:reuse"]
    assert plan["estimate_s"] <= plan["timeout_s"]


def test_gpu_bench_refuses_unknown_steps():
    proc = subprocess.run(
        [sys.executable, str(GPU_BENCH), "--dry-run", "--steps", "bench:qwen2_5_vl:speed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "unknown step" in proc.stderr


def test_gpu_bench_step_commands_parse_with_the_benchmark_and_probe_parsers():
    gpu_bench = _gpu_bench()
    options = {"qwen2_5_vl": ["--encoder-attn", "varlen", "--encoder-compile"]}
    bench_cmd = gpu_bench.step_command("bench:qwen2_5_vl:formats,limit", "py", "nvidia-h200", options)
    assert bench_cmd[:3] == ["py", "-m", "vlm_bench"]
    args = build_parser().parse_args(bench_cmd[3:])
    assert (args.backend, args.family, args.cases) == ("sglang", "qwen2_5_vl", ["formats", "limit"])
    assert (args.encoder_attn, args.encoder_compile, args.merge) == ("varlen", True, True)
    assert (args.repeats, args.warmup) == (3, 1)
    assert str(args.out) == "docs/benchmarks/nvidia-h200/qwen2_5_vl"
    probe_cmd = gpu_bench.step_command("probe-processor", "py", "nvidia-h200", {})
    probe_args = probe.build_parser().parse_args(probe_cmd[3:])
    assert probe_args.parts == "processor" and probe_args.merge
    assert gpu_bench.slug("NVIDIA H200") == "nvidia-h200"


def test_gpu_bench_brings_its_results_back_as_one_archive(tmp_path, monkeypatch):
    """A device call returns at most 8 files, two folders deep: the results travel as one tar.gz."""
    import tarfile

    bench = _gpu_bench()
    repo = tmp_path / "repo"
    results = repo / "docs" / "benchmarks" / "nvidia-h200" / "qwen2_5_vl"
    results.mkdir(parents=True)
    (results / "results.json").write_text("{}")
    log = repo / "gpu-bench.log"
    log.write_text("log")
    monkeypatch.setattr(bench, "REPO", repo)
    archive = bench.copy_out(tmp_path / "out", "nvidia-h200", [log])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "benchmarks-nvidia-h200.tar.gz", "gpu-bench.log"]
    with tarfile.open(archive) as tar:
        assert tar.getnames()[-1] == "docs/benchmarks/nvidia-h200/qwen2_5_vl/results.json"
