"""Rule checks and the language detector behind `language`."""

from __future__ import annotations

import pytest

from promptcast.evals.cases import parse_case
from promptcast.evals.checks import run_checks
from promptcast.service.language import detect_language


def checks(answer: str, opening: str | None = None, **expect: object) -> list[tuple[str, bool]]:
    case = parse_case({"message": "m", **expect}, max_chars=10_000)
    return [(c.kind, c.passed) for c in run_checks(answer, case.expect, opening)]


def test_contains_and_not_contains_ignore_case_and_take_lists() -> None:
    assert checks("We will REFUND you in 3 days", contains=["refund", "days"]) == [
        ("contains", True), ("contains", True)]
    assert checks("As an AI, I cannot", not_contains="as an ai") == [("not_contains", False)]
    assert checks("Sure!", contains="refund", not_contains=["ai", "bot"]) == [
        ("contains", False), ("not_contains", True), ("not_contains", True)]


def test_regex_max_chars_and_the_reasons_say_why() -> None:
    case = parse_case({"message": "m", "regex": r"\d{11}", "max_chars": 10}, max_chars=999)
    regex, length = run_checks("订单号 20261201888 已发货", case.expect, None)
    assert regex.passed and regex.reason == "matches /\\d{11}/ at '20261201888'"
    assert not length.passed and length.reason == "19 characters; the limit is 10"
    [missing] = run_checks("none", parse_case({"message": "m", "regex": "x+"},
                                              max_chars=99).expect, None)
    assert missing.as_json() == {"kind": "regex", "pass": False, "reason": "nothing matches /x+/"}


def test_starts_with_opening_ignores_spacing_but_not_words() -> None:
    opening = "您好，我是小云，\n很高兴为您服务。"
    assert checks("您好，我是小云， 很高兴为您服务。请问…", opening,
                  starts_with_opening=True) == [("starts_with_opening", True)]
    assert checks("你好，请问有什么可以帮您？", opening,
                  starts_with_opening=True) == [("starts_with_opening", False)]
    assert checks("anything", None, starts_with_opening=True) == [("starts_with_opening", False)]


def test_language_check_says_what_it_found() -> None:
    case = parse_case({"message": "m", "language": "zh"}, max_chars=99)
    [check] = run_checks("Your order has shipped and will arrive soon.", case.expect, None)
    assert not check.passed and check.reason == "written in en, not zh"
    [unknown] = run_checks("OK", case.expect, None)
    assert not unknown.passed and "cannot be told" in unknown.reason


@pytest.mark.parametrize(("text", "language"), [
    ("您好，您的订单已发货，预计三天内送达。", "zh"),
    ("订单号 ABC123456 已发货，请注意查收", "zh"),
    ("Hello, your order has shipped and will arrive within three days.", "en"),
    ("Bonjour, votre commande est en route et nous vous remercions.", "fr"),
    ("Hola, su pedido está en camino y gracias por su paciencia.", "es"),
    ("Guten Tag, die Bestellung ist unterwegs und wir danken Ihnen für die Geduld.", "de"),
    ("ご注文ありがとうございます。発送は明日です。", "ja"),
    ("주문이 발송되었습니다. 감사합니다.", "ko"),
    ("Здравствуйте, ваш заказ отправлен.", "ru"),
    ("OK", None),
    ("12345 !!!", None),
])
def test_language_detection(text: str, language: str | None) -> None:
    # The service's detector, the one that names a prompt's language for the meta-prompt.
    assert (detect_language(text) or None) == language
