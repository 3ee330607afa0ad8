"""The GPU path's tooling, checked on a CPU: gpu_check's command line and record, the kit's
engine arguments, the kit builder, the results renderer, the GPU workflow, and ``pytest -m gpu``
skipping cleanly."""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tools import gpu_check, make_gpu_kit, render_gpu_results

ROOT = Path(__file__).resolve().parents[2]
ENGINE_ARGS = ROOT / "tools" / "gpu_engine_args.json"
SERVER_ARGS = ROOT / "tests" / "data" / "sglang-0.5.17-server-args.txt"
FIXTURE = ROOT / "tests" / "data" / "gpu_results_example.json"
FORMATS = ("raw", "processor_output", "precomputed_embedding")
ALLOWED_VARIABLES = {
    "VLM_TUTORIAL_CACHE",
    "VLM_TUTORIAL_ENGINE_ARGS",
    "VLM_TUTORIAL_BACKEND",
    "VLM_TUTORIAL_MODEL_PATH",
}
#: The engine's log lines that reached the recorded notebooks before (issue 22), as logged.
NOISE = [
    "[2026-12-01 20:57:07] Fail to set RLIMIT_NOFILE: current limit exceeds maximum limit\n",
    "[2026-12-01 20:57:08] Ignore import error when loading sglang.srt.multimodal.processors."
    "inkling: No module named 'helion'\n",
    "[2026-12-01 20:57:08] torchcodec is not installed; audio inputs will fail at request time\n",
    "[2026-12-01 20:57:09] SGLANG_USE_CUDA_IPC_TRANSPORT is deprecated; use "
    "--mm-feature-transport=cuda_ipc\n",
    "[transformers] The `use_fast` parameter is deprecated and will be removed in a future "
    "version.\n",
]


@pytest.fixture(scope="module")
def server_args() -> set[str]:
    lines = SERVER_ARGS.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600
    )


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VLM_TUTORIAL_")}


