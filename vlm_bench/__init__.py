"""The format benchmark: what each image input format of ``sglang.Engine.generate`` costs.

Run it with ``python -m vlm_bench`` (``--help`` lists the options,
``--quick`` is the CI mode on tiny models). It measures, for one model family
and one engine, each of the three formats end to end, split into client-side
preparation and engine time, and writes ``results.json`` (every raw timing,
the command line, device and versions), ``results.md`` and ``results.svg``.

Modules:

* :mod:`~vlm_bench.requests`: the three request builders it times;
* :mod:`~vlm_bench.engines`: ``open_engine``, SGLang or the CPU reference engine;
* :mod:`~vlm_bench.cases`: the engine cases (formats, reuse, limit);
* :mod:`~vlm_bench.prep`: the client's side, and its encoders (``--client-encoder``);
* :mod:`~vlm_bench.qwen_tower`: the fast Qwen2.5-VL tower on the checkpoint module's weights;
* :mod:`~vlm_bench.probe`: the client's processor and encoder, part by part;
* :mod:`~vlm_bench.loading`: vision-only loading against the whole model;
* :mod:`~vlm_bench.timing`: time to first token and total per backend;
* :mod:`~vlm_bench.inputs`: image files, equal-length text prompts;
* :mod:`~vlm_bench.realscale`: real-size configs, folders and random checkpoints;
* :mod:`~vlm_bench.stats`: medians and quartiles;
* :mod:`~vlm_bench.output`: summary, ratios, markdown, figure.

Example:
    >>> from vlm_bench.cli import main
    >>> main(["--quick", "--out", "/tmp/bench"])  # doctest: +SKIP
    0
"""
