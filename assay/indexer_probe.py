"""The secret-exclusion probe: run a team's indexer on the probe repository.

The indexer command from ``indexer:`` in assay.yaml runs on a repository
built by ``assay.secrets.build_probe_repository``, against a throwaway
database. Everything it could have stored is then read back: every column of
every table, the rows of ``read_sql``, the files under its work folder and
``outputs``, and its own stdout and stderr. Each planted canary is searched
for in every encoding of ``assay.canaries.encodings``:

- a secret-file or credential canary found anywhere is a finding (error);
- an ordinary file whose canary is found nowhere is undecided: an indexer
  that stores nothing excludes every secret and proves nothing.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from assay.canaries import Canary, encodings
from assay.config import Config, IndexerConfig
from assay.errors import TargetError
from assay.findings import Finding
from assay.secrets import ProbeFile, ProbeRepository

__all__ = [
    "IndexerRun",
    "ProbeVerdict",
    "StoredSource",
    "judge",
    "read_stored",
    "render_command",
    "run_indexer",
]

logger = logging.getLogger(__name__)

CONTROL = "DM-2"
PLACEHOLDERS = ("repo", "database_url", "organization_id", "workdir", "python")
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_MAX_OUTPUT_BYTES = 50_000_000


@dataclass(frozen=True)
class IndexerRun:
    """One run of the indexer command."""

    command: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float


@dataclass(frozen=True)
class StoredSource:
    """A place the indexer may have stored text: a column, a file, a log."""

    name: str
    data: bytes


@dataclass
class ProbeVerdict:
    """The findings of one probe and an inventory of every planted file."""

    findings: list[Finding] = field(default_factory=list)
    inventory: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _section(config: Config) -> IndexerConfig:
    section = config.indexer
    if section is None:
        raise config.error(
            ("indexer",), None, "no indexer section", "Add indexer: command"
        )
    if not section.command:
        if section.endpoint:
            # TODO: indexers reachable only over HTTP (indexer.endpoint) are not
            # probed yet; only a command can be run on the probe repository.
            raise config.error(
                ("indexer", "endpoint"),
                section.endpoint,
                "an indexer endpoint cannot be probed yet",
                "Give indexer.command, the command line that indexes a repository",
            )
        raise config.error(
            ("indexer", "command"),
            None,
            "missing indexer command",
            "Give the command line that indexes a repository, with {repo}, "
            "{database_url} and {organization_id}",
        )
    if section.timeout <= 0:
        raise config.error(
            ("indexer", "timeout"),
            section.timeout,
            "must be a positive number of seconds",
            "Use e.g. 120",
        )
    return section


def _fill(config: Config, key: tuple, template: str, values: dict[str, str]) -> str:
    try:
        return template.format(**values)
    except KeyError as exc:
        raise config.error(
            key,
            template,
            f"unknown placeholder {{{exc.args[0]}}}",
            "Use only " + ", ".join("{" + p + "}" for p in PLACEHOLDERS),
        ) from None
    except (IndexError, ValueError) as exc:
        raise config.error(
            key,
            template,
            f"invalid template: {exc}",
            "Write placeholders as {repo}; double literal braces as {{ }}",
        ) from None


def render_command(config: Config, values: dict[str, str]) -> list[str]:
    """Split the indexer command and fill its placeholders, one argument each."""
    section = _section(config)
    try:
        parts = shlex.split(section.command)
    except ValueError as exc:
        raise config.error(
            ("indexer", "command"),
            section.command,
            f"cannot split the command line: {exc}",
            "Close every quote",
        ) from None
    return [_fill(config, ("indexer", "command"), part, values) for part in parts]


def placeholder_values(
    repo: Path, database_url: str, organization_id: str, workdir: Path
) -> dict[str, str]:
    return {
        "repo": str(repo),
        "database_url": database_url,
        "organization_id": organization_id,
        "workdir": str(workdir),
        "python": sys.executable,
    }


def redact(text: str, canaries: list[Canary]) -> str:
    """Replace every planted value in `text` by its redacted label."""
    for canary in canaries:
        for form in encodings(canary.value).values():
            text = text.replace(form.decode("latin-1"), canary.redacted())
    return text


def run_indexer(
    config: Config, values: dict[str, str], canaries: list[Canary]
) -> IndexerRun:
    """Run the indexer command once; a failure raises TargetError with its stderr."""
    section = _section(config)
    command = render_command(config, values)
    cwd = config.path(section.cwd)
    if not cwd.is_dir():
        raise config.error(
            ("indexer", "cwd"),
            section.cwd,
            f"folder not found ({cwd})",
            "Give the folder the indexer runs from, relative to assay.yaml",
        )
    env = dict(os.environ)
    for name, template in section.env.items():
        env[name] = _fill(config, ("indexer", "env", name), template, values)
    started = time.monotonic()
    # Only the program: later arguments may carry the database password.
    logger.info("running the indexer %s", command[0])
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            capture_output=True,
            timeout=section.timeout,
            check=False,
        )
    except FileNotFoundError:
        raise config.error(
            ("indexer", "command"),
            section.command,
            f"program {command[0]!r} not found",
            "Give the full path of the program, or {python} -m MODULE",
        ) from None
    except subprocess.TimeoutExpired:
        raise TargetError(
            f"the indexer timed out after indexer.timeout={section.timeout} s "
            f"on a repository of {len(canaries)} files; raise indexer.timeout in "
            f"{config.file} or check the command waits for no input"
        ) from None
    seconds = time.monotonic() - started
    run = IndexerRun(tuple(command), done.returncode, done.stdout, done.stderr, seconds)
    if done.returncode != 0:
        tail = redact(done.stderr.decode("utf-8", "replace")[-2000:], canaries)
        raise TargetError(
            f"the indexer exited with status {done.returncode} after {seconds:.1f} s, "
            f"so the probe cannot tell what it stores. Its stderr ends with:\n{tail}"
        )
    return run


def _table_sources(conn: psycopg.Connection) -> list[StoredSource]:
    tables = conn.execute(
        """
        select n.nspname, c.relname, array_agg(a.attname order by a.attnum)
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where c.relkind in ('r', 'm') and n.nspname <> all(%s)
          and n.nspname not like 'pg\\_temp\\_%%'
        group by 1, 2
        order by 1, 2
        """,
        (list(_SYSTEM_SCHEMAS),),
    ).fetchall()
    sources = []
    for schema, table, columns in tables:
        casts = sql.SQL(", ").join(
            sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns
        )
        query = sql.SQL("select {} from only {}").format(
            casts, sql.Identifier(schema, table)
        )
        values: list[list[str]] = [[] for _ in columns]
        for row in conn.execute(query):
            for index, value in enumerate(row):
                if value is not None:
                    values[index].append(value)
        for column, texts in zip(columns, values):
            if texts:
                data = "\n".join(texts).encode("utf-8", "replace")
                sources.append(StoredSource(f"table {schema}.{table}.{column}", data))
    return sources


def _read_sql_source(
    config: Config, conn: psycopg.Connection, organization_id: str
) -> tuple[StoredSource | None, int]:
    section = _section(config)
    if not section.read_sql:
        return None, 0
    literal = sql.Literal(organization_id).as_string(conn)
    query = section.read_sql.replace("{organization_id}", literal)
    try:
        rows = conn.execute(query).fetchall()
    except psycopg.Error as exc:
        raise config.error(
            ("indexer", "read_sql"),
            section.read_sql,
            f"the query failed: {str(exc).strip().splitlines()[0]}",
            "Select what the indexer stored for {organization_id}",
        ) from None
    text = "\n".join(
        "\t".join("" if v is None else str(v) for v in row) for row in rows
    )
    return StoredSource("indexer.read_sql", text.encode("utf-8", "replace")), len(rows)


def _file_sources(paths: list[Path], root: Path) -> list[StoredSource]:
    sources = []
    for path in paths:
        files = (
            [path]
            if path.is_file()
            else sorted(p for p in path.rglob("*") if p.is_file())
        )
        for file in files:
            if file.stat().st_size > _MAX_OUTPUT_BYTES:
                logger.warning("searched only the first 50 MB of %s", file)
            with file.open("rb") as handle:
                data = handle.read(_MAX_OUTPUT_BYTES)
            sources.append(StoredSource(f"file {os.path.relpath(file, root)}", data))
    return sources


def read_stored(
    config: Config,
    dsn: str,
    organization_id: str,
    values: dict[str, str],
    run: IndexerRun,
) -> tuple[list[StoredSource], dict[str, int]]:
    """Read back everything the indexer could have stored; return sources and counts."""
    section = _section(config)
    with psycopg.connect(dsn, autocommit=True) as conn:
        sources = _table_sources(conn)
        read_back, rows = _read_sql_source(config, conn, organization_id)
    if read_back is not None:
        sources.append(read_back)

    workdir = Path(values["workdir"])
    output_paths = [workdir]
    for index, template in enumerate(section.outputs):
        filled = _fill(config, ("indexer", "outputs", index), template, values)
        path = config.path(filled)
        if path.exists():
            output_paths.append(path)
    sources += _file_sources(output_paths, workdir.parent)
    sources.append(StoredSource("indexer stdout", run.stdout))
    sources.append(StoredSource("indexer stderr", run.stderr))
    counts = {"read_sql_rows": rows, "sources": len(sources)}
    return sources, counts


def _where_found(canary: Canary, sources: list[StoredSource]) -> list[dict[str, str]]:
    forms = encodings(canary.value)
    found = []
    for source in sources:
        for name, form in forms.items():
            if form in source.data:
                found.append({"source": source.name, "encoding": name})
                break
    return found


def _leak_finding(probe: ProbeFile, found: list[dict[str, str]]) -> Finding:
    places = ", ".join(f["source"] for f in found)
    if probe.kind == "secret-file":
        rule = "secret-file-indexed"
        message = (
            f"{probe.path} was stored although its name matches the secret file "
            f"pattern {probe.pattern!r}; its content was found in {places}"
        )
        fix = f"Exclude files named like {probe.pattern!r} before indexing"
    else:
        rule = "credential-indexed"
        message = (
            f"{probe.path} holds a {probe.pattern} credential and was stored; the "
            f"credential was found in {places}"
        )
        fix = f"Skip (or redact) files whose content matches the {probe.pattern} format"
    return Finding(
        control=CONTROL,
        rule=rule,
        message=message,
        file=probe.path,
        source="live",
        fix=fix,
        details={
            "pattern": probe.pattern,
            "found_in": found,
            "canary": probe.canary.redacted(),
        },
    )


def _missing_finding(probe: ProbeFile) -> Finding:
    return Finding(
        control=CONTROL,
        rule="ordinary-file-not-indexed",
        message=(
            f"{probe.path}, an ordinary source file, was not found in anything the "
            "indexer stored, so the probe cannot tell exclusion from indexing nothing"
        ),
        level="undecided",
        file=probe.path,
        source="live",
        fix=(
            "Check indexer.command indexes the repository given as {repo} into "
            "the database given as {database_url}, and that indexer.read_sql or "
            "indexer.outputs name where it stores"
        ),
        details={"canary": probe.canary.redacted()},
    )


def judge(repo: ProbeRepository, sources: list[StoredSource]) -> ProbeVerdict:
    """Search the stored sources for every planted canary."""
    verdict = ProbeVerdict()
    counts = {"secret files excluded": 0, "credential files excluded": 0}
    counts.update(
        {"ordinary files indexed": 0, "leaks": 0, "ordinary files missing": 0}
    )
    for probe in repo.files:
        found = _where_found(probe.canary, sources)
        if probe.kind == "ordinary":
            status = "indexed" if found else "missing"
            if found:
                counts["ordinary files indexed"] += 1
            else:
                counts["ordinary files missing"] += 1
                verdict.findings.append(_missing_finding(probe))
        else:
            status = "stored" if found else "excluded"
            if found:
                counts["leaks"] += 1
                verdict.findings.append(_leak_finding(probe, found))
            elif probe.kind == "secret-file":
                counts["secret files excluded"] += 1
            else:
                counts["credential files excluded"] += 1
        verdict.inventory.append(
            {
                "file": probe.path,
                "kind": probe.kind,
                "pattern": probe.pattern,
                "status": status,
                "found_in": [f["source"] for f in found],
            }
        )
    verdict.counts = counts
    return verdict
