"""Migration files: discovery, psql preprocessing, splitting and applying.

PostgreSQL's own parser (libpg_query, through pglast) splits each file into
statements, so function bodies, ``BEGIN ATOMIC`` blocks and nested dollar quotes
stay whole. Before parsing, the psql parts of a script are resolved the way psql
would: meta-command lines such as ``\\set`` and ``\\connect`` are blanked,
``:VAR``, ``:'VAR'`` and ``:"VAR"`` placeholders are substituted, and the data rows
after ``COPY ... FROM stdin;`` are cut out and kept with their statement. Blanking
keeps every newline, so line numbers always refer to the file on disk.

Splitting uses the JSON output of the parser, which is much faster than building
pglast's Python AST. Each :class:`Statement` builds its AST from its own text the
first time ``node`` is read, so unchanged files loaded from the on-disk cache are
never parsed twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pglast
import pglast.parser

from assay.errors import MigrationError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "MigrationFile",
    "Statement",
    "apply",
    "discover",
    "parse_all",
    "parse_file",
]

logger = logging.getLogger(__name__)

# Bump when the cached representation of a parsed file changes.
_CACHE_FORMAT = 1

_NOT_PARSED = object()


@dataclass(frozen=True, init=False)
class Statement:
    """One SQL statement of a migration file, located by file and line.

    ``node`` is the pglast AST of ``sql`` (a ``pglast.ast`` node such as
    ``CreatePolicyStmt``). It is built from ``sql`` the first time it is read
    unless the constructor received one, and its ``location`` fields are offsets
    into ``sql``. ``kind`` is the AST class name, known without building the AST.
    ``concurrently`` marks a statement that PostgreSQL rejects inside a
    transaction block: ``CREATE INDEX CONCURRENTLY`` and the other
    ``CONCURRENTLY`` forms, ``VACUUM``, ``CREATE DATABASE`` and a few more.
    """

    file: str
    line: int
    sql: str
    copy_data: str | None
    concurrently: bool
    kind: str

    def __init__(
        self,
        file: str,
        line: int,
        sql: str,
        node: object = _NOT_PARSED,
        copy_data: str | None = None,
        concurrently: bool = False,
        kind: str | None = None,
    ) -> None:
        if kind is None:
            kind = "" if node is None or node is _NOT_PARSED else type(node).__name__
        object.__setattr__(self, "file", file)
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "sql", sql)
        object.__setattr__(self, "copy_data", copy_data)
        object.__setattr__(self, "concurrently", concurrently)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "_node", node)

    @property
    def node(self) -> object | None:
        """The pglast AST node of ``sql``, built on first use."""
        node = self.__dict__["_node"]
        if node is _NOT_PARSED:
            node = pglast.parse_sql(self.sql)[0].stmt
            object.__setattr__(self, "_node", node)
        return node

    @property
    def location(self) -> str:
        """``file:line`` of the statement's first token."""
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class MigrationFile:
    """A parsed migration file and the SHA-256 of its bytes on disk."""

    path: str
    statements: tuple[Statement, ...]
    sha256: str


# ---------------------------------------------------------------------------
# Discovery


def discover(path: Path, *, root: Path | None = None) -> list[Path]:
    """Return the migration files under ``path`` in the order they apply.

    A relative ``path`` is taken relative to ``root`` when given. Files are found
    recursively (tools such as Prisma keep one folder per migration) and sorted by
    their path components as strings, so ``0002_a.sql`` and ``0002_b.sql`` keep a
    stable order. Rollback scripts are skipped: names ending in ``.down.sql`` and
    anything under a folder named ``down``. Hidden folders are skipped too.

    NOTE: the order is plain string order, so ``10_x.sql`` sorts before
    ``2_x.sql``. Timestamp prefixes, as Supabase writes them, sort correctly.

    Raises FileNotFoundError, naming the path, when the folder is missing or
    contains no ``.sql`` file.
    """
    folder = root / path if root is not None and not path.is_absolute() else path
    if not folder.is_dir():
        raise FileNotFoundError(f"migrations folder not found: {folder}")

    found: list[tuple[tuple[str, ...], Path]] = []
    for candidate in folder.rglob("*.sql"):
        relative = candidate.relative_to(folder)
        folders = relative.parts[:-1]
        if any(part.startswith(".") or part.lower() == "down" for part in folders):
            continue
        if candidate.name.lower().endswith(".down.sql") or not candidate.is_file():
            continue
        found.append((relative.parts, candidate))

    if not found:
        raise FileNotFoundError(f"no .sql migration files in {folder}")
    found.sort(key=lambda item: item[0])
    return [candidate for _, candidate in found]


