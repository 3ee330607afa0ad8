"""Printing one output, and comparing the formats' greedy tokens."""

from __future__ import annotations

import pytest

from vlm_tutorial.report import compare_outputs, show_output


def out(ids):
    meta = {"prompt_tokens": 9, "completion_tokens": len(ids)}
    return {"text": "x", "output_ids": ids, "meta_info": meta}


def test_identical_outputs_pass_and_print_the_table(capsys):
    result = compare_outputs({"raw": out([1, 2]), "emb": out([1, 2])}, require_identical=True)
    assert result.identical
    printed = capsys.readouterr().out
    assert printed == "raw: 2 tokens (reference)\nemb: 2 tokens, 2 leading tokens agree with raw\n"
    assert f"{result}\n" == printed  # printable: the same table


@pytest.mark.parametrize(
    ("first", "other", "agree"),
    [([1, 2, 3], [1, 2, 4], 2), ([1, 2, 3], [5, 2, 3], 0), ([1, 2], [1], 1), ([1], [1, 2], 1)],
)
def test_different_outputs_fail_only_when_required(capsys, first, other, agree):
    outputs = {"raw": out(first), "emb": out(other)}
    with pytest.raises(AssertionError, match="greedy outputs differ between formats"):
        compare_outputs(outputs, require_identical=True)
    result = compare_outputs(outputs, require_identical=False)
    assert not result.identical
    assert f"emb: {len(other)} tokens, {agree} leading tokens agree with raw" in str(result)


def test_every_format_is_compared_with_the_first(capsys):
    outputs = {"raw": out([1, 2]), "proc": out([1, 2]), "emb": out([1, 3])}
    result = compare_outputs(outputs, require_identical=False)
    assert not result.identical
    assert str(result).splitlines()[1:] == [
        "proc: 2 tokens, 2 leading tokens agree with raw",
        "emb: 2 tokens, 1 leading tokens agree with raw",
    ]
    with pytest.raises(ValueError, match="two outputs or more, got \\['raw'\\]"):
        compare_outputs({"raw": out([1])}, require_identical=False)


def test_show_output_prints_counts_ids_and_text(capsys):
    show_output("raw", out(list(range(20))), max_ids=3)
    assert capsys.readouterr().out == (
        "raw: prompt_tokens=9 completion_tokens=20 output_ids=[0, 1, 2, '...']\n  text: 'x'\n"
    )
