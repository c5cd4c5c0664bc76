"""The ``assay`` command line.

Exit status: 0 every selected control passed (or is waived, attested or not
applicable), 1 a control failed or could not be decided, 2 bad usage or
configuration. Errors the user must fix are printed without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from assay import __version__
from assay.errors import AssayError, ConfigError, UsageError

if TYPE_CHECKING:
    from assay.catalog import Catalog
    from assay.config import Config

__all__ = ["main"]

logger = logging.getLogger("assay")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FAILING = ("failed", "error", "expired")

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def command(name: str):
    """Register a function that adds one subcommand to the parser."""

    def register(add: Callable[[argparse.ArgumentParser], None]):
        COMMANDS[name] = add
        return add

    return register


def _config_path(args: argparse.Namespace) -> Path | None:
    return Path(args.config) if getattr(args, "config", None) else None


def _parse_controls(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


# run -------------------------------------------------------------------------


def default_report_dir(report_root: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = report_root / stamp
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = report_root / f"{stamp}-{suffix}"
    return folder


def pytest_arguments(
    config_file: Path,
    report_dir: Path,
    *,
    controls: list[str] | None,
    workers: int,
    verbose: bool,
    extra: Sequence[str] = (),
) -> list[str]:
    """Build the pytest command line that runs the shipped checks."""
    checks = Path(str(resources.files("assay.checks")))
    ini = Path(str(resources.files("assay"))) / "run.ini"
    args = [
        str(checks),
        "-c",
        str(ini),
        "--rootdir",
        str(checks),
        "-p",
        "assay.fixtures",
        "--assay-config",
        str(config_file.resolve()),
        "--assay-report-dir",
        str(report_dir.resolve()),
        "--junitxml",
        str(report_dir.resolve() / "junit.xml"),
        "-q",
        "--tb=short" if verbose else "--tb=no",
        # A broken check module makes its controls errors, not the whole run.
        "--continue-on-collection-errors",
    ]
    if controls:
        args += ["--assay-controls", ",".join(controls)]
    if workers > 1:
        args += ["-n", str(workers)]
    return args + list(extra)


def prepare_report_dir(folder: Path, config: Config, *, from_option: bool) -> None:
    """Create the evidence folder, check it is empty and writable, before any check.

    A folder that cannot be written would otherwise fail only after the whole run,
    in pytest's JUnit writer, with a traceback and no evidence.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".assay-write-test-"):
            pass
    except OSError as exc:
        if folder.exists() and not folder.is_dir():
            reason = "the path is a file, not a folder"
        elif isinstance(exc, NotADirectoryError):
            reason = "a parent of the folder is a file"
        else:
            reason = f"cannot create or write the folder ({exc.strerror or exc})"
        if from_option:
            raise ConfigError(
                reason,
                key="--report-dir",
                value=str(folder),
                fix="Pass a folder that Assay can create and write",
            ) from None
        raise config.error(
            ("evidence", "report_dir"),
            config.evidence.report_dir,
            f"{reason}: {folder}",
            "Point evidence.report_dir at a folder Assay can write, or pass "
            "--report-dir",
        ) from None

    # The manifest signs every file in the folder, so a file left by an earlier
    # run or by hand would be signed as part of this run.
    present = sorted(path.name for path in folder.iterdir())
    if present:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise ConfigError(
            f"the folder is not empty ({shown}), and the manifest would sign those "
            "files as evidence of this run",
            key="--report-dir" if from_option else "evidence.report_dir",
            value=str(folder),
            fix="Pass a new or empty folder, or remove the old evidence first",
        )


@contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """Stop a run on SIGTERM as on Ctrl-C: pytest tears down and reports INTERRUPTED.

    Without this, the SIGTERM handler that provisioning installs raises SystemExit
    inside whichever check is running, pytest records that check as failed and the
    run goes on. The yielded list receives the signal number. A repeated SIGTERM
    is ignored so that the teardown stopping PostgreSQL and the app can finish.
    """
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        logger.warning("received SIGTERM, stopping the run and cleaning up")
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_attested(config: Config, catalog: Catalog) -> None:
    """Reject an `attested` entry that names no attested control of the catalog."""
    attested = [c.id for c in catalog.controls if c.type == "attested"]
    fix = "Name one of " + ", ".join(attested)
    if not attested:
        fix = "The control catalog has no attested control, so remove the entry"
    for index, entry in enumerate(config.attested):
        if entry.control not in attested:
            raise config.error(
                ("attested", index, "control"),
                entry.control,
                "no attested control has this id",
                fix,
            )


def run_command(args: argparse.Namespace) -> int:
    import pytest

    from assay.catalog import load_catalog
    from assay.config import find_config, load_config
    from assay.evidence import load_evidence
    from assay.target import check_app_config
    from assay.waivers import load_waivers

    config_file = _config_path(args) or find_config()
    config = load_config(config_file)
    controls = _parse_controls(args.controls)
    catalog = load_catalog(config.catalog_dir())
    catalog.select(controls)
    # Settings read only inside checks are checked now, before PostgreSQL starts.
    check_app_config(config)
    load_waivers(config, known_controls=catalog.ids())
    _check_attested(config, catalog)
    for extra in args.pytest_args:
        if extra in catalog.ids():
            raise UsageError(
                f"{extra} is a control id, but arguments after `run` go to pytest. "
                f"Select controls with --controls {extra}"
            )
    report_dir = (
        Path(args.report_dir)
        if args.report_dir
        else default_report_dir(config.path(config.evidence.report_dir))
    )
    prepare_report_dir(report_dir, config, from_option=bool(args.report_dir))

    # pytest keeps its base temporary folder after a run (and xdist always makes
    # one), so each run gets its own and removes it.
    basetemp = Path(tempfile.mkdtemp(prefix="assay-pytest-"))
    try:
        with sigterm_as_interrupt() as terminated:
            status = pytest.main(
                pytest_arguments(
                    config_file,
                    report_dir,
                    controls=controls,
                    workers=args.workers,
                    verbose=args.verbose,
                    extra=["--basetemp", str(basetemp), *args.pytest_args],
                )
            )
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)
    if status in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR):
        print(f"assay: pytest stopped with {status.name}", file=sys.stderr)
        return EXIT_USAGE if status == pytest.ExitCode.USAGE_ERROR else EXIT_FAILED
    if status == pytest.ExitCode.INTERRUPTED:
        if terminated:
            print("assay: stopped by SIGTERM", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("assay: interrupted", file=sys.stderr)
        return 130
    if status == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("assay: no check ran, so nothing was proved", file=sys.stderr)
        return EXIT_FAILED

    evidence = load_evidence(report_dir)
    print(f"evidence: {report_dir}")
    if evidence.get("usage_errors"):
        for message in evidence["usage_errors"]:
            print(f"assay: {message}", file=sys.stderr)
        return EXIT_USAGE
    if evidence["run"].get("catalog_errors"):
        return EXIT_FAILED
    if evidence["run"].get("canary_leaks"):
        print("assay: planted canary values leaked into the evidence", file=sys.stderr)
        return EXIT_FAILED
    if any(c["status"] in FAILING for c in evidence["controls"]):
        return EXIT_FAILED
    return EXIT_OK


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: give a whole number of processes, 1 or more"
        ) from None
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"invalid value {count}: give 1 or more processes (1 runs without xdist)"
        )
    return count


@command("run")
def _add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="path of assay.yaml (default: ./assay.yaml)")
    parser.add_argument(
        "--controls", help="comma-separated control ids to run (default: all)"
    )
    parser.add_argument(
        "--report-dir",
        help="folder for this run's evidence (default: reports/<UTC time>)",
    )
    parser.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        help="pytest-xdist worker processes (default: 1)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show pytest's tracebacks for checks"
    )
    parser.add_argument(
        "pytest_args",
        nargs="*",
        help="extra pytest arguments, after --",
    )
    parser.set_defaults(handler=run_command)


