"""Off-platform contact details: found in six languages, prices, dates, times and order numbers left alone."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_currency
from hypothesis import given, settings
from hypothesis import strategies as st

from concierge.contact_details import Kind, find, mask
from knowledge.i18n import LANGUAGES

MARK = "[hidden]"

# (language, text, what must disappear, kind)
FOUND = [
    ("en", "Call me on +1 (415) 555-0134 after the session", "+1 (415) 555-0134", Kind.PHONE),
    ("en", "or text 415.555.0134 anytime", "415.555.0134", Kind.PHONE),
    ("en", "write to john.doe@gmail.com", "john.doe@gmail.com", Kind.EMAIL),
    ("en", "email john dot doe at gmail dot com", "john dot doe at gmail dot com", Kind.EMAIL),
    ("en", "mail john(at)example(dot)org", "john(at)example(dot)org", Kind.EMAIL),
    ("en", "reach me: john [at] example [dot] org", "john [at] example [dot] org", Kind.EMAIL),
    ("en", "pay me at https://paypal.me/johnfix instead", "https://paypal.me/johnfix", Kind.LINK),
    ("en", "chat on wa.me/14155550134", "wa.me/14155550134", Kind.LINK),
    ("en", "my telegram: @john_fixes", "telegram: @john_fixes", Kind.HANDLE),
    ("en", "find @johnfix99 on WhatsApp", "@johnfix99 on WhatsApp", Kind.HANDLE),
    ("en", "send it to $johnfix on cash app", "$johnfix", Kind.CASHTAG),
    ("en", "venmo: john-fix-22", "venmo: john-fix-22", Kind.HANDLE),
    ("en", "wire it to GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32", Kind.IBAN),
    ("fr", "Appelez-moi au 06 12 34 56 78 ce soir", "06 12 34 56 78", Kind.PHONE),
    ("fr", "ou au +33 6 12 34 56 78", "+33 6 12 34 56 78", Kind.PHONE),
    ("fr", "écrivez à jean arobase orange point fr", "jean arobase orange point fr", Kind.EMAIL),
    ("fr", "mon IBAN : FR76 3000 6000 0112 3456 7890 189", "FR76 3000 6000 0112 3456 7890 189", Kind.IBAN),
    ("fr", "retrouvez-moi sur t.me/jeanrepare", "t.me/jeanrepare", Kind.LINK),
    ("de", "Rufen Sie mich an: 0151 2345 6789", "0151 2345 6789", Kind.PHONE),
    ("de", "oder 0049-151-23456789", "0049-151-23456789", Kind.PHONE),
    ("de", "Mail an max ät gmx punkt de", "max ät gmx punkt de", Kind.EMAIL),
    ("de", "Signal: @max_hilft", "Signal: @max_hilft", Kind.HANDLE),
    ("es", "Llámame al +34 612 34 56 78", "+34 612 34 56 78", Kind.PHONE),
    ("es", "escríbeme a juan arroba gmail punto com", "juan arroba gmail punto com", Kind.EMAIL),
    ("es", "mi whatsapp es @juan_ayuda", "whatsapp es @juan_ayuda", Kind.HANDLE),
    ("es", "págame por revolut.me/juanayuda", "revolut.me/juanayuda", Kind.LINK),
    ("zh", "加我微信：zhang_san88 详细聊", "微信：zhang_san88", Kind.HANDLE),
    ("zh", "打我电话 13812345678 吧", "13812345678", Kind.PHONE),
    ("zh", "邮箱 zhangsan艾特qq点com", "zhangsan艾特qq点com", Kind.EMAIL),
    ("zh", "电话：１３８　１２３４　５６７８", "１３８　１２３４　５６７８", Kind.PHONE),
    ("ja", "電話は ０９０－１２３４－５６７８ です", "０９０－１２３４－５６７８", Kind.PHONE),
    ("ja", "メールは tanaka アット gmail ドット com まで", "tanaka アット gmail ドット com", Kind.EMAIL),
    ("ja", "LINE ID: tanaka123 で連絡ください", "LINE ID: tanaka123", Kind.HANDLE),
    ("ja", "ｔａｎａｋａ＠ｅｘａｍｐｌｅ．ｊｐ に送って", "ｔａｎａｋａ＠ｅｘａｍｐｌｅ．ｊｐ", Kind.EMAIL),
]


@pytest.mark.parametrize(("language", "text", "secret", "kind"), FOUND)
def test_contact_details_are_found_and_hidden(language: str, text: str, secret: str, kind: Kind) -> None:
    masked = mask(text, MARK)
    assert secret not in masked.text
    assert MARK in masked.text
    assert [hit.kind for hit in masked.hits] == [kind]
    assert masked.hits[0].text == secret
    # What surrounds the contact details stays as written.
    before, _, after = text.partition(secret)
    assert masked.text == f"{before}{MARK}{after}"


def test_every_language_has_positive_cases() -> None:
    assert {language for language, *_ in FOUND} == set(LANGUAGES)


LEFT_ALONE = [
    "It costs 25 EUR per session, 1 234 567,89 € in total",
    "€1,234.50 or $30 or 3000円 or 100元",
    "on 2024-11-24 at 14:30, or 24/11/2024 14:30, or 24.11.2024 um 14 Uhr",
    "order #12345678 did not arrive; commande n° 20231124001; 订单号 2023112400123",
    "my wifi signal drops all the time and line 1234 of my code crashes",
    "meet me at home. I am at work. Tomorrow maybe",
    "2024年11月24日 15時30分 に 3,000 円",
    "ISBN 978-3-16-148410-0, version 10.15.7, an RTX 3080 and an i7-12700K",
    "I paid 1.200.000 COP for a 2x4 board 10 ft long",
    "Mon-Fri 09:00-17:00; Sat 10:00-12:00",
    "kill the process with pid 48213 and restart",
]


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert find(text) == []


def _price(amount: int, currency: str, language: str) -> str:
    return str(format_currency(amount / 100, currency, locale=language))


@settings(max_examples=300, deadline=None)
@given(
    amount=st.integers(min_value=0, max_value=10**11),
    currency=st.sampled_from(["EUR", "USD", "GBP", "JPY", "CNY", "CHF"]),
    language=st.sampled_from(LANGUAGES),
)
def test_no_price_is_contact_details(amount: int, currency: str, language: str) -> None:
    text = f"{_price(amount, currency, language)} per session"
    assert find(text) == [], text


@settings(max_examples=300, deadline=None)
@given(
    day=st.dates(min_value=date(1950, 1, 1), max_value=date(2100, 12, 31)),
    moment=st.times(),
    language=st.sampled_from(LANGUAGES),
    style=st.sampled_from(["short", "medium", "long"]),
)
def test_no_date_or_time_is_contact_details(day: date, moment: time, language: str, style: str) -> None:
    when = datetime.combine(day, moment)
    texts = [
        str(format_date(day, style, locale=language)),
        str(format_time(moment, "short", locale=language)),
        str(format_datetime(when, style, locale=language)),
        day.isoformat(),
        f"{day:%d/%m/%Y} {moment:%H:%M}",
        f"{day:%d.%m.%Y}",
        f"{day:%Y/%m/%d}",
    ]
    for text in texts:
        assert find(text) == [], text


@settings(max_examples=200, deadline=None)
@given(
    number=st.integers(min_value=10**5, max_value=10**15),
    prefix=st.sampled_from(
        ["order #", "#", "Order no. ", "commande n° ", "Bestellung Nr. ", "pedido ", "订单号 ", "注文番号 "]
    ),
)
def test_no_order_number_is_contact_details(number: int, prefix: str) -> None:
    text = f"{prefix}{number} has not arrived"
    assert find(text) == [], text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_masking_keeps_everything_but_the_hits(text: str) -> None:
    masked = mask(text, MARK)
    rebuilt, position = [], 0
    for hit in masked.hits:
        assert text[hit.start : hit.end] == hit.text
        rebuilt += [text[position : hit.start], MARK]
        position = hit.end
    assert masked.text == "".join(rebuilt) + text[position:]


def test_long_input_is_quick() -> None:
    import time as clock

    for junk in ("a." * 2000, "1 " * 2000, "@" * 4000, "a at " * 800, "+" + "0-" * 2000):
        started = clock.perf_counter()
        find(junk)
        assert clock.perf_counter() - started < 0.5, junk[:20]
