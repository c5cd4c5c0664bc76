"""Benchmark the DM-3 card-number scan and the DM-2 indexer probe.

Card scan: a throwaway local PostgreSQL cluster gets one table of generated
support notes (1,000,000 rows by default). Most rows hold ordinary text with
short numbers; 1% hold a millisecond timestamp or a migration-style date
(13- and 14-digit runs the server-side filter lets through) and 0.1% hold a
reference test card number. ``assay.cards.scan_database`` then scans the
database. The figure is rows scanned per second. The rows the server-side
filter passed to Python and the card numbers found are printed beside it, to
show the scan did its work.

Indexer probe: the reference target's migrations are applied to a template,
and for each run a clone is seeded, a probe repository is built with git,
acme's indexer runs on it as a subprocess, and everything it stored is read
back and searched for the planted canaries. The figure is the wall time of
each step.

Run from the repository root: ``python benchmarks/card_scan.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from record import REPO, RESULTS, machine_lines, wait_for_quiet, write_section

sys.path.insert(0, str(REPO))

from assay.cards import scan_database
from assay.config import load_config
from assay.indexer_probe import (
    judge,
    placeholder_values,
    read_stored,
    run_indexer,
)
from assay.migrations import apply
from assay.postgres import DatabaseSettings, TemplateDatabase, provision
from assay.secrets import build_probe_repository
from assay.seeding import seed_database
from assay.target import conninfo_to_url

HEADING = "Card-number scan rows per second and indexer probe wall time"
TEST_NUMBERS = (
    "4242 4242 4242 4242",
    "4000-0566-5566-5556",
    "5555555555554444",
    "2223003122003222",
    "378282246310005",
    "6011111111111117",
    "3056930009020004",
    "36227206271667",
    "3566002020360505",
    "6200000000000005",
)

# Row i contains a card number when i % 1000 == 0, a 13- or 14-digit number
# that is no card when i % 100 == 1, and otherwise text with an MD5 digest,
# whose hex digits now and then contain a long decimal run.
CREATE_SQL = """
create table public.support_notes (
    id bigint primary key,
    organization_id uuid not null,
    subject text not null,
    body text not null,
    amount numeric,
    payload jsonb,
    created_at timestamptz not null default now()
)
"""

INSERT_SQL = """
insert into public.support_notes (id, organization_id, subject, body, amount, payload)
select i,
       '00000000-0000-4000-8000-000000000001',
       'Ticket ' || i || ' about order ' || (i * 7919 %% 1000003),
       case
           when i %% 1000 = 0 then
               'Customer read out ' || (%(cards)s::text[])[1 + (i / 1000) %% 10]
               || ' on the call; please redact.'
           when i %% 200 = 1 then
               'Event at ' || (1700000000000 + i) || ' ms, retry 3 of 5.'
           when i %% 100 = 1 then
               'See migration ' || (20240101000000 + i) || '_notes.sql for details.'
           else
               'The widget on page ' || (i %% 97) || ' shows ' || md5(i::text)
               || ' since version 2.' || (i %% 13) || '.'
       end,
       (i %% 10000) / 100.0,
       jsonb_build_object('ticket', i, 'tags', jsonb_build_array('a', 'b'))
