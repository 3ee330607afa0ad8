"""Case "load": load only the vision weights, or the whole model, in a fresh process.

Each measurement runs in a new Python process (``python -m
vlm_bench.loading --child ...``), so that its numbers are its own:

* ``seconds``: wall time of the load call alone (imports happen before the
  clock starts);
* ``ready_seconds``: the load call plus touching every memory page of the
  vision weights it returned. On the CPU, transformers 5 maps a bf16
  checkpoint into memory without copying it, so a load call returns before
  the weights are read; their first use (the first image) pays the rest. The
  touch makes that cost part of the measurement, the same for both modes;
* ``read_bytes``: bytes the process caused to be read from storage, up to
  the end of the touch (``read_bytes`` of ``/proc/self/io``; pages already in
  the page cache cost nothing, memory-mapped reads count when they fault);
* ``peak_rss``: the process's peak resident memory (``ru_maxrss``) at the end,
  ``rss_before`` its peak before the load (Python, torch and transformers
  imported), ``rss_file_after`` / ``rss_anon_after`` the file-backed (mapped
  checkpoint) and anonymous parts of the resident memory at the end.

Modes: ``vision`` is :func:`vlm_tutorial.vision.load_vision_encoder`; ``full``
is ``from_pretrained`` of the whole ``...ForConditionalGeneration`` in bf16,
then taking its vision tower (and projector). Page cache: ``cold`` evicts the
checkpoint's files first (``os.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)``
on each file, which drops its clean cached pages without privileges);
``warm`` reads every file once before the child starts, so the load finds
them cached.

Example:
    >>> rows = run_load_case(tiny_model_path("qwen2_5_vl", "text-heavy"), repeats=1)  # doctest: +SKIP
    >>> sorted({(r["mode"], r["cache"]) for r in rows})                                 # doctest: +SKIP
    [('full', 'cold'), ('full', 'warm'), ('vision', 'cold'), ('vision', 'warm')]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlm_tutorial.families import is_checkpoint_folder

MODES = ("vision", "full")
CACHES = ("cold", "warm")


def io_read_bytes() -> int:
    """``read_bytes`` of ``/proc/self/io``: bytes this process caused to be read from storage.

    Example:
        >>> io_read_bytes() >= 0
        True
    """
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no read_bytes line in /proc/self/io (not Linux?)")


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The regular files of a checkpoint folder (weights, config, tokenizer), sorted.

    Example:
        >>> [p.name for p in checkpoint_files(folder)][-1]  # doctest: +SKIP
        'tokenizer_config.json'
    """
    return sorted(p for p in Path(folder).iterdir() if p.is_file())