def _plan(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = _run("tools/gpu_check.py", "--dry-run", *args, env=env or _clean_env())
    assert proc.returncode == 0, proc.stderr
    plan: dict[str, Any] = json.loads(proc.stdout)
    return plan


# --------------------------------------------------------------------------- gpu_check's command line


@pytest.mark.parametrize("how", [["tools/gpu_check.py"], ["-m", "tools.gpu_check"]])
def test_gpu_check_help_lists_the_stages_and_options(how: list[str]) -> None:
    proc = _run(*how, "--help")
    assert proc.returncode == 0, proc.stderr
    for word in ("--stage", "--kit", "--real", "--out-dir", "--timeout", "--run-diagnostics"):
        assert word in proc.stdout
    for stage in ("tests", "notebooks", "nbval", "all"):
        assert stage in proc.stdout


def test_gpu_check_rejects_an_unknown_stage() -> None:
    proc = _run("tools/gpu_check.py", "--stage", "benchmarks", "--dry-run")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_the_kits_engine_arguments_come_only_with_kit_and_the_machines_own_win() -> None:
    with_kit = _plan("--kit", ".gpu-kit", "--stage", "tests")
    assert json.loads(with_kit["engine_args_env"]) == json.loads(ENGINE_ARGS.read_text())
    assert _plan("--stage", "tests")["engine_args_env"] is None  # a full install: no file
    own = dict(_clean_env(), VLM_TUTORIAL_ENGINE_ARGS='{"attention_backend": "flashinfer"}')
    merged = json.loads(_plan("--kit", ".gpu-kit", env=own)["engine_args_env"])
    assert merged["attention_backend"] == "flashinfer"
    assert merged["sampling_backend"] == json.loads(ENGINE_ARGS.read_text())["sampling_backend"]


def test_switches_reach_pytest_as_options_not_variables() -> None:
    plain = _plan("--stage", "tests")["pytest_command"]
    assert "--gpu-real" not in plain and "--run-diagnostics" not in plain
    assert any(word.startswith("--gpu-record=") for word in plain)
    assert plain[plain.index("-m", 2) + 1] == "gpu"  # `-m gpu`, after `python -m pytest`
    both = _plan("--real", "--run-diagnostics", "--stage", "tests")["pytest_command"]
    assert "--gpu-real" in both and "--run-diagnostics" in both


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
    assert real["notebook_env"]["VLM_TUTORIAL_MODEL_PATH"] is None  # removed: the real ids
    assert _plan("--notebooks", "llama4", "--stage", "nbval")["notebooks"] == ["llama4.ipynb"]


def test_gpu_check_refuses_to_run_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = _run("tools/gpu_check.py", "--stage", "tests", "--results", str(tmp_path / "r.json"))
    assert proc.returncode == 2
    assert "no CUDA GPU" in proc.stdout
    assert not (tmp_path / "r.json").exists()


def test_only_the_four_variables_are_read_by_the_gpu_tooling() -> None:
    files = [
        *sorted((ROOT / "tools").glob("*.py")),
        *sorted((ROOT / "tests" / "gpu").glob("*.py")),
        ROOT / "tests" / "conftest.py",
        ROOT / ".github" / "workflows" / "gpu.yml",
    ]
    mine = [p for p in files if p.name not in ("gpu_bench.py", "realscale_checkpoint.py")]
    found = {
        name: str(path.relative_to(ROOT))
        for path in mine
        for name in re.findall(r"VLM_TUTORIAL_[A-Z_]+", path.read_text())
    }
    assert set(found) <= ALLOWED_VARIABLES, {
        k: v for k, v in found.items() if k not in ALLOWED_VARIABLES
    }


# --------------------------------------------------------------------------- the recorded notebooks


def _stream(name: str, text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


def test_strip_notebook_keeps_one_image_and_shortens_long_text() -> None:
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


def test_the_engine_log_leaves_the_notebook_for_a_file_beside_it() -> None:
    teaching = "raw: prompt_tokens=9\nanswer: 'a red circle and a blue square'\n"
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "outputs": [
                    _stream("stderr", "".join(NOISE[:3])),
                    # SGLang's subprocesses also write to stdout, between the cell's own lines.
                    _stream("stdout", NOISE[3] + teaching + NOISE[4]),
                ],
            },
            {"cell_type": "markdown", "source": "text"},
        ]
    }
    assert len(gpu_check.engine_noise(copy.deepcopy(nb))) == len(NOISE)
    clean, engine_log = gpu_check.split_engine_log(nb)
    assert clean["cells"][0]["outputs"] == [_stream("stdout", teaching)]
    assert gpu_check.engine_noise(clean) == []
    for line in NOISE:
        assert line.strip() in engine_log
    assert "cell 0" in engine_log


def test_the_copy_and_its_engine_log_carry_no_machine_paths(tmp_path: Path) -> None:
    home, repo = str(Path.home()), str(gpu_check.REPO)
    warning = "/opt/torch/.venv/lib/python3.12/site-packages/tqdm/auto.py:21: TqdmWarning\n"
    executed = {
        "cells": [
            {
                "cell_type": "code",
                "outputs": [
                    _stream("stdout", "engine_args: {'mem_fraction_static': 0.6, 'tp_size': 1}\n"),
                    _stream("stdout", f"Checkpoint: {home}/.cache/vlm/qwen\nsaved {repo}/x\n"),
                    _stream("stderr", warning + NOISE[0]),
                ],
            }
        ],
        "metadata": {},
    }
    source = tmp_path / "executed.ipynb"
    source.write_text(json.dumps(executed))
    target = tmp_path / "docs" / "qwen2_5_vl.ipynb"
    pairs = gpu_check.machine_paths("/opt/torch/.venv/bin/python3", {})
    entry = gpu_check.copy_executed(source, target, pairs)
    assert entry["engine_args"] == {"mem_fraction_static": 0.6, "tp_size": 1}
    assert entry["engine_noise_left"] == []
    copy_text = target.read_text()
    log_text = target.with_suffix(".engine.log").read_text()
    for text in (copy_text, log_text):
        assert home not in text and repo not in text and "/opt/" not in text
    assert "~/.cache/vlm/qwen" in copy_text and "saved x" in copy_text
    assert "site-packages/tqdm/auto.py" in log_text and "RLIMIT_NOFILE" in log_text


