"""Measure loading only the vision weights against loading the whole model.

For each family's "text-heavy" tiny checkpoint (a large language model beside
a small vision tower), run each mode in a fresh Python process and report:

* time of the load call, and time until the weights are in memory;
* bytes read from storage (``read_bytes`` of ``/proc/self/io``; the
  checkpoint's files are evicted from the page cache first with
  ``posix_fadvise(DONTNEED)``, so a cached file does not hide its reads);
* size of the safetensors files opened;
* peak resident memory (``ru_maxrss``), and its value before loading.

On CPU, transformers 5 keeps weights whose dtype does not change memory-mapped:
``from_pretrained`` returns before reading them, and each page is read the
first time a tensor is used. So every mode ends by reading one element of
every 4 KiB page of the weights it will use, which brings them into memory,
and the numbers count that too.

Modes:

* ``vision``: :func:`vlm_tutorial.vision.load_vision_encoder`, then its weights.
* ``full-tower``: ``from_pretrained`` of the whole ``...ForConditionalGeneration``,
  then the weights of its vision tower and projector only (the language
  model's pages stay unread; the best case for the whole-model load on CPU).
* ``full``: the same load, then every weight (what using the model, or
  moving it to a GPU, costs).

The modules each mode needs are imported before the clock starts.

Usage:
    python scripts/measure_vision_load.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

FAMILIES = ("qwen2_5_vl", "llama4")
MODES = ("vision", "full-tower", "full")


def _io_read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no read_bytes in /proc/self/io")


def _evict(folder: Path) -> None:
    """Drop ``folder``'s files from the page cache (clean pages only; no privileges needed)."""
    for path in folder.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def child(family: str, mode: str, path: str) -> dict:
    """Run one load in this (fresh) process and return its numbers."""
    import resource
    import time

    import torch

    from vlm_tutorial.vision import load_vision_encoder

    folder = Path(path)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    all_shards = sorted(set(index["weight_map"].values()))
    # Import what every mode uses before the clock starts.
    import transformers.models.llama4.modeling_llama4  # noqa: F401
    import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl  # noqa: F401
    from transformers import (
        AutoConfig,  # noqa: F401
        Llama4ForConditionalGeneration,
        Qwen2_5_VLForConditionalGeneration,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _evict(folder)
    read_before = _io_read_bytes()
    start = time.perf_counter()
    if mode == "vision":
        encoder = load_vision_encoder(folder)
        load_seconds = time.perf_counter() - start
        used = [encoder.tower, encoder.projector]
        shards = encoder.files_read
    else:
        cls = (
            Qwen2_5_VLForConditionalGeneration
            if family == "qwen2_5_vl"
            else Llama4ForConditionalGeneration
        )
        model = cls.from_pretrained(folder)
        load_seconds = time.perf_counter() - start
        if mode == "full":
            used = [model]
        elif family == "qwen2_5_vl":
            used = [model.model.visual]
        else:
            used = [model.vision_model, model.multi_modal_projector]
        shards = all_shards
    load_read = _io_read_bytes() - read_before
    params = [p for m in used if m is not None for p in m.parameters()]
    with torch.inference_mode():  # one element per 4 KiB page: reads every page, copies little
        checksum = sum(
            float(p.reshape(-1)[:: max(1, 4096 // p.element_size())].float().sum()) for p in params
        )
    seconds = time.perf_counter() - start
    read = _io_read_bytes() - read_before
    return {
        "family": family,
        "mode": mode,
        "load_call_seconds": load_seconds,
        "load_call_read_bytes": load_read,
        "seconds": seconds,
        "read_bytes": read,
        "files_opened": shards,
        "file_bytes": sum((folder / s).stat().st_size for s in shards),
        "checkpoint_bytes": sum((folder / s).stat().st_size for s in all_shards),
        "parameters_used": len(params) and sum(p.numel() for p in params),
        "checksum": checksum,
        "rss_before": rss_before,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "torch": torch.__version__,
    }


def _mib(n: float) -> str:
    return f"{n / 2**20:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per mode (median)")
    parser.add_argument("--preset", default="text-heavy")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument(
        "--child", nargs=3, metavar=("FAMILY", "MODE", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    from vlm_tutorial.tiny import tiny_model_path

    rows = []
    for family in FAMILIES:
        path = tiny_model_path(family, args.preset)
        for _ in range(args.repeats):
            for mode in MODES:  # alternate, so that drift hits both modes alike
                out = subprocess.run(
                    [sys.executable, __file__, "--child", family, mode, str(path)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))

    print(
        f"preset {args.preset!r}: median of {args.repeats} fresh processes per mode, cold page cache"
    )
    print(
        "family      mode        load call s  read MiB | in memory s  read MiB | "
        "files MiB  ckpt MiB | RSS before  peak RSS MiB | params used  files"
    )
    for family in FAMILIES:
        for mode in MODES:
            runs = [r for r in rows if r["family"] == family and r["mode"] == mode]

            def med(key: str, runs: list[dict] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            print(
                f"{family:11s} {mode:10s}  {med('load_call_seconds'):10.3f}  "
                f"{_mib(med('load_call_read_bytes'))} | {med('seconds'):10.3f}  "
                f"{_mib(med('read_bytes'))} | {_mib(med('file_bytes'))}  "
                f"{_mib(med('checkpoint_bytes'))} | {_mib(med('rss_before'))}    "
                f"{_mib(med('peak_rss'))}   | {int(med('parameters_used')):>11d}  "
                f"{len(runs[0]['files_opened'])}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
