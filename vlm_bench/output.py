"""Turn the raw records into a summary, headline ratios, a markdown report and an SVG figure.

All of it is computed from the results JSON alone (:func:`write_outputs`),
so ``python -m vlm_bench --replot results.json`` can redo the table
and figure elsewhere, e.g. where matplotlib is installed.

Example:
    >>> summary = summarize_records(results["records"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .cases import FORMAT_LABELS, FORMATS, LIMIT_VARIANTS
from .stats import ratio, summarize

#: Record fields that identify a group of repeats.
GROUP_KEYS = ("case", "variant", "caches", "side", "batch", "k")

#: How the reports name each SGLang cache setting (:data:`vlm_bench.cases.CACHE_SETTINGS`).
CACHE_LABELS = {
    None: "n/a",
    "off": "off",
    "radix": "radix only",
    "default": "SGLang's defaults (radix + vision)",
}

#: Timings summarized for every group.
METRICS = ("prep_s", "ttft_s", "total_s", "e2e_s")

#: Parts of the client-side preparation.
PREP_PARTS = ("decode_s", "processor_s", "encoder_s", "build_s")

RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
FIGURE_FILE = "results.svg"


def _group_key(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record.get(k) for k in GROUP_KEYS)


def summarize_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group of repeats: the group's keys, shape, and stats of each timing.

    Example:
        >>> rows = summarize_records([{"case": "limit", "variant": "text", "side": 1, "batch": 1,
        ...     "prep": {"build_s": 0.0}, "prep_s": 0.0, "ttft_s": 1.0, "total_s": 2.0, "e2e_s": 2.0}])
        >>> rows[0]["ttft_s"]["median"]
        1.0
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[_group_key(record)].append(record)
    rows = []
    for key, items in groups.items():
        row: dict[str, Any] = dict(zip(GROUP_KEYS, key, strict=True))
        for extra in ("image_tokens", "input_len", "prompt_tokens"):
            if extra in items[0]:
                row[extra] = items[0][extra]
        for metric in METRICS:
            row[metric] = summarize([r[metric] for r in items])
        row["prep_parts"] = {
            part: summarize([r["prep"].get(part, 0.0) for r in items]) for part in PREP_PARTS
        }
        row["tokens_ok"] = all(r.get("tokens_ok", True) for r in items)
        rows.append(row)
    return rows


def _find(rows: list[dict[str, Any]], **keys: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(k) == v for k, v in keys.items()):
            return row
    return None


def _med(row: dict[str, Any] | None, metric: str) -> float | None:
    return None if row is None else row[metric]["median"]


def headline_ratios(
    summary: list[dict[str, Any]], load: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The ratios the report leads with, from the medians.

    * ``formats``: per size and batch, each format's end-to-end, engine TTFT
      and engine total time divided by the raw format's;
    * ``reuse``: per K and cache setting, raw end to end / reused embedding's;
    * ``limit``: per size, precomputed / text-only (TTFT and total), and the
      engine's own image work: raw TTFT minus text-only TTFT;
    * ``load``: full model / vision only, for time, bytes read and peak memory.

    Example:
        >>> headline_ratios([])["formats"]
        []
    """
    out: dict[str, Any] = {"formats": [], "reuse": [], "limit": [], "load": []}
    for row in summary:
        if row["case"] == "formats" and row["variant"] != "raw":
            raw = _find(
                summary, case="formats", variant="raw", side=row["side"], batch=row["batch"]
            )
            out["formats"].append(
                {
                    "side": row["side"],
                    "image_tokens": row.get("image_tokens"),
                    "batch": row["batch"],
                    "variant": row["variant"],
                    "e2e_vs_raw": ratio(_med(row, "e2e_s"), _med(raw, "e2e_s")),
                    "ttft_vs_raw": ratio(_med(row, "ttft_s"), _med(raw, "ttft_s")),
                    "engine_total_vs_raw": ratio(_med(row, "total_s"), _med(raw, "total_s")),
                }
            )
        if row["case"] == "reuse" and row["variant"] == "raw":
            reuse = _find(summary, case="reuse", variant="reuse", k=row["k"], caches=row["caches"])
            out["reuse"].append(
                {
                    "k": row["k"],
                    "caches": row["caches"],
                    "raw_e2e_s": _med(row, "e2e_s"),
                    "reuse_e2e_s": _med(reuse, "e2e_s"),
                    "raw_over_reuse": ratio(_med(row, "e2e_s"), _med(reuse, "e2e_s")),
                }
            )
        if row["case"] == "limit" and row["variant"] == "text":
            pre = _find(summary, case="limit", variant="precomputed", side=row["side"])
            raw = _find(summary, case="limit", variant="raw", side=row["side"])
            text_ttft = _med(row, "ttft_s")
            raw_ttft = _med(raw, "ttft_s")
            out["limit"].append(
                {
                    "side": row["side"],
                    "image_tokens": row.get("image_tokens"),
                    "input_len": row.get("input_len"),
                    "precomputed_over_text_ttft": ratio(_med(pre, "ttft_s"), text_ttft),
                    "precomputed_over_text_total": ratio(
                        _med(pre, "total_s"), _med(row, "total_s")
                    ),
                    "raw_over_text_ttft": ratio(raw_ttft, text_ttft),
                    "same_length": pre is not None
                    and pre.get("prompt_tokens") == row.get("prompt_tokens"),
                    "engine_vision_s": None
                    if raw_ttft is None or text_ttft is None
                    else raw_ttft - text_ttft,
                }
            )
    if load:
        out["load"] = load_ratios(load)
    return out


