"""DM-1: support tools' internal notes are never stored, in a table or a log.

Zendesk and Intercom deliveries carry a public comment with one canary and
an internal note with another (a Zendesk comment with ``public: false``, an
Intercom ``note`` part, both next to public content and alone). Afterwards
every text, JSON and bytea column of every table is searched for each
canary, and so is every log file of the application. The public canary must
be found in a table, or the probe proved nothing; a note canary must be
found nowhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql

from assay.canaries import Canary, encodings, new_canary
from assay.findings import Finding
from assay.webhooks.payloads import (
    ACCENTED,
    Event,
    intercom_conversation,
    new_event_id,
    zendesk_comment,
)
from assay.webhooks.probes import Delivery, Outcome, Prober, ProbeReport, serialise

__all__ = ["NOTE_PROVIDERS", "probe_internal_notes", "search_tables"]

logger = logging.getLogger(__name__)

NOTE_PROVIDERS = ("zendesk", "intercom")

_COLUMNS = """
select n.nspname, c.relname, a.attname,
       t.typname = 'bytea' or (t.typcategory = 'A' and e.typname = 'bytea')
from pg_attribute a
join pg_class c on c.oid = a.attrelid
join pg_namespace n on n.oid = c.relnamespace
join pg_type t on t.oid = a.atttypid
left join pg_type e on e.oid = t.typelem and t.typcategory = 'A'
where c.relkind in ('r', 'p', 'm')
  and not c.relispartition
  and a.attnum > 0
  and not a.attisdropped
  and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\\_toast%'
  and n.nspname not like 'pg\\_temp%'
  and (t.typcategory = 'S' or t.typname in ('json', 'jsonb', 'xml', 'bytea')
       or (t.typcategory = 'A'
           and (e.typcategory = 'S' or e.typname in ('json', 'jsonb', 'bytea'))))
