"""Write a real-size random checkpoint (or a config-only folder) of Qwen2.5-VL-3B or Llama 4 Scout.

The folder loads like the real model (same config, tensor names, shapes, bf16,
shards, processor, chat template, tokenizer with the real special-token ids),
with random weights. It is what the benchmark's load case (d) needs at real
scale, where no model hub is reachable:

    python tools/realscale_checkpoint.py qwen2_5_vl /tmp/qwen2_5_vl-3b-random
    python -m vlm_bench --cases load --model /tmp/qwen2_5_vl-3b-random \\
        --out docs/benchmarks/cpu/load-qwen2_5_vl-3b
    rm -r /tmp/qwen2_5_vl-3b-random     # 7.0 GiB

``--weights vision`` writes only the vision weights (what SGLang's
``load_format="dummy"`` runs need), ``--weights none`` only the config,
processor and tokenizer. ``--text-layers`` keeps fewer decoder layers
(Llama 4 Scout: 8 of 48 fit one 80 GB GPU). The configuration values and
where they come from: ``vlm_bench/realscale.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("family", choices=["qwen2_5_vl", "llama4"])
    parser.add_argument("out", type=Path, help="folder to write (created; must be empty or absent)")
    parser.add_argument("--weights", choices=["all", "vision", "none"], default="all")
    parser.add_argument("--text-layers", type=int, help="keep this many decoder layers")
    parser.add_argument("--max-shard-bytes", type=int, help="default: the real checkpoint's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from tqdm.auto import tqdm

    from vlm_bench.realscale import parameter_count, real_config, write_model_folder

    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty; pick a new folder or remove it first")
    config = real_config(args.family, args.text_layers)
    counts = parameter_count(args.family, config)
    total = {"all": counts["total"], "vision": counts["vision"], "none": 0}[args.weights] * 2
    print(
        f"{args.family}: {counts['total'] / 1e9:.3f} B parameters "
        f"(vision {counts['vision'] / 1e9:.3f} B); writing {total / 2**30:.2f} GiB of bf16 weights",
        file=sys.stderr,
    )
    start = time.perf_counter()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr) as bar:
        folder = write_model_folder(
            args.family,
            args.out,
            weights=args.weights,
            text_layers=args.text_layers,
            max_shard_bytes=args.max_shard_bytes,
            seed=args.seed,
            progress=bar.update,
        )
    print(f"wrote {folder} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