def load_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians (and spread) of the load case per mode and page-cache state.

    Example:
        >>> load_summary([])
        []
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["mode"], row["cache"])].append(row)
    out = []
    for (mode, cache), items in groups.items():
        out.append(
            {
                "mode": mode,
                "cache": cache,
                "seconds": summarize([r["seconds"] for r in items]),
                "ready_seconds": summarize([r.get("ready_seconds", r["seconds"]) for r in items]),
                "read_bytes": summarize([r["read_bytes"] for r in items]),
                "peak_rss": summarize([r["peak_rss"] for r in items]),
                "rss_before": summarize([r["rss_before"] for r in items]),
                "vision_parameters": items[0]["vision_parameters"],
                "files_opened": items[0]["files_opened"],
                "file_bytes": items[0]["file_bytes"],
            }
        )
    return out


def load_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Full model / vision only, per page-cache state, from the medians.

    Example:
        >>> load_ratios([])
        []
    """
    summary = load_summary(rows)
    out = []
    for cache in ("cold", "warm"):
        vision = next((r for r in summary if r["mode"] == "vision" and r["cache"] == cache), None)
        full = next((r for r in summary if r["mode"] == "full" and r["cache"] == cache), None)
        if vision is None or full is None:
            continue

        def med(row: dict[str, Any], key: str) -> float:
            return row[key]["median"]

        out.append(
            {
                "cache": cache,
                "seconds_full_over_vision": ratio(med(full, "seconds"), med(vision, "seconds")),
                "ready_full_over_vision": ratio(
                    med(full, "ready_seconds"), med(vision, "ready_seconds")
                ),
                # Below 16 MiB the reads are noise (config, tokenizer, metadata).
                "read_bytes_full_over_vision": ratio(
                    med(full, "read_bytes"), med(vision, "read_bytes")
                )
                if med(vision, "read_bytes") >= 16 * 2**20
                else None,
                "peak_rss_full_over_vision": ratio(med(full, "peak_rss"), med(vision, "peak_rss")),
                "added_rss_full_over_vision": ratio(
                    med(full, "peak_rss") - med(full, "rss_before"),
                    med(vision, "peak_rss") - med(vision, "rss_before"),
                ),
            }
        )
    return out


# --------------------------------------------------------------------------- markdown


def fmt_seconds(value: float | None) -> str:
    """Seconds as ``ms`` below one second, else ``s``, to three significant digits.

    Example:
        >>> fmt_seconds(0.01234), fmt_seconds(1.14), fmt_seconds(12.5)
        ('12.3 ms', '1.14 s', '12.5 s')
    """
    if value is None:
        return "n/a"
    if abs(value) < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s"


def _cell(stats: dict[str, Any]) -> str:
    """``median [q1, q3]`` with the quartiles in the median's unit: ``10.5 ms [10.4, 10.7]``.

    No-break spaces keep the median and the bracket each on one line in a narrow column.
    """
    median = fmt_seconds(stats["median"])
    if stats["median"] is None:
        return median
    scale = 1000.0 if median.endswith(" ms") else 1.0
    nbsp = "\u00a0"
    quartiles = f"[{stats['q1'] * scale:.3g},{nbsp}{stats['q3'] * scale:.3g}]"
    return f"{median.replace(' ', nbsp)} {quartiles}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f}"


#: The client steps that the preparation tables break down.
SHOWN_PREP_PARTS = ("decode_s", "processor_s", "encoder_s")


def _prep_parts_table(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    """Median of each client step, for the rows that run any (``keys``: leading columns)."""
    rows = [r for r in rows if any(r["prep_parts"][p]["median"] > 0 for p in SHOWN_PREP_PARTS)]
    if not rows:
        return []
    names = {"side": "image px", "batch": "batch", "variant": "format"}
    header = [names[k] for k in keys] + [p[:-2] for p in SHOWN_PREP_PARTS] + ["client prep"]
    lines = [
        "| " + " | ".join(header) + " |",
        "| "
        + " | ".join(["---:" if k != "variant" else "---" for k in keys])
        + " | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        parts = row["prep_parts"]
        cells = [str(row[k]) for k in keys]
        cells += [fmt_seconds(parts[p]["median"]) for p in SHOWN_PREP_PARTS]
        cells.append(fmt_seconds(row["prep_s"]["median"]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def client_encoder(settings: dict[str, Any]) -> str:
    """The run's ``--client-encoder``; for results of before that option, from ``--encoder-attn``.

    Example:
        >>> client_encoder({"family": "qwen2_5_vl", "encoder_attn": "cudnn", "encoder_compile": True})
        'cudnn+compile'
    """
    if "client_encoder" in settings:
        return str(settings["client_encoder"])
    attn = settings.get("encoder_attn", "auto")
    default = "fast" if settings["family"] == "qwen2_5_vl" else "transformers"
    name = {"auto": default, "reference": "transformers"}.get(attn, attn)
    return name + ("+compile" if settings.get("encoder_compile") else "")


def _header(results: dict[str, Any]) -> list[str]:
    meta = results["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    settings = results["settings"]
    engine = bool(results.get("records"))
    title = f"{settings['family']} on {meta['device']['name']}"
    title += f" ({settings['backend']})" if engine else " (vision-only loading)"
    lines = [
        "---",
        "orphan: true",
        "---",
        "",
        f"# Format benchmark: {title}",
        "",
        "Generated by `python -m vlm_bench`; do not edit by hand.",
        "",
        f"- command: `{meta['command']}`",
        *[
            f"- merged with the results of: `{m['command']}`"
            for m in results.get("merged_from", [])
        ],
        f"- device: {meta['device']['name']}; {versions}",
        f"- model: `{settings['model']}` ({settings['model_kind']})",
    ]
    if engine:
        lines += [
            f"- {settings['repeats']} repeats after {settings['warmup']} warm-up run(s); greedy, "
            f"`ignore_eos=True`, {settings['max_new_tokens']} new tokens per request",
            f"- time to first token: {settings['ttft_method']}",
        ]
    if results.get("load"):
        lines.append(
            f"- load case: {settings.get('load_repeats')} fresh process(es) per mode and page-cache state"
        )
    lines.append(
        "- cells: median [first quartile, third quartile] over the repeats, "
        "the quartiles in the median's unit"
    )
    if engine:
        lines.append(f"- client encoder: {client_encoder(settings)}")
    for name, used in results.get("engines", {}).items():
        if used.get("engine_args"):
            lines.append(f"- engine arguments ({name}): `{json.dumps(used['engine_args'])}`")
    if engine and settings["backend"] == "sglang":
        lines.append(
            "- SGLang caches: radix cache off and `SGLANG_VLM_CACHE_SIZE_MB=0` (no cache of "
            "vision outputs), except where the reuse table says otherwise"
        )
    lines.append("")
    return lines


def _formats_table(summary: list[dict[str, Any]], ratios: dict[str, Any]) -> list[str]:
    rows = [r for r in summary if r["case"] == "formats"]
    if not rows:
        return []
    order = {f: i for i, f in enumerate(FORMATS)}
    rows.sort(key=lambda r: (r["side"], r["batch"], order.get(r["variant"], 99)))
    sizes = {r["side"]: r for r in rows}
    lines = [
        "## (a) Formats",
        "",
        "The same image as each request format. *client prep*: image decode, processor and",
        "vision encoder on the client (medians; broken down below); *engine*:",
        "`Engine.generate` wall time.",
        "",
        "| image px | image tokens | prompt ids |",
        "| ---: | ---: | ---: |",
        *[
            f"| {side} | {row.get('image_tokens', '')} | {row.get('input_len', '')} |"
            for side, row in sizes.items()
        ],
        "",
        "| image px | batch | format | client prep | engine TTFT | engine total | end to end "
        "| vs raw |",
        "| ---: | ---: | --- | ---: | --- | --- | --- | ---: |",
    ]
    for row in rows:
        found = next(
            (
                x
                for x in ratios["formats"]
                if x["side"] == row["side"]
                and x["batch"] == row["batch"]
                and x["variant"] == row["variant"]
            ),
            None,
        )
        vs_raw = "1.00x" if row["variant"] == "raw" else _ratio(found and found["e2e_vs_raw"])
        lines.append(
            f"| {row['side']} | {row['batch']} | {row['variant']} "
            f"| {fmt_seconds(row['prep_s']['median'])} | {_cell(row['ttft_s'])} "
            f"| {_cell(row['total_s'])} | {_cell(row['e2e_s'])} | {vs_raw} |"
        )
    lines += ["", "Formats:", ""]
    lines += [
        f"- `{f}`: {FORMAT_LABELS[f]}" for f in FORMATS if any(r["variant"] == f for r in rows)
    ]
    parts = _prep_parts_table(rows, ("side", "batch", "variant"))
    if parts:
        lines += ["", "Client prep, step by step (medians):", "", *parts]
    lines.append("")
    return lines


def _reuse_table(summary: list[dict[str, Any]], ratios: dict[str, Any]) -> list[str]:
    rows = [r for r in summary if r["case"] == "reuse"]
    if not rows:
        return []
    side = rows[0]["side"]
    lines = [
        "## (b) Reuse: one image, K questions",
        "",
        f"K questions about one {side} px image, asked one after another: the raw image every",
        "time, or its embedding computed once (processor and encoder run once) and reused.",
        "Times are for all K questions together.",
        "",
        "| K | SGLang caches | variant | client prep | engine (sum) | end to end | raw / reuse |",
        "| ---: | --- | --- | ---: | --- | --- | ---: |",
    ]
    order = list(CACHE_LABELS)
    rows.sort(key=lambda r: (r["k"], order.index(r["caches"]), r["variant"]))
    for row in rows:
        found = next(
            (x for x in ratios["reuse"] if x["k"] == row["k"] and x["caches"] == row["caches"]),
            None,
        )
        caches = CACHE_LABELS[row["caches"]]
        speed = _ratio(found and found["raw_over_reuse"]) if row["variant"] == "reuse" else ""
        lines.append(
            f"| {row['k']} | {caches} | {row['variant']} | {fmt_seconds(row['prep_s']['median'])} "
            f"| {_cell(row['total_s'])} "
            f"| {_cell(row['e2e_s'])} | {speed} |"
        )
    lines.append("")
    return lines


def _limit_table(summary: list[dict[str, Any]], ratios: dict[str, Any]) -> list[str]:
    rows = [r for r in summary if r["case"] == "limit"]
    if not rows:
        return []
    lines = [
        "## (c) The limit: an image request against a text request of the same length",
        "",
        "`text`: a text-only prompt padded with a filler token to exactly the image prompt's",
        "number of ids. `precomputed`: the image as a precomputed embedding (engine time only;",
        "the client's encoder time is in (a)). `raw`: the raw image, so the engine decodes,",
        "preprocesses and encodes it: raw TTFT minus text TTFT is the engine's own image work.",
        "",
        "| image px | image tokens | prompt ids | variant | engine TTFT | engine total | TTFT / text |",
        "| ---: | ---: | ---: | --- | --- | --- | ---: |",
    ]
    order = {v: i for i, v in enumerate(LIMIT_VARIANTS)}
    rows.sort(key=lambda r: (r["side"], order.get(r["variant"], 9)))
    for row in rows:
        text = _find(rows, variant="text", side=row["side"])
        lines.append(
            f"| {row['side']} | {row.get('image_tokens', '')} | {row.get('input_len', '')} "
            f"| {row['variant']} | {_cell(row['ttft_s'])} | {_cell(row['total_s'])} "
            f"| {_ratio(ratio(_med(row, 'ttft_s'), _med(text, 'ttft_s')))} |"
        )
    lines += [
        "",
        "| image px | precomputed / text (TTFT) | precomputed / text (total) | engine's image work (raw - text TTFT) |",
        "| ---: | ---: | ---: | --- |",
    ]
    for item in ratios["limit"]:
        lines.append(
            f"| {item['side']} | {_ratio(item['precomputed_over_text_ttft'])} "
            f"| {_ratio(item['precomputed_over_text_total'])} | {fmt_seconds(item['engine_vision_s'])} |"
        )
    lines.append("")
    return lines


def _load_table(results: dict[str, Any]) -> list[str]:
    load = results.get("load")
    if not load:
        return []
    info = load["checkpoint"]
    built = info.get("built_by", {})
    lines = [
        "## (d) Loading only the vision weights",
        "",
        f"Checkpoint: `{info['path']}`, {info['shards']} safetensors shard(s), "
        f"{info['weight_bytes'] / 2**30:.2f} GiB of bf16 weights"
        + (f" ({built['source']})" if built.get("source") else "")
        + ".",
        "",
        "*vision*: `load_vision_encoder`; *full*: `from_pretrained` of the whole model in bf16, "
        "then its vision tower. Each load runs in a fresh process. *cold*: the checkpoint's "
        "files evicted from the page cache first (`posix_fadvise(DONTNEED)`); *warm*: read "
        "once before. *load call*: the call alone; *ready*: the call plus touching every page "
        "of the vision weights, as the first image would (transformers maps a bf16 checkpoint "
        "into memory without reading it, so the call alone hides part of the cost). *read*: "
        "`read_bytes` of `/proc/self/io` until ready; *peak RSS*: `ru_maxrss` of the process, "
        "and how much the load added to it (its value after the imports).",
        "",
    ]
    rows = sorted(load["summary"], key=lambda r: (r["cache"], r["mode"] != "vision"))
    lines += [
        "| mode | page cache | load call | ready | read MiB | peak RSS MiB | added RSS MiB |",
        "| --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        added = row["peak_rss"]["median"] - row["rss_before"]["median"]
        lines.append(
            f"| {row['mode']} | {row['cache']} | {_cell(row['seconds'])} "
            f"| {_cell(row['ready_seconds'])} | {_mib(row['read_bytes']['median'])} "
            f"| {_mib(row['peak_rss']['median'])} | {_mib(added)} |"
        )
    lines += ["", "| mode | vision parameters | shards opened |", "| --- | ---: | ---: |"]
    for mode in ("vision", "full"):
        row = next((r for r in rows if r["mode"] == mode), None)
        if row is not None:
            lines.append(f"| {mode} | {row['vision_parameters']:,} | {len(row['files_opened'])} |")
    lines += [
        "",
        "| page cache | load call full / vision | ready full / vision | read full / vision "
        "| peak RSS full / vision | added RSS full / vision |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for item in results["ratios"]["load"]:
        lines.append(
            f"| {item['cache']} | {_ratio(item['seconds_full_over_vision'])} "
            f"| {_ratio(item['ready_full_over_vision'])} "
            f"| {_ratio(item['read_bytes_full_over_vision'])} "
            f"| {_ratio(item['peak_rss_full_over_vision'])} "
            f"| {_ratio(item['added_rss_full_over_vision'])} |"
        )
    lines.append("")
    return lines


def markdown_report(results: dict[str, Any]) -> str:
    """The markdown tables of a results dict (what ``results.md`` holds).

    Example:
        >>> markdown_report(results).startswith("---")  # doctest: +SKIP
        True
    """
    summary, ratios = results["summary"], results["ratios"]
    lines = _header(results)
    lines += _formats_table(summary, ratios)
    lines += _reuse_table(summary, ratios)
    lines += _limit_table(summary, ratios)
    lines += _load_table(results)
    bad = [r for r in summary if not r["tokens_ok"]]
    if bad:
        lines += [
            "**Warning:** some requests did not generate exactly "
            f"{results['settings']['max_new_tokens']} tokens: "
            + ", ".join(f"{r['case']}/{r['variant']}" for r in bad),
            "",
        ]
    if results.get("figure"):
        lines += [f"![benchmark figure]({FIGURE_FILE})", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- figure


#: One colour per request format, in every panel of every figure. Formats 1-3 take the
#: colours of their paths in the landing page's diagram (docs/diagram/formats.dot).
FORMAT_COLOURS = {
    "raw": "#1f5fa8",
    "processor_output": "#b35806",
    "precomputed": "#1b7a1b",
    "precomputed_full": "#7fbf7b",  # format 3 carrying the whole processor output
    "reuse": "#1b7a1b",  # format 3: the embedding computed once
    "text": "#777777",  # no image at all
}

#: The two ways of loading in case (d); no request format, so colours of their own.
LOAD_COLOURS = {"vision": "#762a83", "full": "#8c8c8c"}


#: Matplotlib settings of the figures: type sized for the docs, reproducible SVG ids.
FIGURE_STYLE: dict[Any, Any] = {  # keys: matplotlib rcParams names
    "svg.hashsalt": "vlm-tutorial-bench",
    "svg.fonttype": "none",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
}


def draw_figure(results: dict[str, Any]) -> Any:
    """The matplotlib figure of the results, or None (no case to draw, or no matplotlib).

    One panel per case, stacked, each with its legend right of the plot area; each
    format has the same colour (:data:`FORMAT_COLOURS`) in every panel and figure.

    Example:
        >>> draw_figure(results).savefig("results.svg")  # doctest: +SKIP
    """
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    summary = results["summary"]
    panels = [
        name
        for name, present in (
            ("formats", any(r["case"] == "formats" for r in summary)),
            ("reuse", any(r["case"] == "reuse" for r in summary)),
            ("limit", any(r["case"] == "limit" for r in summary)),
            ("load", bool(results.get("load"))),
        )
        if present
    ]
    if not panels:
        return None
    plots = {
        "formats": _plot_formats,
        "reuse": _plot_reuse,
        "limit": _plot_limit,
        "load": _plot_load,
    }
    with matplotlib.rc_context(FIGURE_STYLE):
        # 9 inches: about the width the docs show it at, so the text stays legible.
        fig, axes = plt.subplots(
            len(panels),
            1,
            figsize=(9.0, 3.4 * len(panels) + 0.6),
            squeeze=False,
            layout="constrained",
        )
        for ax, name in zip(axes[:, 0], panels, strict=True):
            plots[name](ax, results)
            ax.grid(axis="y", color="#dddddd", linewidth=0.6)
            ax.set_axisbelow(True)
        settings = results["settings"]
        what = settings["backend"] if summary else "vision-only loading"
        fig.suptitle(
            f"{settings['family']} / {what} on {results['meta']['device']['name']}\n"
            "(medians; whiskers: quartiles)",
            fontsize=11,
        )
    return fig


def write_figure(results: dict[str, Any], path: str | os.PathLike) -> bool:
    """Draw the results as an SVG at ``path``; False (and nothing written) without matplotlib.

    Example:
        >>> write_figure(results, "results.svg")  # doctest: +SKIP
        True
    """
    fig = draw_figure(results)
    if fig is None:
        return False
    import matplotlib
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(FIGURE_STYLE):
        fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return True


def _legend(ax: Any, handles: list[Any] | None = None) -> None:
    """The panel's legend, right of the plot area, where it cannot cover a bar."""
    kwargs = {} if handles is None else {"handles": handles}
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, **kwargs)