def test_the_notebooks_stage_copies_each_notebook_without_its_engine_log(
    tmp_path: Path, monkeypatch
) -> None:
    """What the notebooks stage keeps of a run: a clean copy, the log beside it, the arguments."""

    class FakeRunner:
        """Writes what ``python -m tools.run_notebooks`` would: the executed copy and a summary."""

        env: dict[str, str] = {}
        calls: list[Any] = []

        def run(self, cmd: list[str], extra_env: Any = None) -> tuple[int, float]:
            self.calls.append((cmd, extra_env))
            outputs = [_stream("stderr", NOISE[0]), _stream("stdout", "Engine: SGLang\n")]
            meta = {"vlm_tutorial": {"family": "llama4", "engine": "SGLang (sglang.Engine)"}}
            nb = {"cells": [{"cell_type": "code", "outputs": outputs}], "metadata": meta}
            out = Path(cmd[cmd.index("--out") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / Path(cmd[3]).name).write_text(json.dumps(nb))
            Path(cmd[cmd.index("--summary") + 1]).write_text("[]")
            return 0, 1.0

    monkeypatch.setattr(gpu_check, "BUILD", tmp_path / "build")
    docs = tmp_path / "docs"
    argv = ["--stage", "notebooks", "--notebooks", "llama4", "--results", str(docs / "r.json")]
    results: dict[str, Any] = {"engine_args": {"llama4": {"mem_fraction_static": 0.8}}}
    runner = FakeRunner()
    assert gpu_check.stage_notebooks(runner, "python3", gpu_check.parse_args(argv), results) == 0  # type: ignore[arg-type]
    ((cmd, extra_env),) = runner.calls
    assert cmd[1:4] == ["-m", "tools.run_notebooks", "notebooks/llama4.ipynb"]
    assert extra_env == {"VLM_TUTORIAL_BACKEND": "sglang", "VLM_TUTORIAL_MODEL_PATH": "tiny"}
    entry = results["notebooks"]["llama4.ipynb"]
    assert entry["engine_args"] == {"mem_fraction_static": 0.8}  # the family's, not printed
    assert entry["engine_noise_left"] == []
    copied = json.loads((docs / "llama4.ipynb").read_text())
    assert copied["cells"][0]["outputs"] == [_stream("stdout", "Engine: SGLang\n")]
    assert "RLIMIT_NOFILE" in (docs / "llama4.engine.log").read_text()


def test_junit_cases_reads_outcomes(tmp_path: Path) -> None:
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


def test_the_record_holds_no_machine_paths() -> None:
    repo = str(gpu_check.REPO)
    env = {"VLM_TUTORIAL_CACHE": "/tmp/box/cache"}
    record = {
        "environment": {"executable": "/opt/torch/.venv/bin/python3"},
        "build": {"tiny_models": {"llama4:tiny": {"path": "/tmp/box/cache/llama4-tiny-abc"}}},
        "notebooks": {"x.ipynb": {"copied_to": f"{repo}/docs/gpu/x.ipynb"}},
        "kit": {"target": "/tmp/vlm-gpu-kit", "site": "/tmp/vlm-gpu-kit/site"},
        "home": f"{Path.home()}/.cache/flashinfer",
    }
    pairs = gpu_check.machine_paths("/opt/torch/.venv/bin/python3", env)
    clean = gpu_check.sanitize(record, pairs)
    text = json.dumps(clean)
    assert "/tmp/" not in text and "/opt/" not in text and repo not in text
    assert clean["notebooks"]["x.ipynb"]["copied_to"] == "docs/gpu/x.ipynb"
    assert (
        clean["build"]["tiny_models"]["llama4:tiny"]["path"]
        == "$VLM_TUTORIAL_CACHE/llama4-tiny-abc"
    )
    assert clean["kit"]["site"] == "<kit>/site" and clean["home"] == "~/.cache/flashinfer"
    assert gpu_check.drop_out_dir("tools/gpu_check.py --kit k --out-dir /tmp/o --stage tests") == (
        "tools/gpu_check.py --kit k --stage tests"
    )


def test_test_parts_merge_into_one_complete_record(tmp_path: Path, monkeypatch) -> None:
    """Two calls, each running some GPU test files, add up to one record covering tests/gpu."""
    files = gpu_check.gpu_test_files()
    assert "tests/gpu/test_sglang_formats.py" in files and len(files) >= 3

    class FakeRunner:
        """Runs nothing: writes the junit file and the record pytest would have written."""

        def run(self, cmd: list[str], extra_env: Any = None) -> tuple[int, float]:
            names = [a for a in cmd if a.startswith("tests/gpu")]
            cases = "".join(
                f'<testcase classname="{Path(n).stem}" name="t" file="{n}" time="1.0"/>'
                for n in names
            )
            (gpu_check.BUILD / "tests-junit.xml").write_text(f"<testsuite>{cases}</testsuite>")
            (record,) = [a.split("=", 1)[1] for a in cmd if a.startswith("--gpu-record=")]
            Path(record).write_text(json.dumps({"margins": {Path(names[0]).stem: 5.0}}))
            return 0, 2.0

    monkeypatch.setattr(gpu_check, "BUILD", tmp_path)
    results: dict[str, Any] = {}
    half = len(files) // 2
    for chunk in (files[:half], files[half:]):
        args = gpu_check.parse_args(["--stage", "tests", "--test-files", *chunk])
        assert gpu_check.stage_tests(FakeRunner(), "python3", args, results) == 0  # type: ignore[arg-type]
        if chunk is files[:half]:
            assert results["tests"]["complete"] is False
    tests = results["tests"]
    assert tests["complete"] is True and len(tests["parts"]) == 2
    assert tests["summary"]["passed"] == len(files)
    assert set(tests["record"]["margins"]) == {Path(files[0]).stem, Path(files[half]).stem}


# --------------------------------------------------------------------------- engine arguments


def test_engine_args_json_holds_only_what_the_trimmed_install_needs(server_args: set[str]) -> None:
    args = json.loads(ENGINE_ARGS.read_text())
    assert args["attention_backend"] == "triton"  # FA3 is not in the trimmed sgl_kernel
    assert args["mm_attention_backend"] == "triton_attn"  # the ViT default on Hopper is FA3
    assert args["sampling_backend"] == "pytorch"
    # CUDA graphs on for decode (about 4.4 ms per token against 35 ms off, on an H200 with this
    # kit); the prefill stays eager (images vary in length).
    assert args["disable_cuda_graph"] is False and args["disable_prefill_cuda_graph"] is True
    assert args["cuda_graph_max_bs_decode"] >= 8  # the benchmark's batch of 8
    # The memory fraction is the family registry's: one value per model, not per install.
    assert "mem_fraction_static" not in args
    unknown = set(args) - server_args
    assert not unknown, f"not sglang 0.5.17 ServerArgs fields: {sorted(unknown)}"


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llama4"])
def test_the_kits_file_merges_between_the_registry_and_the_caller(family: str) -> None:
    from vlm_tutorial.families import get_family
    from vlm_tutorial.settings import merge_engine_args

    real = get_family(family).real_model_id
    env = {"VLM_TUTORIAL_ENGINE_ARGS": ENGINE_ARGS.read_text()}
    merged = merge_engine_args(real, {"sampling_backend": "flashinfer"}, env=env)
    registry = get_family(family).engine_args
    assert merged["mem_fraction_static"] == registry["mem_fraction_static"]
    assert merged["attention_backend"] == "triton"  # the install's file over the registry
    assert merged["sampling_backend"] == "flashinfer"  # the caller over the install's file


def _gpu_module(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A module of tests/gpu, imported as pytest imports it there (tests/gpu on sys.path)."""
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "gpu"))
    spec = importlib.util.spec_from_file_location(
        f"{name}_on_cpu", ROOT / "tests" / "gpu" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def support(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _gpu_module("gpu_support", monkeypatch)


def test_gpu_tests_use_real_server_args(server_args: set[str], support: ModuleType) -> None:
    used = set(support.COMPARE_ENGINE_ARGS) | {
        "tp_size",
        "enable_fp32_lm_head",
        "enable_multimodal",
    }
    assert used <= server_args, sorted(used - server_args)
    assert "a_made_up_flag" not in server_args  # the list is not a catch-all


# --------------------------------------------------------------------------- GPU test support code


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


def test_the_lifecycle_test_runs_the_notebooks_own_engine_cell_twice(monkeypatch) -> None:
    lifecycle = _gpu_module("test_engine_lifecycle", monkeypatch)
    for notebook in ("qwen2_5_vl.ipynb", "llama4.ipynb"):
        nb, first = lifecycle.engine_cell_rerun(notebook, real_models=False)
        sources = [cell.source for cell in nb.cells]
        assert "sglang.Engine(model_path" in sources[first]
        assert sources[first + 1] == sources[first]  # the same cell, run again
        assert "engine.shutdown()" in sources[-1] and len(sources) == first + 3
        tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
        assert sources[tagged[0] + 1] == "model_path = 'tiny'\nbackend = 'sglang'"


# --------------------------------------------------------------------------- the kit builder


def test_the_kit_pins_sglang_and_its_transformers() -> None:
    pins = [*make_gpu_kit.REPACKED, make_gpu_kit.TRANSFORMERS, make_gpu_kit.TOKENIZERS]
    pins += make_gpu_kit.ENGINE_DEPS + make_gpu_kit.NOTEBOOK
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", pin) for pin in pins), pins
    for pin in ("sglang==0.5.17", "transformers==5.12.1", "tokenizers==0.22.2"):
        assert pin in pins
    names = {pin.split("==")[0] for pin in pins}
    assert {"papermill", "nbval", "nbclient", "ipykernel"} <= names
    assert len(names) == len(pins)  # one version per package
    assert {"auto", "qwen2_5_vl", "qwen2_vl", "llama4"} <= set(make_gpu_kit.TF_MODELS)


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    record = "x-1.0.dist-info/RECORD"
    rows = [f"{name},sha256=stale,1" for name in files] + [f"{record},,"]
    with zipfile.ZipFile(path, "w") as zout:
        for name, data in files.items():
            zout.writestr(name, data)
        zout.writestr(record, "\n".join(rows) + "\n")
    return path


def test_repack_drops_members_and_rewrites_the_record(tmp_path: Path) -> None:
    files = {"x/__init__.py": b"A = 1\n", "x/big/ops.so": b"\0" * 1000, "x/util.py": b"B = 2\n"}
    src = _wheel(tmp_path / "x-1.0-py3-none-any.whl", files)
    dst = make_gpu_kit.repack(src, tmp_path / "out", drop=["x/big/*"])
    with zipfile.ZipFile(dst) as zin:
        names = set(zin.namelist())
        rows = zin.read("x-1.0.dist-info/RECORD").decode().splitlines()
    assert names == {"x/__init__.py", "x/util.py", "x-1.0.dist-info/RECORD"}
    for name in ("x/__init__.py", "x/util.py"):
        digest = base64.urlsafe_b64encode(hashlib.sha256(files[name]).digest()).rstrip(b"=")
        assert f"{name},sha256={digest.decode()},{len(files[name])}" in rows
    assert not any(row.startswith("x/big/") for row in rows)


def test_repack_keeps_the_named_model_folders_and_those_mapped_to_kept_classes(
    tmp_path: Path,
) -> None:
    auto = "transformers/models/auto/"
    files = {
        f"{auto}configuration_auto.py": b'SPECIAL_MODEL_TYPE_TO_MODULE_NAME = {"odd-type": "odd"}\n',
        f"{auto}tokenization_auto.py": (
            b'MAPPING = [("audioflamingo3", ("Qwen2Tokenizer", None)),\n'
            b'           ("odd-type", ("Llama4Processor",)), ("bert", ("BertTokenizer",))]\n'
        ),
        "transformers/models/audioflamingo3/__init__.py": b"",
        "transformers/models/odd/__init__.py": b"",
        "transformers/models/bert/__init__.py": b"",
        "transformers/models/llama4/__init__.py": b"",
        "transformers/models/__init__.py": b"",
    }
    src = _wheel(tmp_path / "transformers-5.12.1-py3-none-any.whl", files)
    dst = make_gpu_kit.repack(
        src,
        tmp_path / "out",
        keep_parent="transformers/models",
        keep=["auto", "llama4"],
        keep_mapped=["Qwen2Tokenizer", "Llama4Processor"],
    )
    with zipfile.ZipFile(dst) as zin:
        folders = {n.split("/")[2] for n in zin.namelist() if n.count("/") >= 3}
        assert "transformers/models/__init__.py" in zin.namelist()
    assert folders == {"auto", "llama4", "audioflamingo3", "odd"}


def test_the_manifest_adds_up_the_groups(tmp_path: Path) -> None:
    for sub, size in (("whl", 3000), ("whl-tf", 2000), ("whl-nb", 1000)):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / f"{sub}-1.0-py3-none-any.whl").write_bytes(b"\0" * size)
    manifest = make_gpu_kit.write_manifest(tmp_path)
    assert manifest["bytes"] == {"whl": 3000, "whl-tf": 2000, "whl-nb": 1000}
    assert manifest["total_bytes"] == 6000 and manifest["device_call_limit_bytes"] == 64 * 2**20
    assert json.loads((tmp_path / "kit.json").read_text()) == manifest


# --------------------------------------------------------------------------- renderer


def test_render_fixture_has_a_row_per_family_and_format() -> None:
    results = json.loads(FIXTURE.read_text())
    assert "TEST FIXTURE" in results["_comment"]
    page = render_gpu_results.render(results, source="fixture.json")
    for family in ("qwen2_5_vl", "llama4"):
        for fmt in FORMATS:
            rows = [line for line in page.splitlines() if line.startswith(f"| {family} | {fmt} |")]
            assert len(rows) == 1, (family, fmt)
    assert "| qwen2_5_vl | raw | 30 | 1.5 | 0.02 | 90 | [11, 22, 33, 44] |" in page
    assert "3/4" in page  # teacher-forced agreement of the fixture's Llama 4 parity
    assert "tp_size=2 needs 2 GPUs" in page


def test_render_says_which_engine_arguments_each_run_used() -> None:
    page = render_gpu_results.render(json.loads(FIXTURE.read_text()), source="fixture.json")
    assert "- qwen2_5_vl engine arguments" in page and '"mem_fraction_static": 0.61' in page
    assert '"mem_fraction_static": 0.81' in page
    notebook_row = next(line for line in page.splitlines() if line.startswith("| qwen2_5_vl.ipynb"))
    assert "| 0.63 |" in notebook_row
    engine_row = next(
        line for line in page.splitlines() if line.startswith("| test_sglang_formats")
    )
    assert engine_row.endswith("| 0.62 |")


def test_render_writes_commands_as_code_so_their_dashes_stay() -> None:
    page = render_gpu_results.render(json.loads(FIXTURE.read_text()), source="fixture.json")
    assert "`tools/gpu_check.py --kit .gpu-kit --stage tests`" in page
    outside_code = re.sub(r"`[^`]*`", "", page)
    assert not re.search(r"--[a-z]", outside_code)  # no option left outside a code span


def test_every_table_row_has_as_many_cells_as_its_header() -> None:
    page = render_gpu_results.render(json.loads(FIXTURE.read_text()), source="fixture.json")
    cells = 0
    for line in page.splitlines():
        if not line.startswith("| "):
            cells = 0
            continue
        count = len(re.findall(r"(?<!\\)\|", line)) - 1
        cells = cells or count  # the header row sets the width of its table
        assert count == cells, line


def test_render_handles_a_results_file_with_only_the_notebooks() -> None:
    page = render_gpu_results.render(
        {"command": "tools/gpu_check.py --stage notebooks", "notebooks": {}}
    )
    assert "No per-format measurements recorded." in page
    assert "Not run yet." in page


def test_render_cli_writes_markdown(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = _run("-m", "tools.render_gpu_results", str(FIXTURE), "-o", str(out))
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


# --------------------------------------------------------------------------- workflows


def _workflow(name: str) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data: dict[str, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
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
    assert "docs/gpu/results.json" in paths and ".ipynb" in paths and ".engine.log" in paths
    assert all(s.get("if") == "always()" for s in uploads)


def test_cpu_workflow_runs_the_ci_script_on_python_3_11() -> None:
    data = _workflow("cpu.yml")
    job = next(iter(data["jobs"].values()))
    assert str(job["runs-on"]).startswith("ubuntu")
    setups = [s for s in _steps(data) if str(s.get("uses", "")).startswith("actions/setup-python")]
    assert setups and str(setups[0]["with"]["python-version"]) == "3.11"
    assert any(s.get("run", "").strip().endswith("bash .ci/run") for s in _steps(data))


def test_test_files_may_be_named_without_their_folder():
    from tools import gpu_check

    args = gpu_check.parse_args(["--test-files", "test_sglang_formats.py", "tests/gpu/x.py"])
    assert args.test_files == ["tests/gpu/test_sglang_formats.py", "tests/gpu/x.py"]
    assert gpu_check.parse_args([]).test_files is None