# ---------------------------------------------------------------------------
# Parsing


def parse_file(
    path: Path,
    *,
    variables: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> MigrationFile:
    """Read, preprocess and split one migration file.

    ``variables`` define psql placeholders (``:name``); a ``\\set`` in the file
    overrides them from that line on. Raises MigrationError with the file and
    line for an unreadable file, an undefined placeholder or a statement that
    PostgreSQL's grammar rejects.
    """
    display = _display_path(path, root)
    raw = _read(path, display)
    text = _decode(raw, display)
    statements = _parse_text(text, display, variables or {})
    return MigrationFile(display, statements, hashlib.sha256(raw).hexdigest())


def parse_all(
    paths: Iterable[Path],
    *,
    variables: Mapping[str, str] | None = None,
    root: Path | None = None,
    cache_dir: Path | None = None,
) -> list[MigrationFile]:
    """Parse each file in order, reusing cached results for unchanged files.

    With ``cache_dir``, a file whose bytes, displayed path and variables are
    unchanged since an earlier run is loaded from the cache there, and its
    statements build their AST only when ``node`` is read. The cache key also
    contains the pglast version, so upgrading the parser invalidates it. A
    cache entry that cannot be read is ignored and rewritten.
    """
    variables = dict(variables or {})
    started = time.perf_counter()
    results = []
    hits = 0
    for path in paths:
        display = _display_path(path, root)
        raw = _read(path, display)
        digest = hashlib.sha256(raw).hexdigest()
        cache_file = None
        if cache_dir is not None:
            cache_file = cache_dir / f"{_cache_key(display, digest, variables)}.json"
            cached = _load_cached(cache_file, display, digest)
            if cached is not None:
                results.append(cached)
                hits += 1
                continue

        statements = _parse_text(_decode(raw, display), display, variables)
        parsed = MigrationFile(display, statements, digest)
        results.append(parsed)
        if cache_file is not None:
            _store_cached(cache_file, parsed)

    logger.debug(
        "parsed %d migration files (%d from cache) in %.3f s",
        len(results),
        hits,
        time.perf_counter() - started,
    )
    return results


def _display_path(path: Path, root: Path | None) -> str:
    if root is not None:
        # Resolving touches the file system, so try the plain paths first.
        for candidate, base in ((path, root), (path.resolve(), root.resolve())):
            try:
                return candidate.relative_to(base).as_posix()
            except ValueError:
                continue
    return path.as_posix()


def _read(path: Path, display: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise MigrationError(
            f"cannot read the migration file: {error.strerror or error}",
            file=display,
            line=1,
        ) from error


def _decode(raw: bytes, display: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise MigrationError(
            f"invalid UTF-8 at byte {error.start}",
            file=display,
            line=line,
            fix="Save the file as UTF-8",
        ) from error


def _parse_text(
    text: str, display: str, variables: Mapping[str, str]
) -> tuple[Statement, ...]:
    script = _Preprocessor(text, display, variables).run()
    return _split(script, display)


# ---------------------------------------------------------------------------
# psql preprocessing


@dataclass
class _Script:
    """Preprocessed text ready for the SQL parser.

    ``copy_blocks`` maps the offset of the ``;`` that ends a ``COPY ... FROM
    stdin`` statement to its data rows. ``shift_offsets`` and ``shift_totals``
    record where substituted values added newlines, as sorted offsets into
    ``text`` and the number of newlines added up to each of them.
    """

    text: str
    copy_blocks: dict[int, str] = field(default_factory=dict)
    shift_offsets: list[int] = field(default_factory=list)
    shift_totals: list[int] = field(default_factory=list)

    def original_line(self, processed_line: int, offset: int) -> int:
        index = bisect_right(self.shift_offsets, offset)
        return processed_line - (self.shift_totals[index - 1] if index else 0)


# Characters that can start a literal, a comment, a meta-command, a placeholder
# or a statement end. Everything between them is copied unchanged.
_INTERESTING = re.compile(r"""['"$\\:;\[\]]|--|/\*""")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_IDENTIFIER_CHAR = re.compile(r"[A-Za-z0-9_$\x80-\uffff]")
_VARIABLE = re.compile(r":([^\W\d]\w*)")
_QUOTED_VARIABLE = re.compile(r""":(['"])(\w+)\1""")
_META_COMMAND = re.compile(r"\\([A-Za-z_]+|.)?")
_COPY_FROM_STDIN = re.compile(r"\s*copy\b[\s\S]*\bfrom\s+stdin\b", re.IGNORECASE)
_NEEDS_LEXER = re.compile(r"\\|(?<!:):(?![:=])|\bstdin\b", re.IGNORECASE)
_INCLUDE_COMMANDS = {"i", "ir", "include", "include_relative"}
_CONDITIONAL_COMMANDS = {"if", "elif", "else", "endif"}
# Meta-commands that send the query buffer, so they end a statement like ";".
_SEND_COMMANDS = {"g", "gx", "gset", "gexec", "gdesc", "crosstabview"}


class _Preprocessor:
    """A psql-compatible lexer that rewrites a script for the SQL parser.

    It tracks string literals (standard and ``E''``), quoted identifiers, dollar
    quotes and nested block comments, so placeholders and backslashes inside
    them are left alone, as psql leaves them.
    """

    def __init__(self, text: str, display: str, variables: Mapping[str, str]):
        self.raw = text
        self.display = display
        self.variables = dict(variables)
        self.pieces: list[str] = []
        self.copied_to = 0  # raw offset up to which text has been emitted
        self.out_length = 0
        self.script = _Script(text)
        self.added_newlines = 0
        self.statement_start = 0
        self.bracket_depth = 0

    def run(self) -> _Script:
        if not _NEEDS_LEXER.search(self.raw):
            return self.script

        raw = self.raw
        position = 0
        while True:
            match = _INTERESTING.search(raw, position)
            if match is None:
                break
            position = self._handle(match.group(), match.start())

        self._emit_until(len(raw))
        self.script.text = "".join(self.pieces)
        return self.script

    # Each handler receives the offset of the interesting token and returns the
    # offset where scanning continues.
    def _handle(self, token: str, start: int) -> int:
        if token == "'":
            return self._skip_string(start)
        if token == '"':
            return self._skip_until('"', start + 1, doubled=True)
        if token == "$":
            return self._skip_dollar_quote(start)
        if token == "--":
            end = self.raw.find("\n", start)
            return len(self.raw) if end == -1 else end
        if token == "/*":
            return self._skip_block_comment(start)
        if token == "\\":
            return self._meta_command(start)
        if token == ":":
            return self._placeholder(start)
        if token == ";":
            return self._statement_end(start)
        if token == "[":
            self.bracket_depth += 1
        elif token == "]":
            self.bracket_depth = max(0, self.bracket_depth - 1)
        return start + 1

    def _skip_string(self, start: int) -> int:
        raw = self.raw
        escapes = (
            start >= 1
            and raw[start - 1] in "eE"
            and not (start >= 2 and _IDENTIFIER_CHAR.match(raw[start - 2]))
        )
        if not escapes:
            return self._skip_until("'", start + 1, doubled=True)

        position = start + 1
        while position < len(raw):
            char = raw[position]
            if char == "\\":
                position += 2
            elif char == "'":
                if raw.startswith("'", position + 1):
                    position += 2
                else:
                    return position + 1
            else:
                position += 1
        return len(raw)

    def _skip_until(self, quote: str, position: int, *, doubled: bool) -> int:
        raw = self.raw
        while True:
            end = raw.find(quote, position)
            if end == -1:
                return len(raw)
            if doubled and raw.startswith(quote, end + 1):
                position = end + 2
                continue
            return end + 1

    def _skip_dollar_quote(self, start: int) -> int:
        raw = self.raw
        if start and _IDENTIFIER_CHAR.match(raw[start - 1]):
            return start + 1  # part of an identifier such as a$b
        match = _DOLLAR_TAG.match(raw, start)
        if match is None:
            return start + 1  # a positional parameter such as $1
        end = raw.find(match.group(), match.end())
        return len(raw) if end == -1 else end + len(match.group())

    def _skip_block_comment(self, start: int) -> int:
        raw = self.raw
        depth = 0
        position = start
        while position < len(raw):
            if raw.startswith("/*", position):
                depth += 1
                position += 2
            elif raw.startswith("*/", position):
                depth -= 1
                position += 2
                if depth == 0:
                    return position
            else:
                position += 1
        return len(raw)

    def _line_at(self, offset: int) -> int:
        return self.raw.count("\n", 0, offset) + 1

    def _emit_until(self, offset: int) -> None:
        if offset > self.copied_to:
            chunk = self.raw[self.copied_to : offset]
            self.pieces.append(chunk)
            self.out_length += len(chunk)
        self.copied_to = max(self.copied_to, offset)

    def _replace(self, start: int, end: int, replacement: str) -> None:
        self._emit_until(start)
        self.pieces.append(replacement)
        self.out_length += len(replacement)
        self.copied_to = end
        added = replacement.count("\n") - self.raw.count("\n", start, end)
        if added:
            self.added_newlines += added
            self.script.shift_offsets.append(self.out_length)
            self.script.shift_totals.append(self.added_newlines)

    def _meta_command(self, start: int) -> int:
        raw = self.raw
        end = raw.find("\n", start)
        end = len(raw) if end == -1 else end
        command_text = raw[start:end]
        match = _META_COMMAND.match(command_text)
        name = (match.group(1) or "") if match else ""
        argument = command_text[match.end() if match else 1 :].strip()
        line = self._line_at(start)

        if name == "set":
            self._define_variable(argument, line)
        elif name == "unset":
            self.variables.pop(argument, None)
        elif name in _INCLUDE_COMMANDS:
            logger.warning(
                "%s:%d: \\%s %s is not followed; statements in that file are not "
                "analysed",
                self.display,
                line,
                name,
                argument,
            )
        elif name in _CONDITIONAL_COMMANDS:
            logger.warning(
                "%s:%d: \\%s is ignored, so every branch of the conditional is "
                "analysed",
                self.display,
                line,
                name,
            )

        sends_query = name in _SEND_COMMANDS
        self._replace(start, end, ";" if sends_query else "")
        pending = _strip_comments(raw[self.statement_start : start]).strip()
        if sends_query or not pending:
            # The next statement starts after the command, so a COPY that
            # follows a \set line is still recognised.
            self.statement_start = end
            self.bracket_depth = 0
        return end

    def _define_variable(self, argument: str, line: int) -> None:
        if not argument:
            return
        parts = argument.split(None, 1)
        name = parts[0]
        value_text = parts[1] if len(parts) > 1 else ""
        if "`" in value_text:
            raise MigrationError(
                f"\\set {name} runs a shell command, which Assay does not run",
                file=self.display,
                line=line,
                fix=f"Define {name} under migrations.variables in assay.yaml",
            )
        self.variables[name] = _psql_set_value(value_text, self.variables)

    def _placeholder(self, start: int) -> int:
        raw = self.raw
        following = raw[start + 1 : start + 2]
        if following in (":", "="):
            return start + 2

        quoted = _QUOTED_VARIABLE.match(raw, start)
        if quoted is not None:
            quote, name = quoted.group(1), quoted.group(2)
            value = self._lookup(name, start, inside_brackets=False)
            assert value is not None
            replacement = _quote_literal(value) if quote == "'" else _quote_ident(value)
            self._replace(start, quoted.end(), replacement)
            return quoted.end()

        plain = _VARIABLE.match(raw, start)
        if plain is None:
            return start + 1
        inside_brackets = self.bracket_depth > 0
        value = self._lookup(plain.group(1), start, inside_brackets=inside_brackets)
        if value is None:
            return plain.end()  # an array slice such as a[1:n]
        self._replace(start, plain.end(), value)
        return plain.end()

    def _lookup(self, name: str, start: int, *, inside_brackets: bool) -> str | None:
        if name in self.variables:
            return self.variables[name]
        if inside_brackets:
            return None
        raise MigrationError(
            f"undefined psql variable :{name}",
            file=self.display,
            line=self._line_at(start),
            fix=f"Define it under migrations.variables in assay.yaml, or with "
            f"\\set {name} VALUE earlier in the file",
        )

    def _statement_end(self, start: int) -> int:
        statement = self.raw[self.statement_start : start]
        self.statement_start = start + 1
        self.bracket_depth = 0
        if not _COPY_FROM_STDIN.match(_strip_literals(_strip_comments(statement))):
            return start + 1
        return self._cut_copy_data(start)

    def _cut_copy_data(self, semicolon: int) -> int:
        """Blank the data rows after a COPY ... FROM stdin and keep them aside."""
        raw = self.raw
        self._emit_until(semicolon)
        processed_semicolon = self.out_length
        line_end = raw.find("\n", semicolon)
        if line_end == -1:
            self.script.copy_blocks[processed_semicolon] = ""
            return len(raw)

        rows = []
        position = line_end + 1
        end = len(raw)
        while position < len(raw):
            next_newline = raw.find("\n", position)
            row_end = len(raw) if next_newline == -1 else next_newline + 1
            row = raw[position:row_end]
            if row.rstrip("\r\n") == "\\.":
                end = row_end
                break
            rows.append(row)
            position = row_end

        self.script.copy_blocks[processed_semicolon] = "".join(rows)
        self._replace(line_end + 1, end, "\n" * raw.count("\n", line_end + 1, end))
        self.statement_start = end
        return end


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"--[^\n]*", " ", sql)
    return re.sub(r"/\*[\s\S]*?\*/", " ", sql)


def _strip_literals(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", sql)


def _psql_set_value(text: str, variables: Mapping[str, str]) -> str:
    """Join the words of a ``\\set`` value as psql does, unquoting 'single' quotes."""
    value = []
    for match in re.finditer(r"'((?:[^']|'')*)'|:([^\W\d]\w*)|(\S+)|\s+", text):
        quoted, variable, word = match.groups()
        if quoted is not None:
            value.append(quoted.replace("''", "'"))
        elif variable is not None:
            value.append(variables.get(variable, match.group()))
        elif word is not None:
            value.append(word)
    return "".join(value)


def _quote_literal(value: str) -> str:
    escaped = value.replace("'", "''")
    if "\\" in value:
        return "E'" + escaped.replace("\\", "\\\\") + "'"
    return "'" + escaped + "'"


def _quote_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


# ---------------------------------------------------------------------------
# Splitting


# Statement kinds that PostgreSQL rejects inside a transaction block.
_NO_TRANSACTION_KINDS = {
    "VacuumStmt",
    "CreatedbStmt",
    "DropdbStmt",
    "AlterSystemStmt",
    "CreateTableSpaceStmt",
    "DropTableSpaceStmt",
}


def _needs_autocommit(kind: str, tree: Mapping[str, object]) -> bool:
    if kind in _NO_TRANSACTION_KINDS:
        return True
    if kind in ("IndexStmt", "DropStmt"):
        return bool(tree.get("concurrent"))
    if kind == "ReindexStmt":
        for param in tree.get("params", ()):  # type: ignore[union-attr]
            if param.get("DefElem", {}).get("defname") == "concurrently":
                return True
    return False


def _split(script: _Script, display: str) -> tuple[Statement, ...]:
    text = script.text
    try:
        tree = json.loads(pglast.parser.parse_sql_json(text))
    except pglast.parser.ParseError as error:
        raise _locate_parse_error(script, display, error) from error

    to_char = _byte_to_char_offsets(text)
    statements = []
    claimed_copy_blocks = set()
    line = 1
    counted_to = 0
    for raw_statement in tree.get("stmts", ()):
        location = raw_statement.get("stmt_location", 0)
        length = raw_statement.get("stmt_len", 0)
        end = to_char(location + length) if length else None
        start = _skip_space_and_comments(text, to_char(location))
        sql = text[start:end].rstrip()
        if end is None:
            sql = _strip_trailing_comments(sql)

        line += text.count("\n", counted_to, start)
        counted_to = start

        kind, tree_node = next(iter(raw_statement["stmt"].items()))
        copy_data = None
        reads_stdin = tree_node.get("is_from") and not tree_node.get("filename")
        if kind == "CopyStmt" and reads_stdin and end in script.copy_blocks:
            copy_data = script.copy_blocks[end]
            claimed_copy_blocks.add(end)

        statements.append(
            Statement(
                display,
                script.original_line(line, start),
                sql,
                copy_data=copy_data,
                concurrently=_needs_autocommit(kind, tree_node),
                kind=kind,
            )
        )

    _check_copy_blocks(script, display, claimed_copy_blocks)
    return tuple(statements)


def _check_copy_blocks(script: _Script, display: str, claimed: set[int]) -> None:
    """Raise unless every cut-out COPY data block belongs to a COPY statement.

    Lines read as COPY data are hidden from the parser, so a block that no
    COPY ... FROM stdin claims would otherwise drop statements silently.
    """
    for offset in sorted(set(script.copy_blocks) - claimed):
        line = script.text.count("\n", 0, offset) + 1
        raise MigrationError(
            "the lines after this statement were read as COPY data, but the "
            "statement is not a COPY ... FROM stdin",
            file=display,
            line=script.original_line(line, offset),
            fix="Only COPY ... FROM stdin may be followed by data rows",
        )


def _byte_to_char_offsets(text: str):
    """Return a function that converts UTF-8 byte offsets of ``text`` to indexes.

    libpg_query reports statement locations in bytes of the UTF-8 text.
    """
    if text.isascii():
        return lambda offset: offset

    displacements = pglast.parser.Displacements(text)
    size = len(text.encode("utf-8"))

    def to_char(offset: int) -> int:
        return len(text) if offset >= size else displacements(offset)

    return to_char


def _strip_trailing_comments(sql: str) -> str:
    """Cut comments after the last token of a statement that has no ``;``."""
    tokens = [
        token
        for token in pglast.parser.scan(sql)
        if token.name not in ("SQL_COMMENT", "C_COMMENT")
    ]
    return sql[: tokens[-1].end + 1] if tokens else sql


def _skip_space_and_comments(text: str, position: int) -> int:
    while position < len(text):
        if text[position].isspace():
            position += 1
        elif text.startswith("--", position):
            end = text.find("\n", position)
            position = len(text) if end == -1 else end
        elif text.startswith("/*", position):
            depth = 0
            while position < len(text):
                if text.startswith("/*", position):
                    depth += 1
                    position += 2
                elif text.startswith("*/", position):
                    depth -= 1
                    position += 2
                    if depth == 0:
                        break
                else:
                    position += 1
        else:
            break
    return position


def _locate_parse_error(
    script: _Script, display: str, error: pglast.parser.ParseError
) -> MigrationError:
    """Build the error for a file the parser rejects, at the failing statement.

    The scanner splits at every top-level ``;``, which also cuts ``BEGIN ATOMIC``
    bodies. Consecutive pieces are joined until they parse, so the statement that
    still fails where the parser stopped is the one reported.
    """
    text = script.text
    message = error.args[0] if error.args else str(error)
    error_offset = error.args[1] if len(error.args) > 1 else None
    statement_start = _find_failing_statement(text, error_offset)

    start_line = text.count("\n", 0, statement_start) + 1
    line = script.original_line(start_line, statement_start)
    if error_offset is not None:
        error_line = text.count("\n", 0, error_offset) + 1
        error_line = script.original_line(error_line, error_offset)
        if error_line != line:
            message += f" (line {error_line})"

    major = pglast.get_postgresql_version()[0]
    return MigrationError(
        message,
        file=display,
        line=line,
        fix=f"Correct the statement. Assay reads migrations with the PostgreSQL "
        f"{major} grammar (pglast {pglast.__version__})",
    )


def _find_failing_statement(text: str, error_offset: int | None) -> int:
    try:
        pieces = pglast.split(text, with_parser=False, only_slices=True)
    except pglast.parser.ParseError:
        pieces = ()

    index = 0
    while index < len(pieces):
        start = _skip_space_and_comments(text, pieces[index].start)
        last = index
        while True:
            stop = pieces[last].stop
            if error_offset is not None and stop > error_offset:
                return start
            try:
                pglast.parser.parse_sql_json(text[start:stop])
                break
            except pglast.parser.ParseError:
                last += 1
                if last == len(pieces):
                    return start
        index = last + 1

    if error_offset is not None:
        return _line_start(text, error_offset)
    return 0


def _line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


# ---------------------------------------------------------------------------
# Cache


def _cache_key(display: str, digest: str, variables: Mapping[str, str]) -> str:
    material = json.dumps(
        [_CACHE_FORMAT, pglast.__version__, display, digest, sorted(variables.items())]
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _load_cached(cache_file: Path, display: str, digest: str) -> MigrationFile | None:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
        if data["path"] != display or data["sha256"] != digest:
            return None
        statements = tuple(
            Statement(
                display,
                line,
                sql,
                copy_data=copy_data,
                concurrently=concurrently,
                kind=kind,
            )
            for line, sql, kind, copy_data, concurrently in data["statements"]
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.debug("ignoring unreadable cache entry %s: %s", cache_file, error)
        return None
    return MigrationFile(display, statements, digest)


def _store_cached(cache_file: Path, parsed: MigrationFile) -> None:
    data = {
        "path": parsed.path,
        "sha256": parsed.sha256,
        "statements": [
            [s.line, s.sql, s.kind, s.copy_data, s.concurrently]
            for s in parsed.statements
        ],
    }
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=cache_file.parent, suffix=".tmp")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temporary, cache_file)
    except OSError as error:
        logger.warning("cannot write the migration cache %s: %s", cache_file, error)


# ---------------------------------------------------------------------------
# Applying


_SUPABASE_ROLES = {
    "anon",
    "authenticated",
    "service_role",
    "authenticator",
    "supabase_admin",
    "supabase_auth_admin",
    "supabase_storage_admin",
    "dashboard_user",
}
_SUPABASE_SCHEMAS = {
    "auth",
    "storage",
    "extensions",
    "realtime",
    "graphql",
    "graphql_public",
    "vault",
    "supabase_functions",
    "net",
    "pgsodium",
    "cron",
}


# Schemas that a Supabase extension creates, and that extension. The shim
# cannot stand in for them.
_EXTENSION_SCHEMAS = {
    "cron": "pg_cron",
    "net": "pg_net",
    "graphql": "pg_graphql",
    "vault": "supabase_vault",
    "pgsodium": "pgsodium",
}


# Column types that Supabase platform extensions provide, and the extension.
_EXTENSION_TYPES = {
    "vector": "vector",
    "halfvec": "vector",
    "sparsevec": "vector",
    "geometry": "postgis",
    "geography": "postgis",
}


def apply(conn: psycopg.Connection, files: Sequence[MigrationFile]) -> None:
    """Run the migration files in order on an autocommit psycopg connection.

    Each file runs in one transaction, except statements marked
    ``concurrently``, which run on their own between the transactions. A file
    that contains its own BEGIN, COMMIT or ROLLBACK runs statement by statement
    without an added transaction. ``COPY ... FROM stdin`` sends the statement's
    data rows. Raises MigrationError at the failing statement's file and line
    with PostgreSQL's message, SQLSTATE and a fix. The transaction of the
    failing file is rolled back, and earlier files stay applied. In a database
    holding the Supabase shim, CREATE EXTENSION of a Supabase platform
    extension that the server lacks is skipped with a warning.
    """
    import psycopg

    if not conn.autocommit:
        raise ValueError("apply() needs a connection with autocommit=True")

    started = time.perf_counter()
    statement_count = 0
    for migration in files:
        for batch, in_transaction in _batches(migration.statements):
            try:
                if in_transaction:
                    with conn.transaction():
                        _execute_all(conn, batch)
                else:
                    _execute_all(conn, batch)
            except _StatementFailed as failure:
                raise _apply_error(failure.statement, failure.error) from failure.error
            except psycopg.Error as error:  # raised by COMMIT itself
                raise _apply_error(batch[-1], error) from error
        statement_count += len(migration.statements)
        logger.debug("applied %s", migration.path)

    logger.info(
        "applied %d migration files (%d statements) in %.2f s",
        len(files),
        statement_count,
        time.perf_counter() - started,
    )


def _batches(
    statements: Sequence[Statement],
) -> Iterable[tuple[list[Statement], bool]]:
    """Yield runs of statements and whether each run gets its own transaction."""
    if any(s.kind == "TransactionStmt" for s in statements):
        yield list(statements), False
        return

    current: list[Statement] = []
    for statement in statements:
        if statement.concurrently:
            if current:
                yield current, True
                current = []
            yield [statement], False
        else:
            current.append(statement)
    if current:
        yield current, True


class _StatementFailed(Exception):
    def __init__(self, statement: Statement, error: Exception) -> None:
        super().__init__(str(error))
        self.statement = statement
        self.error = error


def _execute_all(conn: psycopg.Connection, statements: Sequence[Statement]) -> None:
    import psycopg

    with conn.cursor() as cursor:
        for statement in statements:
            try:
                _execute(cursor, statement)
            except psycopg.Error as error:
                raise _StatementFailed(statement, error) from error


def _execute(cursor: psycopg.Cursor, statement: Statement) -> None:
    if statement.kind == "CreateExtensionStmt" and _platform_extension_missing(
        cursor, statement
    ):
        return

    if statement.copy_data is not None:
        with cursor.copy(statement.sql) as copy:
            copy.write(statement.copy_data)
        return

    if statement.kind == "CopyStmt" and _is_copy_to_client(statement):
        with cursor.copy(statement.sql) as copy:
            for _ in copy:
                pass
        return

    cursor.execute(statement.sql, prepare=False)


def _platform_extension_missing(cursor: psycopg.Cursor, statement: Statement) -> bool:
    """Return whether to skip a CREATE EXTENSION the Supabase shim cannot provide.

    Only in a database holding the shim, only for extensions the Supabase
    platform offers, and only when this server lacks it. A skip is logged as a
    warning and listed in the run's ``skipped_statements``.
    """
    from assay.supabase import PLATFORM_EXTENSIONS, SHIM_MARK

    name = getattr(statement.node, "extname", None)
    if name not in PLATFORM_EXTENSIONS:
        return False
    cursor.execute(
        "select obj_description(oid, 'pg_namespace') = %s and not exists"
        " (select 1 from pg_catalog.pg_available_extensions where name = %s)"
        " from pg_catalog.pg_namespace where nspname = 'extensions'",
        (SHIM_MARK, name),
    )
    row = cursor.fetchone()
    if not (row and row[0]):
        return False
    message = (
        f"{statement.file}:{statement.line}: extension {name} is not available on"
        " this PostgreSQL server, so the Supabase flavor skipped CREATE EXTENSION."
        " Statements that use the extension fail, so install it to apply them"
    )
    logger.warning("%s", message)
    from assay.session import RUN_INFO

    RUN_INFO.setdefault("skipped_statements", []).append(message)
    return True


def _is_copy_to_client(statement: Statement) -> bool:
    node = statement.node
    return not getattr(node, "is_from", True) and not getattr(node, "filename", None)


def _apply_error(statement: Statement, error: psycopg.Error) -> MigrationError:
    diag = error.diag
    sqlstate = error.sqlstate or "unknown"
    primary = diag.message_primary or str(error).strip()
    message = f"PostgreSQL rejected the statement: {primary} (SQLSTATE {sqlstate})"
    # PostgreSQL ends detail and hint with a period; the fix adds its own.
    if diag.message_detail:
        message += f". {diag.message_detail.rstrip('.')}"
    if diag.message_hint:
        message += f". PostgreSQL hint: {diag.message_hint.rstrip('.')}"

    error_line = _position_line(statement, diag.statement_position)
    if error_line is not None and error_line != statement.line:
        message += f" (line {error_line})"

    return MigrationError(
        message,
        file=statement.file,
        line=statement.line,
        fix=_fix_for(sqlstate, primary),
    )


def _position_line(statement: Statement, position: str | None) -> int | None:
    if not position or not position.isdigit():
        return None
    offset = int(position) - 1
    return statement.line + statement.sql.count("\n", 0, offset)


def _fix_for(sqlstate: str, message: str) -> str:
    """Suggest a fix for errors that come from a missing environment."""
    quoted = re.findall(r'"([^"]+)"', message)
    # Missing functions are named unquoted: function auth.uid() does not exist.
    function = re.match(r"function ([\w.]+)\(", message)
    name = ""
    if quoted:
        name = quoted[0]
    elif function:
        name = function.group(1)
    schema = name.split(".", 1)[0] if "." in name else ""
    supabase_fix = (
        "Set database.flavor: supabase in assay.yaml, which creates the Supabase "
        "roles and the auth schema, or add a setup file that creates it. If the "
        "flavor is set, Assay's stand-in for Supabase lacks this object: create "
        "it in a migrations.setup file"
    )

    extension_schema = name if sqlstate == "3F000" else schema
    if sqlstate in ("3F000", "42883", "42P01") and extension_schema in _EXTENSION_SCHEMAS:
        extension = _EXTENSION_SCHEMAS[extension_schema]
        return (
            f"Schema {extension_schema} belongs to the extension {extension}: install "
            "it on the PostgreSQL server, or create a stand-in for what the "
            "migrations use in a migrations.setup file"
        )
    if sqlstate == "42704" and message.startswith("type "):
        type_name = name.rsplit(".", 1)[-1]
        if type_name in _EXTENSION_TYPES:
            return (
                f"Type {type_name} belongs to the extension "
                f"{_EXTENSION_TYPES[type_name]}, which this PostgreSQL server lacks: "
                "install it on the server"
            )
        return (
            f"Create the type {name} in an earlier migration or a migrations.setup "
            "file, or install the extension that provides it"
        )
    if sqlstate == "42704" and message.startswith("role "):
        if name in _SUPABASE_ROLES:
            return supabase_fix
        return f"Create the role {name} in a setup file that runs before the migrations"
    if sqlstate == "3F000":
        if name in _SUPABASE_SCHEMAS:
            return supabase_fix
        return f"Create the schema {name} in a setup file or an earlier migration"
    if sqlstate in ("42883", "42P01") and schema in _SUPABASE_SCHEMAS:
        return supabase_fix
    if "extension" in message and sqlstate in ("0A000", "58P01"):
        return (
            f"Install the extension {name} on the PostgreSQL server, or use a "
            "database provider whose server has it"
        )
    if sqlstate == "55P04":
        return (
            "Move the statements that use the new enum value to a later migration "
            "file, because each file runs in one transaction"
        )
    return ""