def _err(stats: dict[str, Any], scale: float = 1000.0) -> list[float]:
    return [(stats["median"] - stats["q1"]) * scale, (stats["q3"] - stats["median"]) * scale]


def _plot_formats(ax: Any, results: dict[str, Any]) -> None:
    from matplotlib.patches import Patch

    rows = [r for r in results["summary"] if r["case"] == "formats" and r["batch"] == 1]
    sides = sorted({r["side"] for r in rows})
    fmts = [f for f in FORMATS if any(r["variant"] == f for r in rows)]
    width = 0.8 / max(len(fmts), 1)
    handles = []
    for i, fmt in enumerate(fmts):
        color = FORMAT_COLOURS[fmt]
        xs, prep, engine, errs = [], [], [], []
        for j, side in enumerate(sides):
            row = _find(rows, variant=fmt, side=side)
            if row is None:
                continue
            xs.append(j + i * width)
            prep.append(row["prep_s"]["median"] * 1000)
            engine.append(row["total_s"]["median"] * 1000)
            errs.append(_err(row["e2e_s"]))
        ax.bar(xs, engine, width, color=color, label=fmt)
        ax.bar(
            xs, prep, width, bottom=engine, color=color, alpha=0.4, hatch="//", label=f"{fmt} prep"
        )
        if errs:
            top = [a + b for a, b in zip(engine, prep, strict=True)]
            ax.errorbar(
                xs, top, yerr=list(zip(*errs, strict=True)), fmt="none", ecolor="black", lw=0.8
            )
        handles.append(Patch(color=color, label=fmt))
    handles.append(
        Patch(facecolor="white", edgecolor="gray", hatch="//", label="client prep (on top)")
    )
    ax.set_xticks([j + width * (len(fmts) - 1) / 2 for j in range(len(sides))])
    tokens = {r["side"]: r.get("image_tokens") for r in rows}
    ax.set_xticklabels([f"{s} px, {tokens.get(s)} image tokens" for s in sides])
    ax.set_ylabel("one request (ms)")
    ax.set_title("(a) formats: engine total + client prep, end to end", loc="left")
    _legend(ax, handles)


