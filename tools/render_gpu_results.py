"""Render docs/gpu/results.json (written by tools/gpu_check.py) as Markdown: docs/gpu/results.md.

Standard library only, so it runs wherever gpu_check runs. Every number in the
page comes from the JSON; the page says which command produced it. Commands are
code spans, so no renderer turns their ``--`` into a dash.

Example:
    $ python -m tools.render_gpu_results docs/gpu/results.json -o docs/gpu/results.md
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

FORMATS = ("raw", "processor_output", "precomputed_embedding")
MAX_IDS = 8
_SPECIAL = set("\\`*[]<>{}|$")


class Raw(str):
    """Text that is already safe Markdown (token id lists): written as it is."""


def _cell(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def escape(text: str) -> str:
    """Make free text (model output, test messages) inert in a Markdown table cell.

    Example:
        >>> print(escape("a|b `c` <d> [e]"))
        a\\|b \\`c\\` \\<d\\> \\[e\\]
    """
    text = " ".join(text.split())  # newlines and tabs would break the row
    return "".join("\\" + ch if ch in _SPECIAL else ch for ch in text)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table.

    Example:
        >>> table(["a", "b"], [[1, None]])
        ['| a | b |', '| --- | --- |', '| 1 | – |']
    """
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _ids(ids: Sequence[int] | None) -> str:
    if not ids:
        return "–"
    shown = ", ".join(str(int(i)) for i in ids[:MAX_IDS])
    return Raw(f"[{shown}{', …' if len(ids) > MAX_IDS else ''}]")


def _seconds(value: Any) -> Any:
    return round(value, 3) if isinstance(value, (int, float)) else value


def code(text: Any) -> Any:
    """``text`` as a Markdown code span (a command, engine arguments); None stays None.

    Example:
        >>> print(code("tools/gpu_check.py --stage tests"))
        `tools/gpu_check.py --stage tests`
    """
    if text is None:
        return None
    text = " ".join(str(text).split())
    fence = "``" if "`" in text else "`"
    return Raw(f"{fence}{text.replace('|', chr(92) + '|')}{fence}")


def _memory_fraction(args: Any) -> Any:
    return args.get("mem_fraction_static") if isinstance(args, Mapping) else None


