"""Payment-card data: card numbers in text and card-named columns.

A card number is 13 to 19 digits, optionally grouped with single spaces or
dashes, that passes the Luhn check and starts with an issuer prefix valid for
its length. Luhn alone passes about one digit string in ten, so the issuer
prefix and digit boundaries do most of the work against false positives:

- digits are only ever cut at a group boundary, so a card number is never
  found inside a longer digit run (an id, a hash in decimal);
- 13-digit values starting with 1 are millisecond Unix timestamps;
- 14-digit values that read as a date and time (``YYYYMMDDhhmmss``) are
  migration-style timestamps;
- digits on either side of a decimal point are a decimal number (a
  ``numeric`` column prints ``1.2600000000000000``);
- digit groups inside a UUID or a hex digest (32, 40, 64 or 128 hex
  characters with a letter) are never part of a number.

Column names are split into words (``snake_case``, ``camelCase``, digits) and
matched word by word, so ``company``, ``span`` and ``expanded`` never match
``pan`` or ``exp``.

``scan_database`` runs the same rules over every table: PostgreSQL filters rows
with a regular expression, Python confirms each candidate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

__all__ = [
    "CardMatch",
    "ColumnHit",
    "ValueHit",
    "card_column",
    "find_card_numbers",
    "issuer",
    "luhn_valid",
    "redact",
    "scan_database",
]

logger = logging.getLogger(__name__)

MIN_DIGITS = 13
MAX_DIGITS = 19

# Issuer prefixes and the lengths each issuer issues, from the card brands'
# published ranges as summarised by Wikipedia's "Payment card number" page.
# Diners Club International issues 14- to 19-digit numbers, so its 16-digit
# test number 3056930009020004 is found too.
_ISSUERS: tuple[tuple[str, tuple[tuple[int, int], ...], tuple[int, ...]], ...] = (
    ("visa", ((4, 4),), (13, 16, 19)),
    ("mastercard", ((51, 55), (2221, 2720)), (16,)),
    ("amex", ((34, 34), (37, 37)), (15,)),
    ("discover", ((6011, 6011), (644, 649), (65, 65)), (16, 17, 18, 19)),
    (
        "diners",
        ((36, 36), (300, 305), (3095, 3095), (38, 39)),
        (14, 15, 16, 17, 18, 19),
    ),
    ("jcb", ((3528, 3589),), (16, 17, 18, 19)),
    ("unionpay", ((62, 62),), (16, 17, 18, 19)),
)

# One or more digits, then more digit groups each after a single space or dash.
# A run next to a decimal point and another digit is part of a decimal number.
_RUN = re.compile(r"(?<![0-9])(?<![0-9]\.)[0-9]+(?:[ -][0-9]+)*(?![0-9])(?!\.[0-9])")
_GROUP = re.compile(r"[0-9]+|[ -]")
# UUIDs in text or JSON can hold dash-separated all-digit groups that pass.
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# Hex digests (MD5, SHA-1, SHA-256, SHA-512) often hold long decimal runs.
_HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32,128}(?![0-9A-Za-z])")
_DIGEST_LENGTHS = (32, 40, 64, 128)


@dataclass(frozen=True)
class CardMatch:
    """A card number found in a text: its digits, issuer and offsets."""

    digits: str
    issuer: str
    start: int
    end: int

    def redacted(self) -> str:
        return redact(self.digits)


def redact(digits: str) -> str:
    """Keep the first six and last four digits, as PCI DSS allows for display."""
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def luhn_valid(digits: str) -> bool:
    """Return True when `digits` passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def issuer(digits: str) -> str | None:
    """Return the issuer whose prefix and length fit `digits`, else None."""
    length = len(digits)
    for name, ranges, lengths in _ISSUERS:
        if length not in lengths:
            continue
        for low, high in ranges:
            width = len(str(low))
            if low <= int(digits[:width]) <= high:
                return name
    return None


def _looks_like_timestamp(digits: str) -> bool:
    if len(digits) == 13 and digits[0] == "1":
        return True
    if len(digits) == 14:
        try:
            moment = datetime.strptime(digits, "%Y%m%d%H%M%S")
        except ValueError:
            return False
        return 1900 <= moment.year < 2200
    return False


def _check(digits: str) -> str | None:
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        return None
    if _looks_like_timestamp(digits):
        return None
    name = issuer(digits)
    if name is None or not luhn_valid(digits):
        return None
    return name


