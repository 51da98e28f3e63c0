"""A run's plan: defaults, the judge by default, placeholders, caps; and each cell's messages."""

from __future__ import annotations

from typing import Any

import pytest

from promptcast.errors import InvalidField, ModelUnavailable
from promptcast.evals import plan as plans
from promptcast.evals.cases import parse_case
from promptcast.evals.messages import cell_messages, fill, placeholders
from promptcast.evals.plan import PlanLimits, SavedTestSet, default_judge, parse_plan
from promptcast.models import ModelTable

LIMITS = PlanLimits(max_cells=20, max_case_chars=1000, max_prompt_chars=500,
                    max_opening_chars=100, default_concurrency=4, max_concurrency=8,
                    local_queue_size=2)


def plan(models: ModelTable | None = None, **body: Any) -> Any:
    data = {"prompts": [{"name": "a", "text": "A"}, {"name": "b", "text": "B"}],
            "cases": [{"message": "hi"}], **body}
    return parse_plan(data, models=models or ModelTable.build({}), limits=LIMITS)


def test_defaults() -> None:
    got = plan()
    assert (got.model, got.judge, got.pairwise, got.concurrency, got.deltas) == (
        "local", "local", False, 2, False)  # the embedded model: at most its queue
    assert plan(judge=False).judge is None


def test_the_default_judge_is_the_strongest_keyed_model() -> None:
    keyed = ModelTable.build({"OPENAI_API_KEY": "k", "DASHSCOPE_API_KEY": "k"})
    assert default_judge(keyed, None) == "qwen-max"
    assert default_judge(ModelTable.build({"OPENAI_API_KEY": "k"}), None) == "gpt-4o-mini"
    assert default_judge(ModelTable.build({}), None) == "local"
    assert default_judge(keyed, "qwen-turbo") == "qwen-turbo"
    assert plan(keyed, model="qwen-turbo").judge == "qwen-max"
    assert plan(keyed, model="qwen-turbo").concurrency == 4


def test_a_judge_without_its_key_is_refused_naming_the_judge() -> None:
    with pytest.raises(ModelUnavailable) as caught:
        plan(judge="gpt-4o-mini")
    assert caught.value.field == "judge" and "OPENAI_API_KEY" in caught.value.message


def test_every_placeholder_needs_a_value_from_the_run_or_the_case() -> None:
    prompts = [{"name": "v", "text": "You work for {{shop}}; returns: {{ refund_window }}."}]
    cases = [{"message": "a", "vars": {"refund_window": "7 天"}}, {"message": "b"}]
    with pytest.raises(InvalidField) as caught:
        plan(prompts=prompts, cases=cases)
    assert caught.value.field == "cases[0].vars" and "{{shop}}" in caught.value.message
    with pytest.raises(InvalidField) as caught:
        plan(prompts=prompts, cases=cases, vars={"shop": "Acme"})
    assert caught.value.field == "cases[1].vars" and "{{refund_window}}" in caught.value.message
    assert plan(prompts=prompts, cases=cases, vars={"shop": "Acme", "refund_window": "30"})


def test_cases_come_in_the_body_or_from_a_saved_test_set_never_both() -> None:
    prompts = [{"name": "a", "text": "A"}]
    assert plans.testset_ref({"cases": []}) is None
    assert plans.testset_ref({"testset": "  电商 "}) == "电商"
    for data, field in (({"testset": "x", "cases": []}, "testset"), ({"testset": ""}, "testset"),
                        ({"testset": ["x"]}, "testset"), ({"testset": "x" * 201}, "testset")):
        with pytest.raises(InvalidField) as caught:
            plans.testset_ref(data)
        assert caught.value.field == field
    saved = SavedTestSet("t1", "电商", [{"message": "在吗"}, {"message": "退货"}])
    got = parse_plan({"prompts": prompts, "testset": "电商"}, models=ModelTable.build({}),
                     limits=LIMITS, saved=saved)
    assert [c.turns[-1].content for c in got.cases] == ["在吗", "退货"] and got.testset is saved
    # Without the library's answer (in-process, say), a `testset` cannot be run.
    with pytest.raises(InvalidField) as caught:
        parse_plan({"prompts": prompts, "testset": "电商"}, models=ModelTable.build({}),
                   limits=LIMITS)
    assert caught.value.field == "testset" and "--server" in caught.value.message
    # A body with `cases` uses them, whatever else the caller found.
    assert parse_plan({"prompts": prompts, "cases": [{"message": "hi"}]},
                      models=ModelTable.build({}), limits=LIMITS, saved=saved).testset is None
    # A saved set's cases were stored unchecked: their faults name `testset` and the case.
    bad = SavedTestSet("t2", "typo", [{"message": "ok"}, {"message": "x", "max_chars": -1}])
    with pytest.raises(InvalidField) as caught:
        parse_plan({"prompts": prompts, "testset": "typo"}, models=ModelTable.build({}),
                   limits=LIMITS, saved=bad)
    assert caught.value.field == "testset"
    assert "'typo', case 1 (`max_chars`)" in caught.value.message
    with pytest.raises(InvalidField, match="at most 20") as caught:
        parse_plan({"prompts": prompts, "testset": "big"}, models=ModelTable.build({}),
                   limits=LIMITS, saved=SavedTestSet("t3", "big", [{"message": "x"}] * 21))
    assert caught.value.field == "testset"


def test_caps() -> None:
    with pytest.raises(InvalidField, match="at most 20"):
        plan(cases=[{"message": "x"}] * 11)
    with pytest.raises(InvalidField, match="at most 20") as caught:
        plan(prompts=[{"name": str(i), "text": "t"} for i in range(7)],
             cases=[{"message": "x"}] * 2, pairwise=True)  # 21 pairs x 2
    assert caught.value.field == "pairwise"
    with pytest.raises(InvalidField) as caught:
        plan(prompts=[{"name": "a", "text": "x" * 501}])
    assert caught.value.field == "prompts[0].text"
    with pytest.raises(InvalidField) as caught:
        plan(prompts=[{"name": "tie", "text": "x"}])
    assert caught.value.field == "prompts[0].name"


def test_a_cells_messages_fill_the_prompt_and_put_the_opening_first() -> None:
    case = parse_case({"conversation": [{"role": "user", "content": "退款？"},
                                        {"role": "assistant", "content": "请提供订单号"},
                                        {"role": "user", "content": "123"}],
                       "vars": {"days": "7 天"}}, max_chars=999)
    messages = cell_messages("你是{{shop}}的客服，退货期 {{days}}。", case,
                             {"shop": "云杉", "days": "7 天"}, "您好，{{shop}}客服为您服务")
    assert [m.as_dict() for m in messages] == [
        {"role": "system", "content": "你是云杉的客服，退货期 7 天。"},
        {"role": "assistant", "content": "您好，云杉客服为您服务"},
        {"role": "user", "content": "退款？"},
        {"role": "assistant", "content": "请提供订单号"},
        {"role": "user", "content": "123"},
    ]
    # A case that checks the bot opens with the line is not told it already did.
    opens = parse_case({"message": "hi", "starts_with_opening": True}, max_chars=99)
    assert [m.role for m in cell_messages("p", opens, {}, "Hello!")] == ["system", "user"]


def test_placeholders() -> None:
    # The page's definition (service/variables.py): any name without braces or a line end.
    assert placeholders("{{a}} {{ b }} {{a}} {{退款期限}} {x} {{1x}}") == [
        "a", "b", "退款期限", "1x"]
    assert fill("{{a}} {{b}}", {"a": "1"}) == "1 {{b}}"
