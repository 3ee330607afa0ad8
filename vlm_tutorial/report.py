"""Print what a learner should see: one ``generate`` answer, and the formats' answers compared.

>>> show_output("raw", {"text": "a house", "output_ids": [64, 3823],
...     "meta_info": {"prompt_tokens": 95, "completion_tokens": 2}})
raw: prompt_tokens=95 completion_tokens=2 output_ids=[64, 3823]
  text: 'a house'
"""

from collections.abc import Mapping
from typing import Any, NamedTuple


def show_output(name: str, output: Mapping[str, Any], max_ids: int = 16) -> None:
    """Print one ``generate`` result: its token counts, first ``max_ids`` output ids and text."""
    meta = output.get("meta_info", {})
    ids = list(output.get("output_ids", []))
    shown = ids[:max_ids] + (["..."] if len(ids) > max_ids else [])
    print(
        f"{name}: prompt_tokens={meta.get('prompt_tokens')} "
        f"completion_tokens={meta.get('completion_tokens')} output_ids={shown}"
    )
    print(f"  text: {output.get('text')!r}")


class Comparison(NamedTuple):
    """What :func:`compare_outputs` found; ``print()`` shows its table."""

    table: str
    identical: bool

    def __str__(self) -> str:
        return self.table


def compare_outputs(
    outputs: Mapping[str, Mapping[str, Any]], *, require_identical: bool
) -> Comparison:
    """Print how many leading tokens each format shares with the first; return the comparison.

    >>> out = {"output_ids": [5, 6]}
    >>> compare_outputs({"raw": out, "emb": out}, require_identical=True).identical
    raw: 2 tokens (reference)
    emb: 2 tokens, 2 leading tokens agree with raw
    True
    """
    if len(outputs) < 2:
        raise ValueError(f"compare_outputs needs two outputs or more, got {list(outputs)}")
    ids = {name: list(out["output_ids"]) for name, out in outputs.items()}
    (first, reference), *others = ids.items()
    lines = [f"{first}: {len(reference)} tokens (reference)"]
    for name, other in others:
        differ = [i for i, (a, b) in enumerate(zip(reference, other, strict=False)) if a != b]
        agree = differ[0] if differ else min(len(reference), len(other))
        lines.append(f"{name}: {len(other)} tokens, {agree} leading tokens agree with {first}")
    result = Comparison("\n".join(lines), all(other == reference for _, other in others))
    print(result)
    if require_identical and not result.identical:
        raise AssertionError(f"greedy outputs differ between formats: {ids}")
    return result
