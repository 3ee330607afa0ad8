"""Printing outputs, comparing formats, showing errors."""

from __future__ import annotations

import pytest

from vlm_tutorial.report import compare_outputs, explain_error, leading_agreement, show_output


def out(ids):
    return {"text": "x", "output_ids": ids, "meta_info": {"prompt_tokens": 9, "completion_tokens": len(ids)}}


def test_leading_agreement():
    assert leading_agreement([1, 2, 3], [1, 2, 3]) == 3
    assert leading_agreement([1, 2, 3], [1, 5, 3]) == 1
    assert leading_agreement([], [1]) == 0


def test_identical_outputs_pass(capsys):
    result = compare_outputs({"raw": out([1, 2]), "emb": out([1, 2])}, require_identical=True)
    assert result.identical
    assert "2 leading tokens agree with raw" in capsys.readouterr().out


def test_different_outputs_fail_only_when_required():
    outputs = {"raw": out([1, 2, 3]), "emb": out([1, 2, 4])}
    with pytest.raises(AssertionError, match="greedy outputs differ"):
        compare_outputs(outputs, require_identical=True)
    result = compare_outputs(outputs, require_identical=False)
    assert not result.identical and result.agreement == {"emb": 2}


def test_a_shorter_output_is_not_identical():
    assert not compare_outputs({"a": out([1, 2]), "b": out([1])}, require_identical=False).identical
    with pytest.raises(ValueError, match="at least two"):
        compare_outputs({"a": out([1])}, require_identical=False)


def test_show_output_and_explain_error(capsys):
    show_output("raw", out(list(range(20))), max_ids=3)
    assert "output_ids=[0, 1, 2, '...']" in capsys.readouterr().out
    exc = explain_error(int, "x")
    assert isinstance(exc, ValueError)
    with pytest.raises(AssertionError, match="did not raise"):
        explain_error(int, "3")
