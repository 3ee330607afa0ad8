"""Print what a learner should see: one answer, a comparison of formats, an error message.

Example:
    >>> show_output("raw", {"text": "a house", "output_ids": [64, 3823],
    ...     "meta_info": {"prompt_tokens": 95, "completion_tokens": 2}})
    raw: prompt_tokens=95 completion_tokens=2 output_ids=[64, 3823]
      text: 'a house'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Output = Mapping[str, Any]


def show_output(name: str, output: Output, max_ids: int = 16) -> None:
    """Print one ``generate`` result: token counts, the first output ids, and the text."""
    meta = output.get("meta_info", {})
    ids = list(output.get("output_ids", []))
    shown = ids[:max_ids] + (["..."] if len(ids) > max_ids else [])
    print(
        f"{name}: prompt_tokens={meta.get('prompt_tokens')} "
        f"completion_tokens={meta.get('completion_tokens')} output_ids={shown}"
    )
    print(f"  text: {output.get('text')!r}")


def leading_agreement(a: list[int], b: list[int]) -> int:
    """How many leading tokens two id lists share.

    Example:
        >>> leading_agreement([1, 2, 3], [1, 2, 4])
        2
    """
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class Comparison:
    """The greedy outputs of several formats against the first one.

    Attributes:
        reference: the name of the format compared against.
        agreement: per other format, how many leading tokens equal the reference's.
        lengths: per format, the number of generated tokens.
    """

    reference: str
    agreement: dict[str, int]
    lengths: dict[str, int]

    @property
    def identical(self) -> bool:
        """True if every format generated exactly the reference's tokens."""
        ref = self.lengths[self.reference]
        return all(
            n == ref and self.lengths[name] == ref for name, n in self.agreement.items()
        )


def compare_outputs(outputs: Mapping[str, Output], *, require_identical: bool) -> Comparison:
    """Compare greedy ``output_ids`` of formats; print a table; raise if required identical and not.

    ``require_identical=True`` is right where every format computes the same
    numbers (the reference engine in fp32): any difference is a bug.
    With SGLang's low-precision kernels, a precomputed embedding comes from
    a different kernel than the engine's own vision tower, so tiny rounding
    differences can flip a late token; there the report is informative.

    Example:
        >>> out = {"text": "", "output_ids": [5, 6], "meta_info": {}}
        >>> compare_outputs({"raw": out, "emb": out}, require_identical=True).identical
        raw: 2 tokens (reference)
        emb: 2 tokens, 2 leading tokens agree with raw
        True
    """
    names = list(outputs)
    if len(names) < 2:
        raise ValueError("compare_outputs needs at least two outputs")
    ids = {name: list(outputs[name]["output_ids"]) for name in names}
    ref = names[0]
    agreement = {name: leading_agreement(ids[ref], ids[name]) for name in names[1:]}
    result = Comparison(ref, agreement, {name: len(v) for name, v in ids.items()})
    print(f"{ref}: {len(ids[ref])} tokens (reference)")
    for name in names[1:]:
        print(f"{name}: {len(ids[name])} tokens, {agreement[name]} leading tokens agree with {ref}")
    if require_identical and not result.identical:
        raise AssertionError(
            f"greedy outputs differ between formats: {ids}; on the reference engine every "
            "format must give the same tokens"
        )
    return result


def explain_error(func: Callable[..., Any], *args: Any, **kwargs: Any) -> BaseException:
    """Call ``func`` expecting it to raise; print and return the exception.

    Used in the notebooks to show the error a bad request gets, without a
    cell that fails. Raises ``AssertionError`` if nothing was raised.

    Example:
        >>> explain_error(int, "x")
        ValueError: invalid literal for int() with base 10: 'x'
        ValueError("invalid literal for int() with base 10: 'x'")
    """
    try:
        func(*args, **kwargs)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}")
        return exc
    raise AssertionError(f"{getattr(func, '__name__', func)} did not raise")


__all__ = ["show_output", "leading_agreement", "Comparison", "compare_outputs", "explain_error"]