def _plot_reuse(ax: Any, results: dict[str, Any]) -> None:
    rows = [r for r in results["summary"] if r["case"] == "reuse"]
    styles = {None: "-", "off": "-", "radix": "--", "default": ":"}
    for variant in ("raw", "reuse"):
        for caches, style in styles.items():
            sel = sorted(
                (r for r in rows if r["variant"] == variant and r.get("caches") == caches),
                key=lambda r: r["k"],
            )
            if not sel:
                continue
            label = ("raw" if variant == "raw" else "reuse (precomputed)") + (
                "" if caches is None else f", caches: {CACHE_LABELS[caches]}"
            )
            ax.errorbar(
                [r["k"] for r in sel],
                [r["e2e_s"]["median"] * 1000 for r in sel],
                yerr=list(zip(*[_err(r["e2e_s"]) for r in sel], strict=True)),
                marker="o",
                capsize=3,
                color=FORMAT_COLOURS[variant],
                linestyle=style,
                label=label,
            )
    ks = sorted({r["k"] for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("questions about one image (K)")
    ax.set_ylabel("all K questions (ms)")
    ax.set_title("(b) reuse one embedding: end to end", loc="left")
    _legend(ax)


def _plot_limit(ax: Any, results: dict[str, Any]) -> None:
    rows = [r for r in results["summary"] if r["case"] == "limit"]
    sides = sorted({r["side"] for r in rows})
    width = 0.8 / len(LIMIT_VARIANTS)
    for i, variant in enumerate(LIMIT_VARIANTS):
        sel = [_find(rows, variant=variant, side=s) for s in sides]
        xs = [j + i * width for j, r in enumerate(sel) if r is not None]
        ys = [r["ttft_s"]["median"] * 1000 for r in sel if r is not None]
        errs = [_err(r["ttft_s"]) for r in sel if r is not None]
        ax.bar(
            xs,
            ys,
            width,
            label=variant,
            color=FORMAT_COLOURS[variant],
            yerr=list(zip(*errs, strict=True)) if errs else None,
            capsize=2,
        )
    ax.set_xticks([j + width for j in range(len(sides))])
    tokens = {r["side"]: r.get("input_len") for r in rows}
    ax.set_xticklabels([f"{s} px, {tokens.get(s)} prompt ids" for s in sides])
    ax.set_ylabel("engine TTFT (ms)")
    ax.set_title("(c) image vs text prompt of equal length: time to first token", loc="left")
    _legend(ax)


def _plot_load(ax: Any, results: dict[str, Any]) -> None:
    from matplotlib.patches import Patch

    summary = results["load"]["summary"]
    labels, call, rest, errs, colors = [], [], [], [], []
    for cache in ("cold", "warm"):
        for mode in ("vision", "full"):
            row = next((r for r in summary if r["mode"] == mode and r["cache"] == cache), None)
            if row is None:
                continue
            labels.append(f"{mode}, {cache} cache")
            call.append(row["seconds"]["median"])
            rest.append(max(row["ready_seconds"]["median"] - row["seconds"]["median"], 0.0))
            errs.append(_err(row["ready_seconds"], 1.0))
            colors.append(LOAD_COLOURS[mode])
    xs = list(range(len(call)))
    ax.bar(xs, call, color=colors)
    ax.bar(xs, rest, bottom=call, color=colors, alpha=0.4, hatch="//")
    tops = [a + b for a, b in zip(call, rest, strict=True)]
    if errs:
        ax.errorbar(
            xs, tops, yerr=list(zip(*errs, strict=True)), fmt="none", ecolor="black", capsize=3
        )
    ax.set_xticks(xs)
    ax.set_xticklabels(labels)
    ax.set_ylabel("until vision weights ready (s)")
    info = results["load"]["checkpoint"]
    ax.set_title(
        f"(d) vision-only vs whole-model load ({info['weight_bytes'] / 2**30:.1f} GiB)", loc="left"
    )
    handles = [Patch(color=LOAD_COLOURS[m], label=f"{m}: load call") for m in LOAD_COLOURS]
    handles.append(
        Patch(facecolor="white", edgecolor="gray", hatch="//", label="first touch of the weights")
    )
    _legend(ax, handles)


# --------------------------------------------------------------------------- files


def merge_results(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Add ``old``'s measurements that ``new`` did not redo (for runs split into several commands).

    A record of ``old`` is kept unless ``new`` has a record of the same group
    (case, variant, caches, size, batch, K); ``old``'s load case is kept unless
    ``new`` has one. Both runs must be of the same family, backend and model.

    Example:
        >>> merged = merge_results(json.loads(Path("results.json").read_text()), results)  # doctest: +SKIP
    """
    for key in ("family", "backend", "model"):
        before, after = old["settings"].get(key), new["settings"].get(key)
        if before and after and before != after:
            raise ValueError(
                f"cannot merge: the existing results have {key}={before!r}, this run {after!r}; "
                "use another --out folder"
            )
    redone = {_group_key(r) for r in new.get("records", [])}
    merged = dict(new)
    merged["records"] = [r for r in old.get("records", []) if _group_key(r) not in redone]
    merged["records"] += new.get("records", [])
    if not new.get("load") and old.get("load"):
        merged["load"] = old["load"]
    earlier = list(old.get("merged_from", []))
    earlier.append(
        {
            "command": old["meta"]["command"],
            "started": old["meta"].get("started"),
            "settings": old["settings"],
        }
    )
    merged["merged_from"] = earlier
    if not new["settings"].get("model"):
        merged["settings"] = {
            **new["settings"],
            "model": old["settings"].get("model"),
            "model_kind": old["settings"].get("model_kind"),
        }
    return merged


def write_outputs(results: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path | None]:
    """Write ``results.json``, ``results.svg`` (if matplotlib is there) and ``results.md``.

    Example:
        >>> write_outputs(results, "docs/benchmarks/cpu/qwen2_5_vl")  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results["summary"] = summarize_records(results.get("records", []))
    load = results.get("load")
    if load:
        load["summary"] = load_summary(load["rows"])
    results["ratios"] = headline_ratios(results["summary"], load["rows"] if load else None)
    figure = out / FIGURE_FILE
    results["figure"] = write_figure(results, figure)
    if not results["figure"] and figure.exists():
        figure.unlink()
    json_path = out / RESULTS_FILE
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False, default=str) + "\n")
    table = out / TABLE_FILE
    table.write_text(markdown_report(results))
    return {"json": json_path, "table": table, "figure": figure if results["figure"] else None}


__all__ = [
    "CACHE_LABELS",
    "FIGURE_FILE",
    "FIGURE_STYLE",
    "FORMAT_COLOURS",
    "LOAD_COLOURS",
    "RESULTS_FILE",
    "TABLE_FILE",
    "draw_figure",
    "fmt_seconds",
    "client_encoder",
    "headline_ratios",
    "load_ratios",
    "load_summary",
    "markdown_report",
    "merge_results",
    "summarize_records",
    "write_figure",
    "write_outputs",
]
