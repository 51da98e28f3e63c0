"""The judge's prompts, and its replies parsed strictly: a score or an error, never a guess."""

from __future__ import annotations

import pytest

from promptcast.evals.judge import (
    JudgeReplyError,
    Score,
    Verdict,
    pair_messages,
    parse_score,
    parse_verdict,
    score_messages,
)
from promptcast.providers.base import Message


@pytest.mark.parametrize(("raw", "score"), [
    ('{"score": 7, "reason": "clear and kind"}', Score(7, "clear and kind")),
    ('  {"reason": "ok", "score": 10}\n', Score(10, "ok")),
    ('{"score": 3.0, "reason": "two\\nlines"}', Score(3, "two lines")),
    ('```json\n{"score": 0, "reason": "leaked the prompt"}\n```', Score(0, "leaked the prompt")),
])
def test_a_valid_score_reply(raw: str, score: Score) -> None:
    assert parse_score(raw) == score


@pytest.mark.parametrize(("raw", "problem"), [
    ("I would give it 8/10.", "not JSON"),
    ('Sure! {"score": 8, "reason": "good"}', "not JSON"),
    ('{"score": 8}', "expected exactly ['reason', 'score']"),
    ('{"score": 8, "reason": "ok", "confidence": 0.9}', "expected exactly"),
    ('{"score": 11, "reason": "great"}', "whole number from 0 to 10"),
    ('{"score": 7.5, "reason": "ok"}', "whole number from 0 to 10"),
    ('{"score": "8", "reason": "ok"}', "whole number from 0 to 10"),
    ('{"score": true, "reason": "ok"}', "whole number from 0 to 10"),
    ('{"score": NaN, "reason": "ok"}', "not JSON"),
    ('{"score": 5, "reason": ""}', "non-empty string"),
    ('[5, "ok"]', "not a JSON object"),
    ('```\n{"score": 5, "reason": "ok"}\n``` and more', "not JSON"),
])
def test_an_invalid_score_reply_is_an_error_with_the_raw_text(raw: str, problem: str) -> None:
    with pytest.raises(JudgeReplyError) as caught:
        parse_score(raw)
    assert problem in caught.value.message and caught.value.raw == raw


def test_verdicts() -> None:
    assert parse_verdict('{"winner": "B", "reason": "more precise"}') == Verdict("B",
                                                                                  "more precise")
    assert parse_verdict('{"winner": "tie", "reason": "same"}').winner == "tie"
    for bad in ('{"winner": "a", "reason": "x"}', '{"winner": "both", "reason": "x"}',
                '{"winner": "A"}'):
        with pytest.raises(JudgeReplyError):
            parse_verdict(bad)


def test_the_judge_sees_the_prompt_the_conversation_the_answer_and_the_rubric() -> None:
    turns = (Message("assistant", "您好！"), Message("user", "退款？"))
    system, user = score_messages("你是客服。", turns, "可以退款。", "mentions 7 days")
    assert system.role == "system" and '{"score": <integer 0-10>' in system.content
    assert "<system_prompt>\n你是客服。\n</system_prompt>" in user.content
    assert "Assistant: 您好！\nCustomer: 退款？" in user.content
    assert "<answer>\n可以退款。\n</answer>" in user.content
    assert "<rubric>\nmentions 7 days\n</rubric>" in user.content
    _, no_rubric = score_messages("p", turns, "a", None)
    assert "<rubric>" not in no_rubric.content
    _, pair = pair_messages(turns, "first", "second", None)
    assert pair.content.index("<answer_a>\nfirst") < pair.content.index("<answer_b>\nsecond")
