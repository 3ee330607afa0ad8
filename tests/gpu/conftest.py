"""Fixtures of the GPU tests: ``pytest -m gpu tests/gpu`` (what ``tools/gpu_check.py`` runs).

Every test here carries the ``gpu`` marker. Where there is no CUDA GPU or no
sglang, the tests are still collected and each is skipped with the reason,
so ``pytest -m gpu`` on a CPU machine reports the skips and exits 0. Tests
marked ``diagnostics`` run only with ``--run-diagnostics``.

Engines: one ``sglang.Engine`` per model family per test module
(:func:`sglang_engine`), opened through :func:`vlm_bench.engines.open_engine` with
``disable_radix_cache=True``; ``SGLANG_VLM_CACHE_SIZE_MB=0`` is set below,
before anything imports sglang, so no request reuses another's vision
embedding. Engine arguments merge as everywhere: the family registry's values,
then the machine's ``VLM_TUTORIAL_ENGINE_ARGS``, then the test's.

Models: the tiny checkpoints, or the real model ids with ``--gpu-real``.

Measurements: tests put what they measure into the ``gpu_record`` dict; at the
end of the session it is written as JSON to the file of ``--gpu-record FILE``
(``tools/gpu_check.py`` merges it into ``docs/gpu/results.json``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before sglang is imported anywhere, so that the scheduler processes inherit them.
os.environ["SGLANG_VLM_CACHE_SIZE_MB"] = "0"  # no vision-embedding cache (RECIPE pitfall 12)
for _name, _value in (
    # Never use NVLink multicast on a shared multi-GPU host (tensor-parallel tests).
    ("NCCL_NVLS_ENABLE", "0"),
    ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"),
    ("NVSHMEM_DISABLE_NVLS", "1"),
):
    os.environ.setdefault(_name, _value)

import pytest  # noqa: E402
from gpu_support import (  # noqa: E402
    COMPARE_ENGINE_ARGS,
    FAMILIES,
    describe_processes,
    model_path_for,
    sglang_processes,
    wait_until_gone,
)

_HERE = Path(__file__).resolve().parent
_RECORD: dict[str, Any] = {}


def gpu_skip_reason() -> str | None:
    """Why the GPU tests cannot run here (None if they can), without importing sglang."""
    from vlm_tutorial.settings import sglang_unavailable_reason

    reason = sglang_unavailable_reason()
    if reason is None:
        return None
    return f"GPU test: needs an NVIDIA GPU and sglang==0.5.17, but {reason}"


#: Module order: the formats module first, so that its first request per format
#: is the first on the machine (one-off JIT compilation included) when the
#: whole folder runs; modules not named keep their place after these.
_MODULE_ORDER = ("test_sglang_formats", "test_engine_lifecycle", "test_llama4_tp")


def _is_mine(item: pytest.Item) -> bool:
    return _HERE in Path(str(item.path)).resolve().parents


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order this folder's modules, and skip its tests, with the reason, without GPU or sglang."""
    mine = [item for item in items if _is_mine(item)]
    if not mine:
        return

    def rank(item: pytest.Item) -> int:
        if not _is_mine(item):
            return -1
        stem = Path(str(item.path)).stem
        return _MODULE_ORDER.index(stem) if stem in _MODULE_ORDER else len(_MODULE_ORDER)

    items.sort(key=rank)  # stable: pytest's grouping by module-scoped fixtures is kept
    for item in mine:
        if item.get_closest_marker("gpu") is None:
            raise pytest.UsageError(f"{item.nodeid} is under tests/gpu but lacks @pytest.mark.gpu")
    reason = gpu_skip_reason()
    diagnostics = pytest.mark.skip(reason="a diagnostic: run it with --run-diagnostics")
    for item in mine:
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
        elif item.get_closest_marker("diagnostics") and not config.getoption("--run-diagnostics"):
            item.add_marker(diagnostics)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the measurements to the ``--gpu-record`` file, if given and anything was measured."""
    target = session.config.getoption("--gpu-record")
    if target and _RECORD:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(_RECORD, indent=2, default=str) + "\n")


@pytest.fixture(scope="session")
def gpu_record() -> dict[str, Any]:
    """The session's measurements (written out at the end, see the module docs).

    Also notes whether flashinfer's JIT cache existed when the session began:
    without it the first request compiles kernels with nvcc (a minute or more).
    """
    if "session" not in _RECORD:
        cache = (
            Path(os.environ.get("FLASHINFER_WORKSPACE_BASE", Path.home())) / ".cache" / "flashinfer"
        )
        _RECORD["session"] = {
            "flashinfer_jit_cache_existed": cache.is_dir() and any(cache.iterdir()),
            "flashinfer_jit_cache": str(cache),
        }
    return _RECORD


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    """Each model family in turn; module scope keeps one engine per family per module."""
    return request.param


@pytest.fixture(scope="session")
def real_models(pytestconfig: pytest.Config) -> bool:
    """True with ``--gpu-real``: the tests load the real model ids, not the tiny models."""
    return bool(pytestconfig.getoption("--gpu-real"))


@pytest.fixture(scope="module")
def model_path(family: str, real_models: bool) -> str:
    """The family's tiny checkpoint (or the real id with ``--gpu-real``)."""
    return model_path_for(family, real=real_models)


@pytest.fixture(scope="module")
def processor(model_path: str) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_path)


@pytest.fixture(scope="module")
def encoder(model_path: str) -> Any:
    """The client-side vision encoder on the GPU, in the checkpoint's dtype (as the notebooks)."""
    from vlm_tutorial.vision import load_vision_encoder

    return load_vision_encoder(model_path, device="cuda")


@dataclass
class RunningEngine:
    """An open ``sglang.Engine`` and how it was started."""

    engine: Any
    family: str
    model_path: str
    start_seconds: float
    engine_args: dict[str, Any]


@pytest.fixture(scope="module")
def sglang_engine(
    request: pytest.FixtureRequest, family: str, model_path: str, gpu_record: dict[str, Any]
) -> Iterator[RunningEngine]:
    """One ``sglang.Engine`` for ``family``, shut down at the end of the module.

    After shutdown, every SGLang process started with it must exit within 60 s
    (else the teardown fails, naming them).
    """
    from vlm_bench.engines import open_engine
    from vlm_tutorial.settings import merge_engine_args

    args = merge_engine_args(model_path, COMPARE_ENGINE_ARGS)
    since = time.time()
    start = time.perf_counter()
    with open_engine(model_path, backend="sglang", **COMPARE_ENGINE_ARGS) as engine:
        seconds = time.perf_counter() - start
        gpu_record.setdefault("engine_starts", []).append(
            {
                "module": request.module.__name__,
                "family": family,
                "model_path": model_path,
                "seconds": round(seconds, 2),
                "engine_args": args,
            }
        )
        started = sglang_processes(since=since)
        yield RunningEngine(engine, family, model_path, seconds, args)
    left = wait_until_gone(started, timeout=60)
    assert not left, f"SGLang processes still running after shutdown: {describe_processes(left)}"


__all__ = ["gpu_skip_reason", "RunningEngine"]
