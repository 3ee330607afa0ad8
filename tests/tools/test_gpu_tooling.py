"""The GPU path's tooling, checked on a CPU: gpu-check's command line, the kit's engine
arguments, the results renderer, the workflows, and ``pytest -m gpu`` skipping cleanly."""

from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
GPU_CHECK = ROOT / "scripts" / "gpu-check"
ENGINE_ARGS = ROOT / "scripts" / "gpu_engine_args.json"
SERVER_ARGS = ROOT / "tests" / "data" / "sglang-0.5.17-server-args.txt"
FIXTURE = ROOT / "tests" / "data" / "gpu_results_example.json"
FORMATS = ("raw", "processor_output", "precomputed_embedding")


def _load(path: Path, name: str) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    return _load(GPU_CHECK, "gpu_check")


@pytest.fixture(scope="module")
def renderer() -> ModuleType:
    return _load(ROOT / "scripts" / "render_gpu_results.py", "render_gpu_results")


@pytest.fixture(scope="module")
def server_args() -> set[str]:
    lines = SERVER_ARGS.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600
    )


# --------------------------------------------------------------------------- gpu-check


def test_gpu_check_help_lists_the_stages_and_options() -> None:
    proc = _run(str(GPU_CHECK), "--help")
    assert proc.returncode == 0, proc.stderr
    for word in ("--stage", "--kit", "--real", "--out-dir", "--timeout", "tests", "nbval"):
        assert word in proc.stdout


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_gpu_check_also_runs_through_a_shell(shell: str) -> None:
    """``make gpu-test`` calls ``bash tools/gpu_check.py``: the shell preamble hands over to Python."""
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        [shell, str(GPU_CHECK), "--help"], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: tools/gpu_check.py")


