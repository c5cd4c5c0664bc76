"""Benchmark the cross-tenant probes of ``assay.attack.Attack`` against pgbench.

One run, one PostgreSQL server: a throwaway local cluster is provisioned, the
reference target's migrations are applied to a template, a clone is seeded
with tenants A and B, and ``Attack.attack_table`` runs over every customer
table. Then, on the same clone, pgbench runs the transaction a SELECT probe
sends:

    begin;
    select set_config('request.jwt.claims', ...), ..., set_config('role', ...);
    select * from <table>;
    rollback;

with 1 client and with 2 clients. Assay's probe rate over pgbench's rate with
1 client is the matched comparison, because ``Attack`` uses one connection.
Two psycopg loops of the same transaction, plain and in pipeline mode, show
what the driver alone reaches on this machine. Results go to
``benchmarks/results.md``.

Run from the repository root: ``python benchmarks/probe_rate.py``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from record import (
    QUIET_BUSY_PERCENT,
    REPO,
    RESULTS,
    Load,
    OthersCpu,
    machine_lines,
    others_cpu,
    profile_top,
    quietest,
    wait_for_quiet,
    write_section,
)

HEADING = "Cross-tenant probes per second against pgbench"
TARGET_RATIO = 0.5
DEFAULT_PGBENCH = Path("/usr/lib/postgresql/15/bin/pgbench")
# (clients, query protocol): the first is the match for Attack's one connection.
PGBENCH_RUNS = ((1, "simple"), (2, "simple"), (1, "extended"))
REFERENCE = "pgbench -c 1 -M simple"
PGBENCH_TPS = re.compile(
    r"^tps = ([\d.]+) \(without initial connection time\)", re.MULTILINE
)


@dataclass
class TableFigures:
    table: str
    probes: int
    probe_seconds: float
    wall_seconds: float


@dataclass
class AttackFigures:
    """Figures of one pass of ``attack_table`` over every customer table."""

    tables: list[TableFigures]
    load: Load
    others: OthersCpu
    by_operation: dict[str, list[float]] = field(default_factory=dict)
    profile: list[str] = field(default_factory=list)

    @property
    def probes(self) -> int:
        return sum(t.probes for t in self.tables)

    @property
    def probe_seconds(self) -> float:
        return sum(t.probe_seconds for t in self.tables)

    @property
    def wall_seconds(self) -> float:
        return sum(t.wall_seconds for t in self.tables)


@dataclass
class Rate:
    label: str
    per_second: float
    load: Load
    others: OthersCpu


def busy(figure: AttackFigures | Rate) -> float:
    """Return the larger CPU share of other processes: just before, or during."""
    return max(figure.load.busy_percent, figure.others.percent)


def conditions(figure: AttackFigures | Rate) -> str:
    return f"{figure.load}; {figure.others}"


@dataclass
class Round:
    """One attack pass and the pgbench and driver rates measured right after it."""

    attack: AttackFigures
    rates: list[Rate]

    @property
    def select_rate(self) -> float:
        """SELECT probes per second, timed around ``Attack.run``."""
        select = self.attack.by_operation.get("SELECT", [])
        return len(select) / sum(select) if select else 0.0

    @property
    def all_rate(self) -> float:
        return self.attack.probes / self.attack.probe_seconds

    @property
    def wall_rate(self) -> float:
        return self.attack.probes / self.attack.wall_seconds

    def rate(self, label: str) -> Rate:
        return next(rate for rate in self.rates if rate.label == label)

    @property
    def matched_ratio(self) -> float:
        """Assay's SELECT probe rate over pgbench's with 1 client, simple protocol."""
        return self.select_rate / self.rate(REFERENCE).per_second


# Target database ----------------------------------------------------------------------


@contextmanager
def seeded_target(config_path: Path) -> Iterator[tuple[Any, str, Any, list[str]]]:
    """Yield the config, a seeded clone's DSN, the seed and the customer tables."""
    from assay.fixtures.database import load_migrations

    from assay.config import load_config
    from assay.introspect import read_catalog
    from assay.migrations import apply
    from assay.postgres import DatabaseSettings, TemplateDatabase, provision
    from assay.seeding import seed_database
    from assay.tenancy import TenancyScope, customer_tables

    config = load_config(config_path)
    files = load_migrations(config)
    settings = DatabaseSettings(provider="local", flavor=config.database.flavor)
    with (
        provision(settings) as server,
        TemplateDatabase(
            server, lambda conn: apply(conn, files), flavor=config.database.flavor
        ) as template,
    ):
        dsn = server.dsn(template.clone("probe_rate"))
        seed = seed_database(dsn, config)
        scope = TenancyScope.from_config(config.tenancy)
        with psycopg.connect(dsn, autocommit=True) as conn:
            live, _ = read_catalog(
                conn, list(scope.schemas), [scope.anon_role, scope.user_role]
            )
        tables = [
            t.name
            for t in customer_tables(live, scope)
            if t.name not in seed.errors and seed.rows.get(t.name, {}).get("B")
        ]
        yield config, dsn, seed, tables


