"""The format benchmark: what each image input format of ``sglang.Engine.generate`` costs.

Run it with ``python -m vlm_bench`` (``--help`` lists the options,
``--quick`` is the CI mode on tiny models). It measures, for one model family
and one engine, each of the three formats end to end, split into client-side
preparation and engine time, and writes ``results.json`` (every raw timing,
the command line, device and versions), ``results.md`` and ``results.svg``.

Modules:

* :mod:`~vlm_bench.cases`: the engine cases (formats, reuse, limit);
* :mod:`~vlm_bench.loading`: vision-only loading against the whole model;
* :mod:`~vlm_bench.timing`: time to first token and total per backend;
* :mod:`~vlm_bench.inputs`: image files, equal-length text prompts;
* :mod:`~vlm_bench.realscale`: real-size configs, folders and random checkpoints;
* :mod:`~vlm_bench.stats`: medians and quartiles;
* :mod:`~vlm_bench.output`: summary, ratios, markdown, figure.

Example:
    >>> from vlm_bench.stats import summarize
    >>> summarize([0.1, 0.2, 0.3])["median"]
    0.2
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark's command line with ``argv`` (default ``sys.argv[1:]``).

    Example:
        >>> main(["--quick", "--out", "/tmp/bench"])  # doctest: +SKIP
        0
    """
    from .cli import main as cli_main

    return cli_main(argv)