order by 1, 2, a.attnum
"""


@dataclass(frozen=True)
class Plant:
    """One planted delivery: its canaries and whether they must be stored."""

    provider: str
    public: Canary | None
    notes: tuple[Canary, ...]
    delivery: Delivery


def search_tables(dsn: str, values: list[str]) -> tuple[dict[str, list[str]], int]:
    """Return, per value, the ``schema.table.column`` names that contain it.

    Partitioned tables are searched through their parent. The second item
    is the number of columns searched.

    NOTE: the search sees plaintext only, so a note the application stores
    encrypted or compressed is not found.
    """
    found: dict[str, list[str]] = {value: [] for value in values}
    with psycopg.connect(dsn, autocommit=True) as conn:
        columns = conn.execute(_COLUMNS).fetchall()
        tables: dict[tuple[str, str], list[tuple[str, bool]]] = {}
        for schema, table, column, binary in columns:
            tables.setdefault((schema, table), []).append((column, binary))
        for (schema, table), cols in tables.items():
            hits = _search_table(conn, schema, table, cols, values)
            for value, column in hits:
                found[value].append(f"{schema}.{table}.{column}")
    return found, len(columns)


def _search_table(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    columns: list[tuple[str, bool]],
    values: list[str],
) -> list[tuple[str, str]]:
    tests, params, pairs = [], [], []
    for column, binary in columns:
        ident = sql.Identifier(column)
        for value in values:
            if binary:
                test = sql.SQL(
                    "coalesce(bool_or("
                    "position(convert_to(%s, 'UTF8') in {}::bytea) > 0), false)"
                ).format(ident)
            else:
                test = sql.SQL(
                    "coalesce(bool_or(strpos({}::text, %s) > 0), false)"
                ).format(ident)
            tests.append(test)
            params.append(value)
            pairs.append((value, column))
    query = sql.SQL("select {} from {}").format(
        sql.SQL(", ").join(tests), sql.Identifier(schema, table)
    )
    row = conn.execute(query, params).fetchone()
    return [pair for pair, hit in zip(pairs, row) if hit]


def _plants(probers: dict[str, Prober], now: int) -> list[Plant]:
    plants = []
    if "zendesk" in probers:
        plants.extend(_zendesk_plants(probers["zendesk"], now))
    if "intercom" in probers:
        plants.extend(_intercom_plants(probers["intercom"], now))
    return plants


def _signed(
    prober: Prober, case: str, label: str, event_id: str, payload: dict, now: int
) -> Delivery:
    event = Event(event_id, "", payload)
    body = serialise(payload)
    return Delivery(case, label, body, prober.headers(event, body, now), ())


def _zendesk_plants(prober: Prober, now: int) -> list[Plant]:
    public = new_canary("public-comment", "zendesk public comment", prefix="assay-pub-")
    note = new_canary("internal-note", "zendesk internal note", prefix="assay-note-")
    ticket = int(time.time() * 1000) % 10**9
    plants = []
    for canary, is_public, case, label in (
        (public, True, "zendesk_public", "a public Zendesk comment"),
        (note, False, "zendesk_note", "a Zendesk internal note (public: false)"),
    ):
        event_id = new_event_id("zendesk")
        payload = zendesk_comment(
            event_id,
            f"{canary.value} {ACCENTED}",
            timestamp=now,
            public=is_public,
            ticket=ticket,
        )
        delivery = _signed(prober, case, label, event_id, payload, now)
        plants.append(
            Plant(
                "zendesk",
                canary if is_public else None,
                () if is_public else (canary,),
                delivery,
            )
        )
    return plants


def _intercom_plants(prober: Prober, now: int) -> list[Plant]:
    public = new_canary("public-comment", "intercom reply", prefix="assay-pub-")
    beside = new_canary(
        "internal-note", "intercom note beside a reply", prefix="assay-note-"
    )
    alone = new_canary("internal-note", "intercom note", prefix="assay-note-")
    mixed_id, noted_id = new_event_id("intercom"), new_event_id("intercom")
    mixed = intercom_conversation(
        mixed_id,
        [
            ("comment", f"{public.value} {ACCENTED}"),
            ("note", f"{beside.value} {ACCENTED}"),
        ],
        timestamp=now,
        topic="conversation.admin.replied",
    )
    noted = intercom_conversation(
        noted_id,
        [("note", f"{alone.value} {ACCENTED}")],
        timestamp=now,
        topic="conversation.admin.noted",
    )
    return [
        Plant(
            "intercom",
            public,
            (beside,),
            _signed(
                prober,
                "intercom_reply_and_note",
                "an Intercom reply with a note part beside it",
                mixed_id,
                mixed,
                now,
            ),
        ),
        Plant(
            "intercom",
            None,
            (alone,),
            _signed(
                prober,
                "intercom_note",
                "an Intercom conversation.admin.noted event",
                noted_id,
                noted,
                now,
            ),
        ),
    ]


def probe_internal_notes(
    probers: dict[str, Prober],
    dsn: str,
    read_logs: Callable[[], dict[Path, bytes]] | None,
) -> ProbeReport:
    """DM-1: send notes beside public comments; search every table and log for them."""
    report = ProbeReport()
    now = int(time.time())
    plants = _plants(probers, now)
    outcomes: dict[str, Outcome] = {}
    for plant in plants:
        prober = probers[plant.provider]
        prober.control = "DM-1"
        outcome = prober.send(plant.delivery)
        outcomes[plant.delivery.case] = outcome
        report.examined += 1
        if plant.public is not None and not outcome.accepted:
            report.findings.append(
                prober.finding(
                    "public-comment-rejected",
                    outcome,
                    f"the delivery carrying the public comment was not accepted "
                    f"(status {outcome.status}), so the probe proved nothing",
                    level="undecided",
                )
            )

    values = [
        c.value for p in plants for c in ((p.public,) if p.public else ()) + p.notes
    ]
    found, columns = search_tables(dsn, values)
    report.examined += columns
    report.observations.append({"columns_searched": columns})
    logs = read_logs() if read_logs is not None else None
    for plant in plants:
        prober = probers[plant.provider]
        outcome = outcomes[plant.delivery.case]
        report.observations.append(_observation(plant, outcome, found, logs))
        report.findings.extend(_judge_plant(prober, plant, outcome, found, logs))
    if logs is None:
        report.findings.append(
            Finding(
                control="DM-1",
                rule="logs-not-searched",
                message="the application's logs were not available, so the claim "
                "that notes reach no log was not checked",
                level="undecided",
                source="live",
                fix="Let Assay start the application (app.command), or list its log "
                "files in app.logs",
            )
        )
    return report


def _observation(
    plant: Plant,
    outcome: Outcome,
    found: dict[str, list[str]],
    logs: dict[Path, bytes] | None,
) -> dict:
    """Record where each canary of one delivery was found: columns and log files."""
    notes = []
    for note in plant.notes:
        notes.extend(found[note.value])
        notes.extend(path.name for path, _ in _log_hits(logs or {}, note))
    observed = {"case": plant.delivery.case, "status": outcome.status}
    if plant.public is not None:
        observed["public_text_stored_in"] = found[plant.public.value]
    observed["note_found_in"] = notes
    return observed


def _judge_plant(
    prober: Prober,
    plant: Plant,
    outcome: Outcome,
    found: dict[str, list[str]],
    logs: dict[Path, bytes] | None,
) -> list[Finding]:
    findings = []
    if plant.public is not None and outcome.accepted and not found[plant.public.value]:
        findings.append(
            prober.finding(
                "public-comment-not-stored",
                outcome,
                f"the public text ({plant.public.redacted()}) is in no table, so the "
                "absence of the note proves nothing",
                level="undecided",
                fix="Check that the receiver stores public comments of this event",
            )
        )
    for note in plant.notes:
        for column in found[note.value]:
            findings.append(
                _note_finding(
                    prober,
                    outcome,
                    f"the internal note ({note.redacted()}) was stored in {column}",
                    table=column.rsplit(".", 1)[0],
                    where={"column": column},
                )
            )
        for path, form in _log_hits(logs or {}, note):
            findings.append(
                _note_finding(
                    prober,
                    outcome,
                    f"the internal note ({note.redacted()}) was written to the "
                    f"application log {path.name} ({form})",
                    where={"log": str(path), "encoding": form},
                )
            )
    return findings


def _note_finding(
    prober: Prober,
    outcome: Outcome,
    message: str,
    *,
    table: str | None = None,
    where: dict,
) -> Finding:
    base = prober.finding(
        "internal-note-stored",
        outcome,
        message,
        fix="Drop private notes (Zendesk public: false, Intercom note parts) before "
        "storing or logging anything from the event",
        extra=where,
    )
    return Finding(**{**base.to_dict(), "table": table})


def _log_hits(logs: dict[Path, bytes], canary: Canary) -> list[tuple[Path, str]]:
    hits = []
    forms = encodings(canary.value)
    for path, data in logs.items():
        for name, form in forms.items():
            if form in data:
                hits.append((path, name))
                break
    return hits
