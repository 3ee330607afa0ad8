"""Command line: ``python -m vlm_tutorial.offline.tiny FAMILY OUT_DIR [--preset P] [options]``.

Builds one tiny checkpoint and prints where it went, its parameter counts,
its size on disk and how long it took. The ``tiny`` preset comes from the
weights shipped with the package (seconds); ``--train`` trains it on toy
pictures instead (minutes, progress on stderr), and ``--write-weights DIR``
also stores what training changed as ``DIR/<family>.safetensors``: the
command that reproduces the shipped weights is

    $ python -m vlm_tutorial.offline.tiny llama4 /tmp/tiny-llama4 \\
          --write-weights vlm_tutorial/offline/tiny/weights
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from vlm_tutorial.families import FAMILIES

from .builder import INFO_FILE, build_tiny_model, folder_size, write_shipped


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, build the checkpoint, print a summary; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m vlm_tutorial.offline.tiny",
        description="Build a tiny checkpoint of a real VLM architecture, offline.",
    )
    parser.add_argument("family", help=f"model family: {', '.join(sorted(FAMILIES))}")
    parser.add_argument("out_dir", help="folder to write the checkpoint into")
    parser.add_argument("--preset", default="tiny", help="size preset (default: tiny)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-train", action="store_true", help="keep random weights")
    mode.add_argument("--train", action="store_true", help="train on toy pictures (minutes)")
    mode.add_argument(
        "--write-weights",
        metavar="DIR",
        help="train, then store what training changed as DIR/FAMILY.safetensors",
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    train = True if args.train or args.write_weights else (False if args.no_train else None)
    try:
        path = build_tiny_model(
            args.family,
            args.out_dir,
            preset=args.preset,
            seed=args.seed,
            train=train,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except ValueError as exc:  # unknown family or preset
        parser.error(str(exc))
    seconds = time.perf_counter() - start
    info = json.loads((path / INFO_FILE).read_text())
    counts = info["parameters"]
    kind = "trained on toy pictures" if info["trained"] else "random weights"
    print(f"wrote {info['family']} ({info['preset']}, seed {info['seed']}, {kind}) to {path}")
    print(f"parameters: text {counts['text']:,}, vision {counts['vision']:,}")
    print(f"size on disk: {folder_size(path) / 2**20:.1f} MiB")
    print(f"built in {seconds:.2f} s")
    if args.write_weights:
        weights = write_shipped(path, args.write_weights)
        print(f"weights: {weights} ({weights.stat().st_size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