# Assay's probes ------------------------------------------------------------------------


def attack_tables(
    dsn: str, seed: Any, config: Any, tables: list[str], *, quiet_timeout: float
) -> AttackFigures:
    """Run ``attack_table`` over ``tables`` with a fresh Attack and time it."""
    from assay.attack import Attack

    attack = Attack(dsn, seed, config.tenancy)
    by_operation: dict[str, list[float]] = defaultdict(list)
    original_run = attack.run

    # Times each probe by operation; the search phase calls run() the same way.
    def timed_run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = original_run(*args, **kwargs)
        by_operation[result.operation].append(time.perf_counter() - started)
        return result

    attack.run = timed_run  # type: ignore[method-assign]
    load = wait_for_quiet(quiet_timeout)
    figures = []
    try:
        with others_cpu() as others:
            for table in tables:
                figures.append(attack_one(attack, table))
    finally:
        attack.close()
    return AttackFigures(figures, load, others, dict(by_operation))


def attack_one(attack: Any, table: str) -> TableFigures:
    probes, seconds = attack.probes, attack.seconds
    started = time.perf_counter()
    attack.attack_table(table)
    return TableFigures(
        table,
        attack.probes - probes,
        attack.seconds - seconds,
        time.perf_counter() - started,
    )


def profile_attack(dsn: str, seed: Any, config: Any, tables: list[str]) -> list[str]:
    """Profile one more pass over ``tables``, apart from the timed one."""
    from assay.attack import Attack

    attack = Attack(dsn, seed, config.tenancy)
    try:
        return profile_top(lambda: [attack.attack_table(t) for t in tables], 15)[1]
    finally:
        attack.close()


# pgbench and the driver floor ------------------------------------------------------------


class _RecordingCursor:
    """Stands in for a cursor and keeps what ``become`` would execute."""

    def __init__(self) -> None:
        self.statements: list[tuple[Any, Any]] = []

    def execute(self, query: Any, params: Any = None) -> None:
        self.statements.append((query, params))


def become_statements(dsn: str, config: Any, seed: Any) -> list[tuple[str, list]]:
    """Return the statements ``become`` runs to act as tenant A's first member."""
    from assay.actors import MEMBER, Actor, become

    tenant = seed.tenant("A")
    member = tenant.members[0]
    actor = Actor(MEMBER, config.tenancy.role, member.id, tenant.id, member.email)
    recorder = _RecordingCursor()
    become(recorder, actor, config.tenancy)  # type: ignore[arg-type]
    with psycopg.connect(dsn) as conn:
        return [
            (q if isinstance(q, str) else q.as_string(conn), list(p or []))
            for q, p in recorder.statements
        ]