from generate_series(1, %(rows)s::bigint) as i
"""


def expected_cards(rows: int) -> int:
    return rows // 1000


def measure_card_scan(server, rows: int, repeats: int) -> tuple[list[str], dict]:
    name = server.unique_name("bench_cards")
    server.create_database(name)
    dsn = server.dsn(name)
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(CREATE_SQL)
        conn.execute(INSERT_SQL, {"cards": list(TEST_NUMBERS), "rows": rows})
        conn.execute("analyze public.support_notes")
        size = conn.execute(
            "select pg_size_pretty(pg_total_relation_size('public.support_notes'))"
        ).fetchone()[0]
    generated = time.monotonic() - started

    runs = []
    for _ in range(repeats):
        load = wait_for_quiet(QUIET_TIMEOUT)
        with psycopg.connect(dsn, autocommit=True) as conn:
            begin = time.monotonic()
            result = scan_database(conn, schemas=["public"])
            seconds = time.monotonic() - begin
        runs.append((seconds, result, load))
    server.drop_database(name)

    seconds, result, load = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    found = sum(hit.rows for hit in result.values)
    assert result.rows == rows, result.rows
    assert found == expected_cards(rows), [
        (v.table, v.column, v.rows, v.examples) for v in result.values
    ]
    figures = {
        "rows": rows,
        "seconds": seconds,
        "rate": rows / seconds,
        "candidates": result.candidate_rows,
        "found": found,
    }
    lines = [
        (
            f"- table: public.support_notes, {rows:,} rows, {size}, generated in "
            f"{generated:.1f} s; {result.scanned_columns} of its {result.columns} "
            "columns have a type that can hold a card number"
        ),
        f"- machine load before the median run: {load}",
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| scan seconds (median of {repeats}) | {seconds:.2f} |",
        f"| rows scanned per second | {rows / seconds:,.0f} |",
        f"| rows passed to Python by the server-side filter | {result.candidate_rows:,} |",
        f"| rows with a card number found (expected {expected_cards(rows):,}) | {found:,} |",
        f"| all scan times, seconds | {', '.join(f'{r[0]:.2f}' for r in runs)} |",
    ]
    return lines, figures


def measure_indexer_probe(server, repeats: int) -> list[str]:
    config = load_config(REPO / "assay.yaml")
    from assay.fixtures.database import load_migrations

    files = load_migrations(config)
    template = TemplateDatabase(
        server, lambda conn: apply(conn, files), flavor=config.database.flavor
    )
    steps: dict[str, list[float]] = {
        "clone and seed": [],
        "build probe repository (git)": [],
        "run acme indexer": [],
        "read back stored data": [],
        "search canaries": [],
        "total": [],
    }
    verdicts = []
    try:
        for index in range(repeats):
            wait_for_quiet(QUIET_TIMEOUT)
            marks = [time.monotonic()]
            dsn = server.dsn(template.clone(f"probe{index}"))
            organization_id = str(seed_database(dsn, config).tenants[0].id)
            marks.append(time.monotonic())
            with tempfile.TemporaryDirectory(prefix="assay-bench-") as folder:
                repo = build_probe_repository(Path(folder) / "repo")
                marks.append(time.monotonic())
                workdir = Path(folder) / "work"
                workdir.mkdir()
                values = placeholder_values(
                    repo.path, conninfo_to_url(dsn), organization_id, workdir
                )
                run = run_indexer(config, values, [f.canary for f in repo.files])
                marks.append(time.monotonic())
                sources, _ = read_stored(config, dsn, organization_id, values, run)
                marks.append(time.monotonic())
                verdict = judge(repo, sources)
                marks.append(time.monotonic())
            verdicts.append(verdict)
            for name, begin, end in zip(list(steps)[:-1], marks, marks[1:]):
                steps[name].append(end - begin)
            steps["total"].append(marks[-1] - marks[0])
    finally:
        template.drop_all()

    assert all(not v.findings for v in verdicts), verdicts[0].findings
    counts = verdicts[0].counts
    lines = [
        (
            f"- probe repository: {len(repo.files)} files "
            f"({counts['secret files excluded']} secret files, "
            f"{counts['credential files excluded']} credential files, "
            f"{counts['ordinary files indexed']} ordinary files); every run "
            "excluded every secret and indexed every ordinary file"
        ),
        "",
        f"| step | median seconds of {repeats} |",
        "| --- | ---: |",
    ]
    lines += [
        f"| {name} | {statistics.median(times):.3f} |" for name, times in steps.items()
    ]
    return lines


QUIET_TIMEOUT = 120.0


def main() -> int:
    global QUIET_TIMEOUT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure")
    parser.add_argument(
        "--quick", action="store_true", help="10,000 rows and one run of each"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="results file")
    parser.add_argument(
        "--quiet-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for an idle machine before each measurement",
    )
    args = parser.parse_args()
    QUIET_TIMEOUT = 0.0 if args.quick else args.quiet_timeout
    rows, repeats = (10_000, 1) if args.quick else (args.rows, args.repeats)
    with (
        tempfile.TemporaryDirectory(prefix="assay-canaries-") as registry,
        provision(DatabaseSettings(provider="local", flavor="supabase")) as server,
    ):
        # The probe registers its canaries here, so they go with this folder.
        os.environ["ASSAY_CANARY_DIR"] = registry
        card_lines, figures = measure_card_scan(server, rows, repeats)
        probe_lines = measure_indexer_probe(server, repeats)

    heading = HEADING + (" (quick mode)" if args.quick else "")
    body = "\n".join(
        machine_lines()
        + [f"- PostgreSQL {server.version}, {server.kind} cluster", ""]
        + ["Card-number scan (`assay.cards.scan_database`):", ""]
        + card_lines
        + ["", "Indexer probe (DM-2) on the reference target:", ""]
        + probe_lines
    )
    write_section(args.results, heading, body)
    print(f"{figures['rate']:,.0f} rows/s; wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