def _candidates(text: str, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """Yield each run of consecutive groups of 13 to 19 digits in one digit run.

    The groups of a candidate are joined by one kind of separator (none, all
    spaces or all dashes), so a date followed by a time is not one number.
    """
    tokens = [(m.group(), m.start()) for m in _GROUP.finditer(text, start, end)]
    groups = tokens[0::2]
    separators = [token for token, _ in tokens[1::2]]
    for first in range(len(groups)):
        digits = ""
        for last in range(first, len(groups)):
            if last > first and separators[last - 1] != separators[first]:
                break
            digits += groups[last][0]
            if len(digits) > MAX_DIGITS:
                break
            if len(digits) >= MIN_DIGITS:
                group, offset = groups[last]
                yield digits, groups[first][1], offset + len(group)


def _mask_digest(match: re.Match[str]) -> str:
    token = match.group()
    if len(token) in _DIGEST_LENGTHS and not token.isdigit():
        return "x" * len(token)
    return token


def find_card_numbers(text: str) -> list[CardMatch]:
    """Return every card number in `text`; overlapping candidates keep the first.

    UUIDs and hex digests are masked first, so their digits never form a number.
    """
    if "-" in text:
        text = _UUID.sub(lambda m: "x" * len(m.group()), text)
    text = _HEX_TOKEN.sub(_mask_digest, text)
    found: list[CardMatch] = []
    for run in _RUN.finditer(text):
        taken_until = -1
        for digits, start, end in _candidates(text, run.start(), run.end()):
            if start < taken_until:
                continue
            name = _check(digits)
            if name is not None:
                found.append(
                    CardMatch(digits=digits, issuer=name, start=start, end=end)
                )
                taken_until = end
    return found


# Column names ---------------------------------------------------------------

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_NUMBER_WORDS = {"number", "num", "no", "nr"}
_EXPIRY_COMPANIONS = {"card", "cc", "date", "month", "year", "mm", "yy", "yyyy"}


def column_words(name: str) -> list[str]:
    """Split a column name into lower-case words: ``cardNumber2`` is card, number, 2."""
    return [word.lower() for word in _WORD.findall(name)]


def card_column(name: str) -> str | None:
    """Return the kind of card data a column name marks, or None.

    Matches whole words only: card number, cvv/cvc (and cvv2, cvc2, csc), pan,
    expiry, iban and account number.
    """
    words = column_words(name)
    joined = "".join(words)
    wordset = set(words)
    if joined in {"cardnumber", "cardnum", "ccnumber", "ccnum", "primaryaccountnumber"}:
        return "card number"
    if ({"card", "cc"} & wordset) and (_NUMBER_WORDS & wordset):
        return "card number"
    if "pan" in wordset:
        return "card number (pan)"
    for word in words:
        if re.fullmatch(r"(cvv|cvc|csc|cvn)2?", word):
            return "card verification code"
    expiry_words = {"expiry", "expiration", "exp"} & wordset
    # "expiry" alone is a card expiry; "exp" and "expiration" need a card word.
    only_expiry = expiry_words and wordset - expiry_words <= _EXPIRY_COMPANIONS
    if only_expiry and (
        "expiry" in wordset or {"card", "cc", "month", "year"} & wordset
    ):
        return "card expiry"
    if "iban" in wordset:
        return "iban"
    if joined in {"accountnumber", "acctnumber", "acctno", "accountno"}:
        return "account number"
    if ({"account", "acct"} & wordset) and (_NUMBER_WORDS & wordset):
        return "account number"
    return None


# Database scan --------------------------------------------------------------

# Types whose text form can hold a card number; domains resolve to their base.
_SCANNED_TYPES = (
    "text",
    "varchar",
    "bpchar",
    "name",
    "citext",
    "json",
    "jsonb",
    "xml",
    "numeric",
    "int8",
)
# PostgreSQL's regular expression for "13 digits, maybe grouped, starting a
# digit group outside a decimal number". It passes every row a candidate could
# come from, and Python checks each again. An alternation stands in for the
# lookbehind constraints of the Python rule, which PostgreSQL 15 ran about four
# times slower (2.7 s against 0.6 s on 200,000 rows of the table that
# benchmarks/card_scan.py generates, on 2 cores).
_PREFILTER = r"(?:^\.?|[^0-9.]|[^0-9]\.)[0-9](?:[ -]?[0-9]){12}"
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")

_COLUMNS_SQL = """
select n.nspname, c.relname, c.relkind, a.attname,
       coalesce(elem_base.typname, elem.typname, base.typname, t.typname)
from pg_attribute a
join pg_class c on c.oid = a.attrelid
join pg_namespace n on n.oid = c.relnamespace
join pg_type t on t.oid = a.atttypid
left join pg_type base on base.oid = nullif(t.typbasetype, 0)
left join pg_type elem on elem.oid = nullif(coalesce(base.typelem, t.typelem), 0)
    and coalesce(base.typcategory, t.typcategory) = 'A'
left join pg_type elem_base on elem_base.oid = nullif(elem.typbasetype, 0)
where a.attnum > 0 and not a.attisdropped
  and c.relkind in ('r', 'p', 'v', 'm', 'f')
  and n.nspname <> all(%(system)s)
  and n.nspname not like 'pg\\_temp\\_%%'
  and n.nspname not like 'pg\\_toast\\_temp\\_%%'
  and (cardinality(%(schemas)s::text[]) = 0 or n.nspname = any(%(schemas)s))
order by n.nspname, c.relname, a.attnum
"""

_KEY_SQL = """
select a.attname
from pg_index i
join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
where i.indrelid = %s::regclass and i.indisprimary
order by array_position(i.indkey::int2[], a.attnum)
"""


@dataclass(frozen=True)
class ColumnHit:
    """A column whose name marks it as card data."""

    table: str
    column: str
    kind: str
    relkind: str


@dataclass
class ValueHit:
    """Card numbers found in one column: how many rows, and a few examples."""

    table: str
    column: str
    rows: int = 0
    issuers: set[str] = field(default_factory=set)
    examples: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ScanResult:
    """The counts and hits of one database scan."""

    tables: int = 0
    columns: int = 0
    scanned_columns: int = 0
    rows: int = 0
    candidate_rows: int = 0
    named: list[ColumnHit] = field(default_factory=list)
    values: list[ValueHit] = field(default_factory=list)


def _table_name(schema: str, table: str) -> str:
    return f"{schema}.{table}"


def _read_columns(
    conn: psycopg.Connection, schemas: Iterable[str]
) -> dict[tuple[str, str], list[tuple[str, str, str]]]:
    tables: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    rows = conn.execute(
        _COLUMNS_SQL, {"system": list(_SYSTEM_SCHEMAS), "schemas": list(schemas)}
    ).fetchall()
    for schema, table, relkind, column, type_name in rows:
        tables.setdefault((schema, table), []).append((column, type_name, relkind))
    return tables


def _row_key(conn: psycopg.Connection, schema: str, table: str) -> sql.Composable:
    qualified = sql.Identifier(schema, table).as_string(conn)
    keys = [row[0] for row in conn.execute(_KEY_SQL, (qualified,)).fetchall()]
    if not keys:
        return sql.SQL("ctid::text")
    parts = [sql.SQL("{}::text").format(sql.Identifier(k)) for k in keys]
    return sql.SQL("concat_ws(',', {})").format(sql.SQL(", ").join(parts))


def _scan_table(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    columns: list[str],
    result: ScanResult,
    max_examples: int,
) -> None:
    target = sql.Identifier(schema, table)
    casts = [sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns]
    # One match per row over all columns, joined by a byte that ends any run.
    condition = sql.SQL("concat_ws(chr(1), {}) ~ {}").format(
        sql.SQL(", ").join(casts), sql.Literal(_PREFILTER)
    )
    result.rows += conn.execute(
        sql.SQL("select count(*) from only {}").format(target)
    ).fetchone()[0]
    query = sql.SQL(
        "select {key}, {casts} from only {target} where {condition}"
    ).format(
        key=_row_key(conn, schema, table),
        casts=sql.SQL(", ").join(casts),
        target=target,
        condition=condition,
    )
    hits: dict[str, ValueHit] = {}
    # A server-side cursor streams the candidate rows, and PostgreSQL declares
    # one only inside a transaction.
    with conn.transaction(), conn.cursor(name="assay_card_scan") as cursor:
        cursor.itersize = 5000
        cursor.execute(query)
        for row in cursor:
            result.candidate_rows += 1
            for column, value in zip(columns, row[1:]):
                if value is None:
                    continue
                matches = find_card_numbers(value)
                if not matches:
                    continue
                hit = hits.setdefault(
                    column, ValueHit(table=_table_name(schema, table), column=column)
                )
                hit.rows += 1
                hit.issuers.update(m.issuer for m in matches)
                if len(hit.examples) < max_examples:
                    hit.examples.append(
                        {"row": row[0], "number": matches[0].redacted()}
                    )
    result.values.extend(hits.values())


def scan_database(
    conn: psycopg.Connection,
    *,
    schemas: Iterable[str] = (),
    max_examples: int = 3,
) -> ScanResult:
    """Scan every table's text-like columns for card numbers and card-named columns.

    `schemas` limits the scan; empty means every schema except PostgreSQL's own.
    The connection should bypass row level security (a superuser or the table
    owner), or rows of other tenants go unseen. Partitioned tables are scanned
    through their partitions, views only by column name.
    """
    result = ScanResult()
    tables = _read_columns(conn, schemas)
    for (schema, table), columns in tables.items():
        relkind = columns[0][2]
        result.tables += 1
        result.columns += len(columns)
        for column, _, _ in columns:
            kind = card_column(column)
            if kind is not None:
                result.named.append(
                    ColumnHit(_table_name(schema, table), column, kind, relkind)
                )
        if relkind not in ("r", "m"):
            continue
        scanned = [
            name for name, type_name, _ in columns if type_name in _SCANNED_TYPES
        ]
        if not scanned:
            continue
        result.scanned_columns += len(scanned)
        _scan_table(conn, schema, table, scanned, result, max_examples)
    logger.info(
        "scanned %d rows in %d tables for card numbers", result.rows, result.tables
    )
    return result
