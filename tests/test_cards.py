"""Card numbers and card-named columns: the detector and the database scan."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from assay.cards import (
    _PREFILTER,
    card_column,
    find_card_numbers,
    issuer,
    luhn_valid,
    redact,
    scan_database,
)

# The test numbers card brands and Stripe publish, with the issuer each is.
TEST_NUMBERS = {
    "4242424242424242": "visa",
    "4000056655665556": "visa",
    "5555555555554444": "mastercard",
    "2223003122003222": "mastercard",
    "378282246310005": "amex",
    "6011111111111117": "discover",
    "3056930009020004": "diners",
    "36227206271667": "diners",
    "3566002020360505": "jcb",
    "6200000000000005": "unionpay",
}


def grouped(digits: str, separator: str) -> str:
    if len(digits) == 15:
        parts = [digits[:4], digits[4:10], digits[10:]]
    else:
        parts = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    return separator.join(parts)


@pytest.mark.parametrize("number", TEST_NUMBERS)
def test_published_numbers_pass_luhn(number):
    assert luhn_valid(number)
    assert issuer(number) == TEST_NUMBERS[number]


@pytest.mark.parametrize("number", TEST_NUMBERS)
@pytest.mark.parametrize("separator", ["", " ", "-"])
def test_published_numbers_found_in_text(number, separator):
    text = f"Customer paid with {grouped(number, separator)}, thanks!"

    found = find_card_numbers(text)

    assert [m.digits for m in found] == [number]
    assert found[0].issuer == TEST_NUMBERS[number]
    assert text[found[0].start : found[0].end] == grouped(number, separator)


@pytest.mark.parametrize("number", TEST_NUMBERS)
def test_published_numbers_found_in_json(number):
    found = find_card_numbers(f'{{"note": "card {number}", "n": {number}}}')

    assert [m.digits for m in found] == [number, number]


def test_number_found_next_to_letters():
    assert [m.digits for m in find_card_numbers("pan=4242424242424242;")] == [
        "4242424242424242"
    ]


def test_number_ending_sentence_found():
    found = find_card_numbers("The card was 4242424242424242. Then 5555555555554444.")

    assert [m.digits for m in found] == ["4242424242424242", "5555555555554444"]


def test_number_next_to_short_hex_found():
    found = find_card_numbers("ref cafe4242424242424242")

    assert [m.digits for m in found] == ["4242424242424242"]


def test_number_after_unrelated_digits_found():
    found = find_card_numbers("order 12 4242 4242 4242 4242")

    assert [m.digits for m in found] == ["4242424242424242"]


@pytest.mark.parametrize(
    "text",
    [
        "1700000000000",  # a millisecond Unix timestamp
        "created 1712345678901 ms",
        "20240105000000_indexer.sql",  # a migration name
        "20991231235959",
        "2024-01-05 10:00:00+00",  # a timestamp with dashes and spaces
        "42424242424242424",  # 17 digits: a Visa prefix, but not a Visa length
        "4242424242424241",  # fails Luhn
        "9242424242424242",  # no issuer starts with 9
        "1234567890123456",
        "00000000-4242-4242-4242-424242424242",  # a UUID with digit groups
        "1.2600000000000000",  # a numeric value with 16 decimals
        "4242424242424242.5",
        "md5 ab4242424242424242cdef0123456789",  # a hex digest
        "sha1 4242424242424242ab420123456789abcdef0123",
        "4242 4242-4242 4242",  # mixed separators
        "4242  4242  4242  4242",  # double spaces break the groups
        "424242424242424242424242",  # a 24-digit id: no card inside
        "phone +1 415 555 0100",
        "",
    ],
)
def test_false_positives_skipped(text):
    assert find_card_numbers(text) == []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["4242424242424242", "378282246310005", "1", "42", " ", "-", ".", "x"]
        ),
        max_size=12,
    )
)
def test_prefilter_passes_every_candidate(parts):
    # The server-side filter may pass extra rows, but never lose a card number.
    text = "".join(parts)

    if find_card_numbers(text):
        assert re.search(_PREFILTER, text), text


def test_issuer_needs_valid_length():
    assert issuer("4222222222222") == "visa"  # 13 digits
    assert issuer("4242424242424242424") == "visa"  # 19 digits
    assert issuer("37828224631000") is None  # Amex is 15 digits only
    assert issuer("55555555555544440") is None  # Mastercard is 16 only
    assert issuer("2720990000000000") == "mastercard"
    assert issuer("2721000000000000") is None


def test_redact_keeps_six_and_four():
    assert redact("4242424242424242") == "424242******4242"
    assert redact("378282246310005") == "378282*****0005"


@pytest.mark.parametrize(
    "name, kind",
    [
        ("card_number", "card number"),
        ("cardNumber", "card number"),
        ("CardNo", "card number"),
        ("cc_number", "card number"),
        ("pan", "card number (pan)"),
        ("card_pan", "card number (pan)"),
        ("cvv", "card verification code"),
        ("CVV2", "card verification code"),
        ("card_cvc", "card verification code"),
        ("expiry", "card expiry"),
        ("expiry_date", "card expiry"),
        ("card_expiration", "card expiry"),
        ("exp_month", "card expiry"),
        ("iban", "iban"),
        ("payout_iban", "iban"),
        ("account_number", "account number"),
        ("bankAccountNumber", "account number"),
    ],
)
def test_card_columns_named(name, kind):
    assert card_column(name) == kind


@pytest.mark.parametrize(
    "name",
    [
        "company",
        "span",
        "expanded",
        "japan_region",
        "panel",
        "expires_at",
        "token_expiry",
        "expiration_date",
        "account_id",
        "card_last4",
        "card_brand",
        "number",
        "scanned",
        "ibanez",
        "recv",
    ],
)
def test_ordinary_columns_not_named(name):
    assert card_column(name) is None


# The database scan -------------------------------------------------------------


@pytest.fixture
def scan_dsn(shared_postgres_url: str) -> Iterator[str]:
    name = f"cards_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(shared_postgres_url, autocommit=True) as admin:
        admin.execute(f"create database {name}")
    try:
        yield make_conninfo(shared_postgres_url, dbname=name)
    finally:
        with psycopg.connect(shared_postgres_url, autocommit=True) as admin:
            admin.execute(f"drop database {name} with (force)")


SCHEMA = """
create table tickets (
    id int primary key,
    subject text,
    notes text,
    payload jsonb,
    amount bigint,
    created_at timestamptz default now()
);
create table payments (id uuid primary key, cvv text, company text);
create table events (id bigint, at text) partition by range (id);
create table events_1 partition of events for values from (0) to (100);
create view ticket_cards as select id, notes as card_number from tickets;
create schema billing;
create table billing.ledger (reference varchar(40));
"""


def test_scan_finds_numbers_and_columns(scan_dsn):
    with psycopg.connect(scan_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(
            "insert into tickets (id, subject, notes, payload, amount) values "
            "(1, 'hello', 'paid with 4000 0566 5566 5556', null, 10),"
            "(2, 'migration 20240105000000', 'ts 1712345678901', '{\"n\": 1}', 5),"
            "(3, 'x', null, '{\"pan\": \"3782 822463 10005\"}', 6011111111111117)"
        )
        conn.execute("insert into events values (7, '4242424242424242')")
        conn.execute("insert into billing.ledger values ('ref.5555555555554444')")

        result = scan_database(conn)

    named = {(hit.table, hit.column): hit.kind for hit in result.named}
    assert named == {
        ("public.payments", "cvv"): "card verification code",
        ("public.ticket_cards", "card_number"): "card number",
    }
    values = {(hit.table, hit.column): hit for hit in result.values}
    assert set(values) == {
        ("public.tickets", "notes"),
        ("public.tickets", "payload"),
        ("public.tickets", "amount"),
        ("public.events_1", "at"),
        ("billing.ledger", "reference"),
    }
    assert values[("public.tickets", "notes")].examples == [
        {"row": "1", "number": "400005******5556"}
    ]
    assert values[("public.tickets", "payload")].issuers == {"amex"}
    assert values[("public.tickets", "amount")].issuers == {"discover"}
    assert result.rows == 5
    assert result.candidate_rows == 5


def test_scan_limited_to_schemas(scan_dsn):
    with psycopg.connect(scan_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("insert into billing.ledger values ('5555555555554444')")

        result = scan_database(conn, schemas=["public"])

    assert all(not hit.table.startswith("billing.") for hit in result.values)
    assert result.values == []


def test_scan_of_clean_tables_finds_nothing(scan_dsn):
    with psycopg.connect(scan_dsn, autocommit=True) as conn:
        conn.execute(
            SCHEMA.replace("cvv text", "note text").replace(
                "notes as card_number", "notes"
            )
        )
        conn.execute(
            "insert into tickets (id, subject, notes) values "
            "(1, 'order 1712345678901', '20240105000000_init.sql')"
        )

        result = scan_database(conn)

    assert result.named == []
    assert result.values == []
    assert result.rows == 1