# lint ------------------------------------------------------------------------


def lint_command(args: argparse.Namespace) -> int:
    from assay.config import find_config, load_config
    from assay.lint import STATIC_CONTROLS, lint, render

    config = load_config(_config_path(args) or find_config())
    controls = _parse_controls(args.controls)
    findings = lint(config, controls=controls)

    # lint returns no finding when no rule ran; that must not read as a pass.
    static = ", ".join(STATIC_CONTROLS)
    if controls and not set(controls) & set(STATIC_CONTROLS):
        raise ConfigError(
            "assay lint has no static rule for these controls",
            key="--controls",
            value=args.controls,
            fix=f"Select one of {static}, or use assay run for the others",
        )
    if config.tenancy is None:
        raise ConfigError(
            "no tenancy section, so assay lint has no rule to run",
            file=config.file,
            fix="Add a tenancy section naming the tenant column and tables "
            "(see the README)",
        )
    sys.stdout.write(render(findings, args.format))
    return EXIT_FAILED if any(f.blocking for f in findings) else EXIT_OK


@command("lint")
def _add_lint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="path of assay.yaml (default: ./assay.yaml)")
    parser.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text for people, json for tools, github for workflow annotations",
    )
    parser.add_argument(
        "--controls", help="comma-separated control ids to lint (default: all)"
    )
    parser.set_defaults(handler=lint_command)


# controls --------------------------------------------------------------------


def controls_command(args: argparse.Namespace) -> int:
    from assay.catalog import load_catalog
    from assay.config import load_config

    folder = None
    if args.config or Path("assay.yaml").is_file():
        folder = load_config(_config_path(args)).catalog_dir()
    catalog = load_catalog(folder)
    if args.format == "json":
        rows = [
            {
                "id": c.id,
                "title": c.title,
                "claim": c.claim,
                "criteria": list(c.criteria),
                "severity": c.severity,
                "type": c.type,
                "checks": list(c.checks),
            }
            for c in catalog.controls
        ]
        print(json.dumps({"controls": rows}, indent=2))
        return EXIT_OK
    for control in catalog.controls:
        criteria = ", ".join(control.criteria)
        print(f"{control.id:6} {control.severity:8} {control.title}  [{criteria}]")
        print(f"       {control.claim}")
    return EXIT_OK


@command("controls")
def _add_controls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="path of assay.yaml (default: ./assay.yaml)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(handler=controls_command)


# entry -----------------------------------------------------------------------


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid level {text!r} (from --log-level or ASSAY_LOG_LEVEL): use one "
            f"of {', '.join(LOG_LEVELS)}"
        )
    return level


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assay",
        description="Prove security claims with pytest against real systems.",
    )
    parser.add_argument("--version", action="version", version=f"assay {__version__}")
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default=os.environ.get("ASSAY_LOG_LEVEL", "WARNING"),
        help="logging level for Assay's own messages (default: WARNING, or "
        "ASSAY_LOG_LEVEL)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, add in COMMANDS.items():
        add(sub.add_parser(name, help=(add.__doc__ or "").strip() or None))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status."""
    _load_extra_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"assay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AssayError as exc:
        print(f"assay: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("assay: interrupted", file=sys.stderr)
        return 130


def _load_extra_commands() -> None:
    """Import the modules that register further subcommands, if present."""
    import importlib

    for module in ("assay.evidence_cli", "assay.integrations.cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # Absent modules are fine; a missing import inside one is a bug.
            if exc.name is None or not module.startswith(exc.name):
                raise


if __name__ == "__main__":
    # Run through the imported module, so commands that other modules register
    # on ``assay.cli`` are seen (``python -m`` would load this file twice).
    from assay.cli import main as _main

    sys.exit(_main())