def test_gpu_check_rejects_an_unknown_stage() -> None:
    proc = _run(str(GPU_CHECK), "--stage", "benchmarks", "--dry-run")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def _plan(*args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLM_TUTORIAL_")}
    proc = _run(str(GPU_CHECK), "--dry-run", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_kit_engine_arguments_come_from_the_json_only_with_kit() -> None:
    with_kit = _plan("--kit", ".gpu-kit", "--stage", "tests")
    assert json.loads(with_kit["engine_args_env"]) == json.loads(ENGINE_ARGS.read_text())
    # A full SGLang install runs with SGLang's own defaults.
    assert _plan("--stage", "tests")["engine_args_env"] is None


def test_notebooks_run_on_sglang_with_tiny_models_unless_real() -> None:
    tiny = _plan("--stage", "notebooks")
    assert tiny["notebook_env"] == {
        "VLM_TUTORIAL_BACKEND": "sglang",
        "VLM_TUTORIAL_MODEL_PATH": "tiny",
    }
    assert tiny["stages"] == ["notebooks"] and tiny["mode"] == "tiny"
    assert set(tiny["notebooks"]) == {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    real = _plan("--real")
    assert real["mode"] == "real" and real["stages"] == ["tests", "notebooks", "nbval"]
    assert "VLM_TUTORIAL_MODEL_PATH" not in real["notebook_env"]


def test_gpu_check_refuses_to_run_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = _run(str(GPU_CHECK), "--stage", "tests", "--results", str(tmp_path / "r.json"))
    assert proc.returncode == 2
    assert "no CUDA GPU" in proc.stdout
    assert not (tmp_path / "r.json").exists()


def test_strip_notebook_keeps_one_image_and_shortens_long_text(gpu_check: ModuleType) -> None:
    image = {
        "output_type": "display_data",
        "data": {"image/png": "A" * 5000, "text/plain": "<img>"},
    }
    nb = {
        "cells": [
            {"cell_type": "code", "outputs": [copy.deepcopy(image)]},
            {
                "cell_type": "code",
                "outputs": [copy.deepcopy(image), {"output_type": "stream", "text": "x" * 50_000}],
            },
        ],
        "metadata": {"widgets": {"state": {}}},
    }
    out = gpu_check.strip_notebook(nb, keep_images=1, max_chars=1000)
    first, second = out["cells"][0]["outputs"][0], out["cells"][1]["outputs"][0]
    assert first["data"]["image/png"] == "A" * 5000
    assert "image/png" not in second["data"] and "omitted" in second["data"]["text/plain"]
    stream = out["cells"][1]["outputs"][1]["text"]
    assert len(stream) < 1200 and "omitted" in stream
    assert "widgets" not in out["metadata"]


def test_junit_cases_reads_outcomes(gpu_check: ModuleType, tmp_path: Path) -> None:
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite><testcase classname="t" name="a" time="1.5"/>'
        '<testcase classname="t" name="b" time="0"><skipped message="no GPU"/></testcase>'
        '<testcase classname="t" name="c" time="0.1"><failure message="boom"/></testcase>'
        "</testsuite></testsuites>"
    )
    cases = gpu_check.junit_cases(xml)
    assert [c["outcome"] for c in cases] == ["passed", "skipped", "failed"]
    assert gpu_check.summarize(cases) == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    assert cases[1]["message"] == "no GPU"


# --------------------------------------------------------------------------- engine arguments


def test_engine_args_json_holds_the_kit_settings(server_args: set[str]) -> None:
    args = json.loads(ENGINE_ARGS.read_text())
    assert args["attention_backend"] == "triton"  # FA3 is not in the trimmed sgl_kernel
    assert args["mm_attention_backend"] == "triton_attn"  # the ViT default on Hopper is FA3
    assert args["sampling_backend"] == "pytorch"
    # CUDA graphs on: decode runs at the hardware's pace (about 4.4 ms per token against 35 ms
    # off, measured on an H200 with this kit); the prefill stays eager (images vary in length).
    assert args["disable_cuda_graph"] is False and args["disable_prefill_cuda_graph"] is True
    assert args["cuda_graph_max_bs_decode"] >= 8  # the benchmark's batch of 8
    assert 0 < args["mem_fraction_static"] < 1
    unknown = set(args) - server_args
    assert not unknown, f"not sglang 0.5.17 ServerArgs fields: {sorted(unknown)}"


def test_gpu_tests_use_real_server_args(server_args: set[str], support: ModuleType) -> None:
    used = set(support.COMPARE_ENGINE_ARGS) | {
        "tp_size",
        "enable_fp32_lm_head",
        "enable_multimodal",
    }
    assert used <= server_args, sorted(used - server_args)
    assert "a_made_up_flag" not in server_args  # the list is not a catch-all


# --------------------------------------------------------------------------- GPU test support code


@pytest.fixture(scope="module")
def support() -> ModuleType:
    return _load(ROOT / "tests" / "gpu" / "gpu_support.py", "gpu_support_for_cpu_test")


def _out(ids: list[int], tops: list[list[tuple[float, int]]] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if tops is not None:
        meta["output_top_logprobs"] = [[(lp, tok, None) for lp, tok in step] for step in tops]
    return {"output_ids": ids, "meta_info": meta}


def test_identical_greedy_outputs_pass(support: ModuleType) -> None:
    result = support.assert_same_greedy("a", _out([1, 2, 3]), "b", _out([1, 2, 3]))
    assert result.identical and result.leading_agreement == 3


def test_any_difference_fails_and_says_where(support: ModuleType) -> None:
    """No tolerance: even a near tie (a 0.05-nat gap) is a failure, described with the log-probs."""
    tops = [[(-0.1, 1)], [(-0.50, 2), (-0.55, 9)], [(-0.2, 3)]]
    with pytest.raises(AssertionError, match="agree on 1 leading tokens.*top-2 gap 0.05"):
        support.assert_same_greedy("a", _out([1, 2, 3], tops), "b", _out([1, 9, 4]))
    with pytest.raises(AssertionError, match="agree on 2 leading tokens"):
        support.assert_same_greedy("a", _out([1, 2, 3]), "b", _out([1, 2]))


def test_min_margin_is_the_smallest_top2_gap(support: ModuleType) -> None:
    tops = [[(-0.01, 1), (-6.0, 4)], [(-0.2, 2), (-3.2, 9)], [(-0.1, 3), (-9.0, 5)]]
    assert support.min_margin(_out([1, 2, 3], tops)) == pytest.approx(3.0)
    assert support.min_margin(_out([1, 2, 3])) is None


def test_batch_request_merges_single_requests(support: ModuleType) -> None:
    singles = [
        {"input_ids": [1, 2], "image_data": [{"k": 1}]},
        {"input_ids": [3], "image_data": [{"k": 2}]},
    ]
    assert support.batch_request(singles) == {
        "input_ids": [[1, 2], [3]],
        "image_data": [[{"k": 1}], [{"k": 2}]],
    }


# --------------------------------------------------------------------------- renderer


def test_render_fixture_has_a_row_per_family_and_format(renderer: ModuleType) -> None:
    results = json.loads(FIXTURE.read_text())
    assert "TEST FIXTURE" in results["_comment"]
    page = renderer.render(results, source="fixture.json")
    for family in ("qwen2_5_vl", "llama4"):
        for fmt in FORMATS:
            rows = [line for line in page.splitlines() if line.startswith(f"| {family} | {fmt} |")]
            assert len(rows) == 1, (family, fmt)
    assert "| qwen2_5_vl | raw | 30 | 1.5 | 0.02 | 90 | [11, 22, 33, 44] |" in page
    assert "`tools/gpu_check.py --kit .gpu-kit --stage tests`" in page
    assert "| qwen2_5_vl.ipynb | 0 | 60 | SGLang (sglang.Engine) |" in page
    assert "3/4" in page  # teacher-forced agreement of the fixture's Llama 4 parity
    assert "tp_size=2 needs 2 GPUs" in page


def test_render_handles_a_results_file_with_only_the_notebooks(renderer: ModuleType) -> None:
    page = renderer.render({"command": "tools/gpu_check.py --stage notebooks", "notebooks": {}})
    assert "No per-format measurements recorded." in page
    assert "Not run yet." in page


def test_render_cli_writes_markdown(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = _run(str(ROOT / "scripts" / "render_gpu_results.py"), str(FIXTURE), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("# GPU results")


# --------------------------------------------------------------------------- pytest -m gpu on a CPU


def test_pytest_m_gpu_on_a_cpu_collects_and_skips_with_the_reason() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the GPU tests would run")
    proc = _run("-m", "pytest", "-m", "gpu", "tests/gpu", "-q", "-rs", "-p", "no:cacheprovider")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert "skipped" in text and " passed" not in text and "failed" not in text
    assert "needs an NVIDIA GPU and sglang==0.5.17" in text
    assert "no tests ran" not in text  # exit code 5 would mean nothing was collected


# --------------------------------------------------------------------------- kit script and workflows


def test_make_gpu_kit_script_is_valid_bash_with_the_pinned_versions() -> None:
    proc = subprocess.run(
        ["bash", "-n", str(ROOT / "scripts" / "make-gpu-kit.sh")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    text = (ROOT / "scripts" / "make-gpu-kit.sh").read_text()
    for pin in (
        "sglang==0.5.17",
        "transformers==5.12.1",
        "tokenizers==0.22.2",
        "papermill==",
        "nbval==",
        "ipykernel==",
    ):
        assert pin in text
    models = text.split("TF_MODELS=(", 1)[1].split(")", 1)[0].split()
    for needed in ("auto", "qwen2_5_vl", "qwen2_vl", "llama4"):
        assert needed in models


def _workflow(name: str) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as True
    return data


def _steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in data["jobs"].values() for step in job.get("steps", [])]


def test_gpu_workflow_runs_gpu_check_on_a_gpu_runner_and_uploads_results() -> None:
    data = _workflow("gpu.yml")
    assert "workflow_dispatch" in data["on"] and data["on"]["schedule"][0]["cron"]
    job = next(iter(data["jobs"].values()))
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    runs = " ".join(step.get("run", "") for step in _steps(data))
    assert "environment.yml" in runs and "tools/gpu_check.py" in runs
    uploads = [
        s for s in _steps(data) if str(s.get("uses", "")).startswith("actions/upload-artifact")
    ]
    paths = " ".join(str(s["with"]["path"]) for s in uploads)
    assert "docs/gpu/results.json" in paths and ".ipynb" in paths
    assert all(s.get("if") == "always()" for s in uploads)


def test_cpu_workflow_runs_the_ci_script_on_python_3_11() -> None:
    data = _workflow("cpu.yml")
    job = next(iter(data["jobs"].values()))
    assert str(job["runs-on"]).startswith("ubuntu")
    setups = [s for s in _steps(data) if str(s.get("uses", "")).startswith("actions/setup-python")]
    assert setups and str(setups[0]["with"]["python-version"]) == "3.11"
    assert any(s.get("run", "").strip().endswith("bash .ci/run") for s in _steps(data))


# --------------------------------------------------------------------------- the record


def test_the_record_holds_no_machine_paths(gpu_check: ModuleType) -> None:
    repo = str(gpu_check.REPO)
    env = {"VLM_TUTORIAL_CACHE": "/tmp/box/cache", "VLM_TUTORIAL_KIT_TARGET": "/tmp/vlm-gpu-kit"}
    record = {
        "environment": {"executable": "/opt/torch/.venv/bin/python3"},
        "build": {"tiny_models": {"llama4:tiny": {"path": "/tmp/box/cache/llama4-tiny-abc"}}},
        "notebooks": {"x.ipynb": {"copied_to": f"{repo}/docs/gpu/x.ipynb"}},
        "kit": {"target": "/tmp/vlm-gpu-kit", "site": "/tmp/vlm-gpu-kit/site"},
    }
    pairs = gpu_check.machine_paths("/opt/torch/.venv/bin/python3", env)
    clean = gpu_check.sanitize(record, pairs)
    text = json.dumps(clean)
    assert "/tmp/" not in text and "/opt/" not in text and repo not in text
    assert clean["notebooks"]["x.ipynb"]["copied_to"] == "docs/gpu/x.ipynb"
    assert clean["build"]["tiny_models"]["llama4:tiny"]["path"] == "$VLM_TUTORIAL_CACHE/llama4-tiny-abc"
    assert gpu_check.drop_out_dir("tools/gpu_check.py --kit k --out-dir /tmp/o --stage tests") == (
        "tools/gpu_check.py --kit k --stage tests"
    )


def test_engine_logs_leave_the_notebook_copies(gpu_check: ModuleType) -> None:
    nb = {
        "cells": [
            {"cell_type": "code", "outputs": [
                {"output_type": "stream", "name": "stderr", "text": "Fail to set RLIMIT_NOFILE\n"},
                {"output_type": "stream", "name": "stdout", "text": "raw: prompt_tokens=9\n"},
            ]},
            {"cell_type": "markdown", "source": "text"},
        ]
    }
    clean, engine_log = gpu_check.split_engine_log(nb)
    assert clean["cells"][0]["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "raw: prompt_tokens=9\n"}
    ]
    assert "cell 0" in engine_log and "RLIMIT_NOFILE" in engine_log


def test_test_parts_merge_into_one_complete_record(gpu_check: ModuleType, tmp_path: Path, monkeypatch) -> None:
    """Two calls, each running some GPU test files, add up to one record covering tests/gpu."""
    files = gpu_check.gpu_test_files()
    assert "tests/gpu/test_sglang_formats.py" in files and len(files) >= 3

    class FakeRunner:
        """Runs nothing: writes the junit file and the record pytest would have written."""

        def run(self, cmd, extra_env=None, drop_env=()):
            names = [a for a in cmd if a.startswith("tests/gpu")]
            cases = "".join(
                f'<testcase classname="{Path(n).stem}" name="t" file="{n}" time="1.0"/>' for n in names
            )
            (gpu_check.BUILD / "tests-junit.xml").write_text(f"<testsuite>{cases}</testsuite>")
            Path(extra_env["VLM_TUTORIAL_GPU_RECORD"]).write_text(
                json.dumps({"margins": {Path(names[0]).stem: 5.0}})
            )
            return 0, 2.0

    monkeypatch.setattr(gpu_check, "BUILD", tmp_path)
    results: dict = {}
    half = len(files) // 2
    for chunk in (files[:half], files[half:]):
        args = gpu_check.parse_args(["--stage", "tests", "--test-files", *chunk])
        assert gpu_check.stage_tests(FakeRunner(), "python3", args, results) == 0
        if chunk is files[:half]:
            assert results["tests"]["complete"] is False
    tests = results["tests"]
    assert tests["complete"] is True and len(tests["parts"]) == 2
    assert tests["summary"]["passed"] == len(files)
    assert set(tests["record"]["margins"]) == {Path(files[0]).stem, Path(files[half]).stem}