def _environment(results: Mapping[str, Any]) -> list[str]:
    env = results.get("environment", {})
    gpu = env.get("gpu", {})
    versions = env.get("versions", {})
    lines = [
        f"- Command: `{results.get('command', '?')}`",
        f"- Updated: {results.get('updated', '?')}; models: **{results.get('mode', '?')}**",
        f"- GPU: {gpu.get('name', '?')} × {gpu.get('count', '?')}, driver {gpu.get('driver', '?')}, "
        f"memory {gpu.get('memory', '?')}",
        f"- Python {env.get('python', '?')}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]
    args = env.get("engine_args_env")
    lines.append(
        f"- This machine's engine arguments (`VLM_TUTORIAL_ENGINE_ARGS`): `{json.dumps(args)}`"
        if args
        else "- This machine's engine arguments: none (no `VLM_TUTORIAL_ENGINE_ARGS`)"
    )
    for family, merged in (results.get("engine_args") or {}).items():
        lines.append(
            f"- {family} engine arguments (the family registry's, then the machine's): "
            f"`{json.dumps(merged)}`"
        )
    kit = env.get("kit")
    if kit:
        size = kit.get("total_bytes")
        mib = f"{size / 2**20:.1f} MiB" if isinstance(size, (int, float)) else "?"
        lines.append(
            f"- Wheel kit: `{kit.get('dir')}` ({mib}), installed in {kit.get('install_s')} s"
        )
    return lines


def _stages(results: Mapping[str, Any]) -> list[str]:
    stages = results.get("stages", {})
    build = results.get("build", {})
    rows = []
    if build:
        rows.append(["tiny models", build.get("rc"), _seconds(build.get("seconds")), "", "", ""])
    for name, info in stages.items():
        rows.append(
            [
                name,
                info.get("rc"),
                _seconds(info.get("seconds")),
                info.get("started"),
                (info.get("boot_id") or "")[:8],
                code(info.get("command")),
            ]
        )
    lines = table(["stage", "exit status", "seconds", "started", "boot id", "command"], rows)
    boots = {info.get("boot_id") for info in stages.values() if info.get("boot_id")}
    if len(boots) == 1 and len(stages) > 1:
        lines += ["", "Every stage ran on one machine, without a reboot in between (one boot id)."]
    return lines


def _tests(results: Mapping[str, Any]) -> list[str]:
    tests = results.get("tests")
    if not tests:
        return ["Not run yet."]
    summary = tests.get("summary", {})
    lines = [
        "Outcome: "
        + ", ".join(f"{v} {k}" for k, v in summary.items() if v)
        + f" in {tests.get('seconds')} s.",
        "",
    ]
    parts = tests.get("parts") or {}
    if parts:
        complete = tests.get("complete")
        lines += [
            f"Run in {len(parts)} part(s); together they cover every test module of tests/gpu "
            f"with nothing deselected: {_cell(complete)}.",
            "",
            *table(
                ["part", "exit status", "seconds", "outcome"],
                [
                    [
                        code(key),
                        p.get("rc"),
                        _seconds(p.get("seconds")),
                        ", ".join(f"{v} {k}" for k, v in p.get("summary", {}).items() if v),
                    ]
                    for key, p in parts.items()
                ],
            ),
            "",
        ]
    notable = [c for c in tests.get("cases", []) if c.get("outcome") != "passed"]
    rows = [
        [c["name"], c["outcome"], _seconds(c.get("seconds")), c.get("message")]
        for c in tests.get("cases", [])
    ]
    lines += table(["test", "outcome", "seconds", "message"], rows)
    if notable:
        lines += ["", f"{len(notable)} test(s) did not pass; their messages are in the table."]
    return lines


def _session(record: Mapping[str, Any]) -> list[str]:
    session = record.get("session")
    if not session:
        return []
    existed = session.get("flashinfer_jit_cache_existed")
    note = (
        "so first requests include no kernel compilation by nvcc"
        if existed
        else "so the first request compiled flashinfer's kernels with nvcc"
    )
    return [f"flashinfer's JIT cache existed when the tests began: {_cell(existed)}, {note}.", ""]


def _families(record: Mapping[str, Any]) -> list[str]:
    families = record.get("families", {})
    if not families:
        return ["No per-format measurements recorded."]
    lines: list[str] = []
    rows = []
    for family, info in families.items():
        for fmt in FORMATS:
            f = info.get("formats", {}).get(fmt)
            if not f:
                continue
            rows.append(
                [
                    family,
                    fmt,
                    _seconds(info.get("engine_start_s")),
                    _seconds(f.get("first_request_s")),
                    _seconds(f.get("warm_request_s")),
                    f.get("prompt_tokens"),
                    _ids(f.get("output_ids")),
                    repr(f.get("text", ""))[:60],
                ]
            )
    lines += table(
        [
            "family",
            "format",
            "engine start (s)",
            "first request (s)",
            "warm request, median (s)",
            "prompt tokens",
            "greedy output ids",
            "text",
        ],
        rows,
    )
    extra = [
        [family, _seconds(info.get("precomputed_embedding_client_s")), info.get("max_new_tokens")]
        for family, info in families.items()
    ]
    lines += [
        "",
        "Client-side cost of the precomputed-embedding format (processor + vision encoder):",
        "",
    ]
    lines += table(["family", "seconds", "max_new_tokens"], extra)
    return lines


def _agreement_rows(name: str, family: str, rec: Mapping[str, Any]) -> list[Any]:
    return [
        family,
        name,
        " vs ".join(rec.get("compared", [])),
        rec.get("identical"),
        rec.get("leading_agreement"),
        rec.get("first_difference"),
        rec.get("baseline_top2_gap_nats"),
    ]


def _agreements(record: Mapping[str, Any]) -> list[str]:
    rows = []
    for family, recs in record.get("format_agreement", {}).items():
        for fmt, rec in recs.items():
            rows.append(_agreement_rows(f"format {fmt}", family, rec))
    for family, recs in record.get("multi_image", {}).items():
        # one record per family, or one per image pair ("same_size", "mixed_size")
        per_pair = recs if "prompt_tokens" not in recs else {"": recs}
        for pair, rec in per_pair.items():
            label = f"two images{', ' + pair.replace('_', ' ') if pair else ''}"
            comparisons = rec.get("comparisons") or rec
            for fmt in ("processor_output", "precomputed_embedding"):
                if fmt in comparisons:
                    rows.append(_agreement_rows(f"{label}, {fmt}", family, comparisons[fmt]))
    for family, per_fmt in record.get("batch", {}).items():
        for fmt, recs in per_fmt.items():
            for i, rec in enumerate(recs):
                rows.append(_agreement_rows(f"batch {fmt} #{i}", family, rec))
    for tp, info in record.get("tensor_parallel", {}).items():
        for fmt, rec in info.get("comparisons", {}).items():
            rows.append(_agreement_rows(f"{tp} {fmt}", "llama4 (tp4 preset)", rec))
    if not rows:
        return ["No comparisons recorded."]
    return table(
        [
            "family",
            "check",
            "compared",
            "identical",
            "leading tokens agree",
            "first difference",
            "top-2 gap (nats)",
        ],
        rows,
    )


def _margins(record: Mapping[str, Any]) -> list[str]:
    margins = record.get("margins", {})
    if not margins:
        return ["Not recorded."]
    rows = [
        [family, case, fmt, value]
        for family, cases in margins.items()
        for case, per_fmt in cases.items()
        for fmt, value in per_fmt.items()
    ]
    values = [r[3] for r in rows if isinstance(r[3], (int, float))]
    lines = [
        "Smallest top-1 minus top-2 log-probability (nats, equal to the logit margin) over the "
        "generated tokens of each greedy answer on SGLang"
        + (f"; the minimum over all is {min(values)}." if values else "."),
        "",
    ]
    return lines + table(["family", "request", "format", "min margin (nats)"], rows)


def _parity(record: Mapping[str, Any]) -> list[str]:
    parity = record.get("reference_parity", {})
    if not parity:
        return ["Not recorded."]
    rows = []
    for family, info in parity.items():
        teacher = info.get("teacher_forced_agreement") or []
        for name, rec in info.get("comparisons", {}).items():
            rows.append(
                [
                    family,
                    name,
                    rec.get("identical"),
                    rec.get("leading_agreement"),
                    rec.get("baseline_top2_gap_nats"),
                    rec.get("other_token_rank_in_baseline"),
                    f"{sum(bool(t) for t in teacher)}/{len(teacher)}" if teacher else None,
                ]
            )
    return table(
        [
            "family",
            "reference",
            "identical",
            "leading tokens agree",
            "SGLang top-2 gap where they part",
            "reference token's rank in SGLang's top-5",
            "teacher-forced prefill agrees",
        ],
        rows,
    )


def _notebooks(results: Mapping[str, Any]) -> list[str]:
    notebooks = results.get("notebooks", {})
    nbval = results.get("nbval", {})
    if not notebooks and not nbval:
        return ["Not run yet."]
    per_cell = nbval.get("per_notebook", {})
    names = sorted(set(notebooks) | set(per_cell))
    rows = []
    for name in names:
        nb = notebooks.get(name, {})
        meta = nb.get("metadata") or {}
        val = per_cell.get(name, {})
        rows.append(
            [
                name,
                nb.get("rc"),
                _seconds(nb.get("seconds")),
                meta.get("engine"),
                meta.get("model"),
                _memory_fraction(nb.get("engine_args")),
                nb.get("copied_to"),
                f"{val.get('cells', 0) - val.get('failed', 0)}/{val.get('cells')}" if val else None,
                _seconds(val.get("seconds")) if val else None,
            ]
        )
    return table(
        [
            "notebook",
            "papermill exit",
            "papermill wall time (s)",
            "engine",
            "model",
            "mem_fraction_static",
            "executed copy",
            "nbval cells passed",
            "nbval time (s)",
        ],
        rows,
    )


def render(results: Mapping[str, Any], source: str = "docs/gpu/results.json") -> str:
    """The Markdown page for ``results`` (a parsed results.json)."""
    record = results.get("tests", {}).get("record", {})
    engines = record.get("engine_starts", [])
    parts: list[str] = [
        "# GPU results",
        "",
        f"Generated by `tools/render_gpu_results.py` from `{source}`, which `tools/gpu_check.py` "
        "writes; edit neither by hand. How to reproduce: docs/gpu/README.md.",
        "",
        "## Run",
        "",
        *_environment(results),
        "",
        "## Stages",
        "",
        *_stages(results),
        "",
        "## Latency and greedy output per format",
        "",
        *_session(record),
        *_families(record),
        "",
        "## Engine starts",
        "",
        *table(
            ["test module", "family", "model", "seconds", "mem_fraction_static"],
            [
                [
                    e.get("module"),
                    e.get("family"),
                    e.get("model_path"),
                    _seconds(e.get("seconds")),
                    _memory_fraction(e.get("engine_args")),
                ]
                for e in engines
            ],
        ),
        "",
        "## Do the formats agree?",
        "",
        *_agreements(record),
        "",
        "## Greedy margins",
        "",
        *_margins(record),
        "",
        "## SGLang against the transformers reference engine",
        "",
        *_parity(record),
        "",
        "## Notebooks",
        "",
        *_notebooks(results),
        "",
        "## GPU tests",
        "",
        *_tests(results),
        "",
    ]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=Path("docs/gpu/results.json"))
    parser.add_argument("-o", "--output", type=Path, help="default: results.md beside the JSON")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    output = args.output or args.results.with_suffix(".md")
    output.write_text(render(results, source=str(args.results)))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