def sql_literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def pgbench_script(become: list[tuple[str, list]], table: str) -> str:
    """Return the pgbench script of one SELECT probe, parameters inlined."""
    lines = ["begin;"]
    for statement, params in become:
        lines.append(
            statement.replace("%s", "{}").format(*map(sql_literal, params)) + ";"
        )
    schema, name = table.split(".", 1)
    lines += [f'select * from "{schema}"."{name}";', "rollback;"]
    return "\n".join(lines) + "\n"


def pgbench_command(
    pgbench: Path, dsn: str, script: Path, clients: int, protocol: str, seconds: int
) -> list[str]:
    """Return the pgbench command that runs ``script`` over the clone's unix socket."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    command = [
        str(pgbench),
        "--no-vacuum",
        "-h", str(params["host"]),
        "-p", str(params.get("port", 5432)),
        "-U", str(params["user"]),
        "-f", str(script),
        "-c", str(clients),
        "-j", str(clients),
        "-M", protocol,
        "-T", str(seconds),
        str(params["dbname"]),
    ]  # fmt: skip
    return command


def run_pgbench(command: list[str], quiet_timeout: float) -> Rate:
    """Run pgbench and return its transactions per second."""
    load = wait_for_quiet(quiet_timeout)
    with others_cpu() as others:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = PGBENCH_TPS.search(result.stdout)
    if result.returncode != 0 or not found:
        raise SystemExit(
            f"pgbench failed with exit status {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    clients, protocol = (
        command[command.index("-c") + 1],
        command[command.index("-M") + 1],
    )
    label = f"pgbench -c {clients} -M {protocol}"
    return Rate(label, float(found.group(1)), load, others)


def driver_loop(
    dsn: str,
    become: list[tuple[str, list]],
    table: str,
    seconds: float,
    *,
    pipeline: bool,
    quiet_timeout: float,
) -> Rate:
    """Run the pgbench transaction from psycopg on one connection for ``seconds``."""
    schema, name = table.split(".", 1)
    select = psycopg.sql.SQL("select * from {}").format(
        psycopg.sql.Identifier(schema, name)
    )
    load = wait_for_quiet(quiet_timeout)
    count = 0
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        conn.cursor() as cur,
        others_cpu() as others,
    ):
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            if pipeline:
                with conn.pipeline():
                    cur.execute("begin")
                    for statement, params in become:
                        cur.execute(statement, params)
                    cur.execute(select)
                    cur.execute("rollback")
            else:
                cur.execute("begin")
                for statement, params in become:
                    cur.execute(statement, params)
                cur.execute(select)
                cur.fetchall()
                cur.execute("rollback")
            count += 1
        elapsed = time.perf_counter() - started
    label = (
        "psycopg loop, pipeline mode"
        if pipeline
        else "psycopg loop, one round trip per statement"
    )
    return Rate(label, count / elapsed, load, others)


def find_pgbench(path: Path) -> Path:
    if path.exists():
        return path
    found = shutil.which("pgbench")
    if found:
        return Path(found)
    raise SystemExit(f"pgbench not found at {path} or on PATH. Pass --pgbench PATH")


# Report --------------------------------------------------------------------------------


def table_lines(attack: AttackFigures) -> list[str]:
    """Return the per-table table of one attack pass."""
    lines = [
        "| table | probes | probe s | wall s (with Hypothesis) |",
        "| --- | --- | --- | --- |",
    ]
    for figures in attack.tables:
        lines.append(
            f"| `{figures.table}` | {figures.probes} | {figures.probe_seconds:.3f}"
            f" | {figures.wall_seconds:.3f} |"
        )
    lines.append(
        f"| total | {attack.probes} | {attack.probe_seconds:.3f}"
        f" | {attack.wall_seconds:.3f} |"
    )
    return lines


def operation_lines(rounds: list[Round]) -> list[str]:
    """Return the median time of a probe per operation, over every round."""
    times: dict[str, list[float]] = defaultdict(list)
    for round_ in rounds:
        for operation, seconds in round_.attack.by_operation.items():
            times[operation] += seconds
    lines = ["| operation | probes | median ms per probe |", "| --- | --- | --- |"]
    for operation, seconds in sorted(times.items()):
        median = statistics.median(seconds) * 1000
        lines.append(f"| {operation} | {len(seconds)} | {median:.2f} |")
    return lines


def rate_lines(rounds: list[Round]) -> list[str]:
    """Return every rate as its median over rounds, with each round's value."""
    series: dict[str, list[float]] = {
        "Assay SELECT probes (`Attack.run` wall time)": [r.select_rate for r in rounds],
        "Assay, all probes (`Attack.probes / Attack.seconds`)": [
            r.all_rate for r in rounds
        ],
        "Assay, all probes over `attack_table` wall time": [
            r.wall_rate for r in rounds
        ],
    }
    ratios: dict[str, list[float]] = {}
    for rate in rounds[0].rates:
        label = rate.label
        series[label] = [r.rate(label).per_second for r in rounds]
        ratios[label] = [r.select_rate / r.rate(label).per_second for r in rounds]

    lines = [
        "| rate | median per second | each round | Assay SELECT probes / this"
        " (median of rounds) |",
        "| --- | --- | --- | --- |",
    ]
    for label, values in series.items():
        ratio = f"{statistics.median(ratios[label]):.2f}" if label in ratios else "-"
        each = ", ".join(f"{value:,.0f}" for value in values)
        lines.append(
            f"| {label} | {statistics.median(values):,.0f} | {each} | {ratio} |"
        )
    return lines


