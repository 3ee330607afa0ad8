"""Tests of the client-side probe (vlm_bench.probe) and of tools/gpu_bench.py, on a CPU.

The probe runs end to end on the tiny checkpoints; what it writes is checked
for structure and for the facts a CPU can establish (the eager fast tower is
bit-identical to transformers', so its error is 0). Nothing asserts speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import gpu_bench
from vlm_bench import probe
from vlm_bench.cli import build_parser
from vlm_bench.prep import CLIENT_ENCODERS

ROOT = Path(__file__).resolve().parents[2]


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
    assert best["options"] == ["--client-encoder", "varlen+compile"]
    assert probe.best_encoder(results, "llama4") is None


def test_every_probed_variant_is_a_client_encoder_of_the_benchmark():
    parser = build_parser()
    probed = set(probe.variants_for("qwen2_5_vl")) | set(probe.variants_for("llama4"))
    assert probed == set(CLIENT_ENCODERS)
    for name in probed:
        assert parser.parse_args(["--client-encoder", name]).client_encoder == name


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


def _dry_run(capsys, monkeypatch, *args: str, env_args: str | None = None) -> dict:
    monkeypatch.delenv("VLM_TUTORIAL_ENGINE_ARGS", raising=False)
    if env_args is not None:
        monkeypatch.setenv("VLM_TUTORIAL_ENGINE_ARGS", env_args)
    assert gpu_bench.main(["--dry-run", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_gpu_bench_is_a_plain_python_file_with_help():
    # A hang guard far above the second it takes, not a time limit.
    proc = subprocess.run(
        [sys.executable, "tools/gpu_bench.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--kit" in proc.stdout and "bench:FAMILY:CASES" in proc.stdout
    assert (ROOT / "tools" / "gpu_bench.py").read_text().startswith('"""')


@pytest.mark.parametrize("call", sorted(gpu_bench.CALLS))
def test_every_planned_call_fits_its_timeout(capsys, monkeypatch, call):
    plan = _dry_run(capsys, monkeypatch, "--call", call)
    assert sum(s["estimate_s"] for s in plan["steps"]) <= plan["timeout_s"] <= 600


def test_the_calls_probe_before_they_bench_and_cover_both_families(capsys, monkeypatch):
    steps = [step for call in sorted(gpu_bench.CALLS) for step in gpu_bench.CALLS[call]]
    for family in gpu_bench.FAMILIES:
        probe_at = steps.index(f"probe-encoder:{family}")
        benches = [i for i, s in enumerate(steps) if s.startswith(f"bench:{family}:")]
        assert probe_at < min(benches)
        cases = {
            c for s in steps if s.startswith(f"bench:{family}:") for c in s.split(":")[2].split(",")
        }
        assert cases == {"formats", "reuse", "limit"}
        # the learner's path beside the goal rows, after the probe that picks the goal rows' encoder
        assert steps.index(f"bench:{family}:formats,limit:transformers") > probe_at


def test_gpu_bench_engine_args_come_from_the_kit_file_without_a_memory_fraction(
    capsys, monkeypatch
):
    plan = _dry_run(
        capsys, monkeypatch, "--kit", ".gpu-kit", env_args='{"disable_cuda_graph": false}'
    )
    engine_args = json.loads(plan["engine_args_env"])
    assert engine_args["disable_cuda_graph"] is False  # the environment wins over the kit's
    assert engine_args == {
        **json.loads((ROOT / "tools" / "gpu_engine_args.json").read_text()),
        "disable_cuda_graph": False,
    }
    assert "mem_fraction_static" not in engine_args  # the benchmark derives it per GPU and model
    assert _dry_run(capsys, monkeypatch)["engine_args_env"] is None  # no kit: SGLang's defaults


def test_gpu_bench_refuses_unknown_steps(capsys):
    with pytest.raises(SystemExit, match="unknown step"):
        gpu_bench.main(["--dry-run", "--steps", "bench:qwen2_5_vl:speed"])
    with pytest.raises(SystemExit, match="unknown step"):
        gpu_bench.main(["--dry-run", "--steps", "probe-encoder:llava"])


def test_gpu_bench_step_commands_parse_with_the_benchmark_and_probe_parsers():
    best = {"qwen2_5_vl": "varlen+compile"}
    bench_cmd = gpu_bench.step_command("bench:qwen2_5_vl:formats,limit", "py", "nvidia-h100", best)
    assert bench_cmd[:3] == ["py", "-m", "vlm_bench"]
    args = build_parser().parse_args(bench_cmd[3:])
    assert (args.backend, args.family, args.cases) == ("sglang", "qwen2_5_vl", ["formats", "limit"])
    assert (args.client_encoder, args.merge, args.repeats, args.warmup) == (
        "varlen+compile", True, 3, 1)  # fmt: skip
    assert str(args.out) == "docs/benchmarks/nvidia-h100/qwen2_5_vl"
    beside = gpu_bench.step_command("bench:qwen2_5_vl:formats:transformers", "py", "g", best)
    args = build_parser().parse_args(beside[3:])
    assert args.client_encoder == "transformers"
    assert str(args.out) == "docs/benchmarks/g/qwen2_5_vl-transformers"
    probe_cmd = gpu_bench.step_command("probe-processor", "py", "nvidia-h100", {})
    probe_args = probe.build_parser().parse_args(probe_cmd[3:])
    assert probe_args.parts == "processor" and probe_args.merge
    assert gpu_bench.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_gpu_bench_brings_its_results_back_as_one_archive(tmp_path, monkeypatch):
    """The results folder travels as one tar.gz, beside the log."""
    import tarfile

    repo = tmp_path / "repo"
    results = repo / "docs" / "benchmarks" / "nvidia-h200" / "qwen2_5_vl"
    results.mkdir(parents=True)
    (results / "results.json").write_text("{}")
    log = repo / "gpu-bench.log"
    log.write_text("log")
    monkeypatch.setattr(gpu_bench, "REPO", repo)
    archive = gpu_bench.copy_out(tmp_path / "out", "nvidia-h200", [log])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "benchmarks-nvidia-h200.tar.gz",
        "gpu-bench.log",
    ]
    with tarfile.open(archive) as tar:
        assert tar.getnames()[-1] == "docs/benchmarks/nvidia-h200/qwen2_5_vl/results.json"