def evict(folder: str | os.PathLike) -> None:
    """Drop the checkpoint's files from the page cache (``POSIX_FADV_DONTNEED`` on each).

    Example:
        >>> evict(folder)  # doctest: +SKIP
    """
    for path in checkpoint_files(folder):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm_up(folder: str | os.PathLike, chunk: int = 16 * 2**20) -> int:
    """Read every file of the checkpoint once, so that it sits in the page cache; return bytes read.

    Example:
        >>> warm_up(folder) > 0  # doctest: +SKIP
        True
    """
    total = 0
    for path in checkpoint_files(folder):
        with open(path, "rb", buffering=0) as f:
            while block := f.read(chunk):
                total += len(block)
    return total


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def touch(modules: list[Any]) -> None:
    """Read one value per 4 KiB page of every parameter, so that all of them are in memory.

    Example:
        >>> touch([encoder.tower])  # doctest: +SKIP
    """
    import torch

    with torch.no_grad():
        for module in modules:
            for param in module.parameters():
                flat = param.detach().reshape(-1)
                flat[:: max(1, 4096 // param.element_size())].float().sum().item()


def _shards(folder: Path, prefixes: tuple[str, ...] = ("",)) -> list[str]:
    """The safetensors files holding tensors whose names start with one of ``prefixes``."""
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return ["model.safetensors"]
    weight_map = json.loads(index.read_text())["weight_map"]
    return sorted({f for key, f in weight_map.items() if key.startswith(prefixes)})


def child(mode: str, cache: str, path: str) -> dict[str, Any]:
    """One load in this (fresh) process; returns its numbers. Used through ``--child``."""
    import resource
    import time

    import torch
    from transformers import AutoConfig, PreTrainedModel
    from transformers.utils import logging as hf_logging

    from vlm_tutorial.families import QWEN2_5_VL, detect_family
    from vlm_tutorial.vision import load_vision_encoder

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    folder = Path(path)
    family = detect_family(folder)
    AutoConfig.from_pretrained(folder)  # warm transformers' lazy imports outside the clock
    model_class: type[PreTrainedModel]
    if family is QWEN2_5_VL:
        from transformers import Qwen2_5_VLForConditionalGeneration as model_class
    else:
        from transformers import Llama4ForConditionalGeneration as model_class
    if cache == "cold":
        evict(folder)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    read_before = io_read_bytes()
    start = time.perf_counter()
    if mode == "vision":
        modules = [load_vision_encoder(folder).module]
        files = _shards(folder, family.vision_prefixes)  # the shards it reads
    elif mode == "full":
        model = model_class.from_pretrained(folder, dtype=torch.bfloat16)
        names = (
            ["model.visual"] if family is QWEN2_5_VL else ["vision_model", "multi_modal_projector"]
        )
        modules = [model.get_submodule(name) for name in names]
        files = _shards(folder)
    else:
        raise ValueError(f"mode={mode!r}; use one of {MODES}")
    seconds = time.perf_counter() - start
    read_at_load = io_read_bytes() - read_before
    touch(modules)
    ready = time.perf_counter() - start
    read = io_read_bytes() - read_before
    return {
        "mode": mode,
        "cache": cache,
        "family": family.name,
        "seconds": seconds,
        "ready_seconds": ready,
        "read_bytes": read,
        "read_bytes_at_load": read_at_load,
        "rss_before": rss_before,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_file_after": _status("RssFile"),
        "rss_anon_after": _status("RssAnon"),
        "vision_parameters": sum(p.numel() for m in modules for p in m.parameters()),
        "files_opened": files,
        "file_bytes": sum((folder / f).stat().st_size for f in files),
    }


def run_child(mode: str, cache: str, path: str | os.PathLike) -> dict[str, Any]:
    """Run ``child`` in a fresh interpreter and return its JSON result.

    Example:
        >>> run_child("vision", "warm", folder)["mode"]  # doctest: +SKIP
        'vision'
    """
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlm_bench.loading",
            "--child",
            mode,
            cache,
            os.fspath(path),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"the {mode}/{cache} load of {os.fspath(path)!r} failed (exit {out.returncode}):\n"
            f"{out.stderr[-3000:]}"
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_load_case(
    path: str | os.PathLike,
    repeats: int = 3,
    modes: tuple[str, ...] = MODES,
    caches: tuple[str, ...] = CACHES,
    progress: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure every ``mode`` x ``cache`` ``repeats`` times, alternating modes; return all rows.

    Example:
        >>> rows = run_load_case(folder, repeats=1)  # doctest: +SKIP
    """
    folder = Path(path)
    if not is_checkpoint_folder(folder):
        raise FileNotFoundError(f"{os.fspath(path)!r} has no config.json; pass a checkpoint folder")
    rows = []
    for repeat in range(repeats):
        for cache in caches:
            for mode in modes:  # alternate, so that drift hits both modes alike
                if cache == "warm":
                    warm_up(folder)
                row = run_child(mode, cache, folder)
                row["repeat"] = repeat
                rows.append(row)
                if progress is not None:
                    progress()
    return rows


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """Size and shard count of a checkpoint folder, and what built it (for the results file).

    Example:
        >>> checkpoint_info(folder)["shards"]  # doctest: +SKIP
        2
    """
    folder = Path(path)
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    info: dict[str, Any] = {
        "path": os.fspath(folder),
        "shards": len(shards),
        "shard_files": shards,
        "weight_bytes": sum((folder / s).stat().st_size for s in shards),
    }
    for marker in ("realscale.json", "tiny_model.json"):
        if (folder / marker).is_file():
            info["built_by"] = json.loads((folder / marker).read_text())
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one load measurement (internal)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CACHE", "PATH"), required=True)
    print(json.dumps(child(*parser.parse_args(argv).child)))


if __name__ == "__main__":
    main()


__all__ = [
    "CACHES",
    "MODES",
    "checkpoint_files",
    "checkpoint_info",
    "evict",
    "io_read_bytes",
    "run_child",
    "run_load_case",
    "touch",
    "warm_up",
]