def condition_lines(rounds: list[Round]) -> list[str]:
    """Return the load before and the others' CPU during each round's figures."""
    lines = []
    for number, round_ in enumerate(rounds, 1):
        figures = [("attack", round_.attack)] + [(r.label, r) for r in round_.rates]
        shown = "; ".join(f"{label}: {conditions(f)}" for label, f in figures)
        lines.append(f"- round {number}: {shown}")
    return lines


def verdict_lines(rounds: list[Round]) -> list[str]:
    """Return the sentences that compare Assay with pgbench at one connection."""
    ratios = [r.matched_ratio for r in rounds]
    matched = statistics.median(ratios)
    all_ratio = statistics.median(
        r.all_rate / r.rate(REFERENCE).per_second for r in rounds
    )
    verdict = "meets" if matched >= TARGET_RATIO else "MISSES"
    each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    lines = [
        f"Target: Assay at least {TARGET_RATIO} of pgbench at matched connections."
        f" `Attack` uses one connection, so the match is pgbench with 1 client."
        f" SELECT probes run at a median {matched:.2f} of it (rounds: {each}), which"
        f" **{verdict}** the target. Over every probe, writes included (which add a"
        f" baseline count, `reset role` and two counts), Assay runs at"
        f" {all_ratio:.2f}.",
    ]
    noisy = max(max(busy(r.attack), busy(r.rate(REFERENCE))) for r in rounds)
    if noisy > QUIET_BUSY_PERCENT:
        lines += [
            "",
            f"NOTE: other processes used up to {noisy:.0f}% of the CPUs around the"
            " compared figures, so the ratio is not reliable. Measure again on a"
            " quiet machine.",
        ]
    return lines


def report(
    header: list[str],
    rounds: list[Round],
    table: str,
    seconds: int,
    commands: list[str],
) -> str:
    middle = sorted(rounds, key=lambda r: r.matched_ratio)[len(rounds) // 2]
    lines = header + [
        f"- pgbench transaction on `{table}`, {seconds} s per run: "
        + "; ".join(f"`{c}`" for c in commands),
        f"- reference target: `assay.yaml` at the repository root, a throwaway local"
        f" cluster; {len(middle.attack.tables)} customer tables attacked;"
        f" {len(rounds)} round(s), each an attack pass followed by every rate",
        "",
        "Probes per table in the median round:",
        "",
    ]
    lines += table_lines(middle.attack) + [""]
    lines += operation_lines(rounds) + [""]
    lines += rate_lines(rounds) + [""]
    lines += ["Load before each figure; CPU other processes used during it:", ""]
    lines += condition_lines(rounds) + [""]
    lines += verdict_lines(rounds)
    if rounds[0].attack.profile:
        lines += [
            "",
            "Profile of a separate, untimed pass of `attack_table` over every table"
            " (cProfile):",
            "",
        ]
        lines += rounds[0].attack.profile
    return "\n".join(lines)


def measure_round(
    args: argparse.Namespace,
    pgbench: Path,
    target: tuple[Any, str, Any, list[str]],
    become: list[tuple[str, list]],
    script: Path,
) -> Round:
    """Measure one attack pass, then pgbench and the driver loops, in that order."""
    config, dsn, seed, tables = target
    attack = quietest(
        lambda: attack_tables(
            dsn, seed, config, tables, quiet_timeout=args.quiet_timeout
        ),
        busy,
        args.attempts,
    )
    rates = []
    for clients, protocol in PGBENCH_RUNS:
        command = pgbench_command(pgbench, dsn, script, clients, protocol, args.seconds)
        rates.append(
            quietest(
                partial(run_pgbench, command, args.quiet_timeout), busy, args.attempts
            )
        )
    for pipeline in (False, True):
        rates.append(
            quietest(
                partial(
                    driver_loop,
                    dsn,
                    become,
                    args.table,
                    args.seconds,
                    pipeline=pipeline,
                    quiet_timeout=args.quiet_timeout,
                ),
                busy,
                args.attempts,
            )
        )
    return Round(attack, rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "assay.yaml")
    parser.add_argument("--table", default="public.tickets", help="pgbench's table")
    parser.add_argument("--seconds", type=int, default=10, help="pgbench -T value")
    parser.add_argument("--pgbench", type=Path, default=DEFAULT_PGBENCH)
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of every measurement"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile attack_table with cProfile"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one table, 1 s runs, no wait for a quiet CPU",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="file to write")
    parser.add_argument(
        "--quiet-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for other processes to leave the CPUs idle",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="times a measurement is retaken while other processes keep the CPUs busy",
    )
    args = parser.parse_args(argv)
    # Taken before measuring, so the date and commit are those of the figures.
    header = machine_lines()
    heading = HEADING
    if args.quick:
        args.seconds, args.quiet_timeout, args.attempts, args.repeat = 1, 0.0, 1, 1
        heading += " (quick mode)"
    pgbench = find_pgbench(args.pgbench)

    with seeded_target(args.config.resolve()) as (config, dsn, seed, tables):
        if args.quick:
            tables = [args.table] if args.table in tables else tables[:1]
        if args.table not in tables:
            raise SystemExit(f"{args.table} is not a seeded customer table: {tables}")
        target = (config, dsn, seed, tables)
        become = become_statements(dsn, config, seed)
        with tempfile.TemporaryDirectory(prefix="assay-bench-pgbench-") as folder:
            script = Path(folder) / "probe.sql"
            script.write_text(pgbench_script(become, args.table))
            rounds = [
                measure_round(args, pgbench, target, become, script)
                for _ in range(args.repeat)
            ]
        if args.profile:
            rounds[0].attack.profile = profile_attack(dsn, seed, config, tables)

    commands = [
        f"pgbench --no-vacuum -h SOCKET -U postgres -f probe.sql"
        f" -c {clients} -j {clients} -M {protocol} -T {args.seconds} CLONE"
        for clients, protocol in PGBENCH_RUNS
    ]
    body = report(header, rounds, args.table, args.seconds, commands)
    write_section(args.results, heading, body)
    print(f"## {heading}\n\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
