"""The run plugin: joins checks to controls and turns test reports into evidence.

Registered by ``assay.plugin`` when ``--assay-config`` is given. It runs in
the controller and in every xdist worker. Workers classify each report and
attach the control id, outcome, findings and observations as
``user_properties``; the controller alone aggregates them and writes the
evidence.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from assay.canaries import ENV as CANARY_ENV
from assay.canaries import encodings, find_canaries, registered, registry_dir
from assay.catalog import Catalog, load_catalog
from assay.config import Config, load_config
from assay.errors import AssayError, UsageError
from assay.findings import Finding
from assay.recorder import (
    FINDINGS_KEY,
    OBSERVATIONS_KEY,
    Attested,
    ControlFailed,
    Expired,
    NotApplicable,
    Undecided,
)
from assay.waivers import WaiverSet, load_waivers, review_waivers

logger = logging.getLogger(__name__)

CONTROL_KEY = "assay_control"
OUTCOME_KEY = "assay_outcome"
RUN_INFO_KEY = "assay_run_info"
USAGE_ERROR_KEY = "assay_usage_error"

# One place where run-wide facts (server version, migration checksums) are
# gathered by fixtures in whichever process runs them.
RUN_INFO: dict[str, Any] = {}


def check_name(item: pytest.Item) -> str:
    """Return the catalog name of a check: ``module::function`` without test_."""
    module = Path(str(item.path)).stem
    if module.startswith("test_"):
        module = module[len("test_") :]
    return f"{module}::{item.originalname if hasattr(item, 'originalname') else item.name}"


def control_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("control")
    if marker is None or not marker.args:
        return None
    return str(marker.args[0])


def classify(excinfo: pytest.ExceptionInfo | None, when: str) -> tuple[str, str]:
    """Map how a phase ended to an Assay status and a one-line reason."""
    if excinfo is None:
        return "passed", ""
    exc = excinfo.value
    if isinstance(exc, NotApplicable):
        return "not_applicable", exc.reason
    if isinstance(exc, pytest.skip.Exception):
        return (
            "error",
            f"the check was skipped during {when} ({exc.msg}); a skip cannot "
            "silence a control, so the control is undecided",
        )
    if isinstance(exc, Attested):
        return "attested", str(exc)
    if isinstance(exc, Expired):
        return "expired", str(exc)
    if isinstance(exc, ControlFailed):
        return "failed", str(exc)
    if isinstance(exc, AssertionError):
        return "failed", str(exc) or "assertion failed"
    if isinstance(exc, Undecided):
        return "error", str(exc)
    if isinstance(exc, AssayError):
        return "error", str(exc)
    return "error", f"{type(exc).__name__}: {exc}"


class AssayRun:
    """pytest hooks for one `assay run`."""

    def __init__(self, config: pytest.Config) -> None:
        self.pytest_config = config
        self.config: Config = load_config(Path(config.getoption("assay_config")))
        wanted = config.getoption("assay_controls")
        selected = [c.strip() for c in wanted.split(",") if c.strip()] if wanted else None
        self.full_catalog: Catalog = load_catalog(self.config.catalog_dir())
        self.catalog: Catalog = self.full_catalog.select(selected)
        report_dir = config.getoption("assay_report_dir")
        self.report_dir = Path(report_dir) if report_dir else None
        self.started = time.time()
        self.outcomes: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.findings: dict[str, list[Finding]] = defaultdict(list)
        self.observations: dict[str, dict[str, Any]] = defaultdict(dict)
        self.run_info: dict[str, Any] = {}
        self.usage_errors: list[str] = []
        self.not_applicable: dict[str, str] = {}
        self.join_errors: list[str] = []
        self.is_worker = hasattr(config, "workerinput")
        self.waivers = self.load_waivers()
        config.addinivalue_line(
            "markers",
            "after_flows: run after every other check, to inspect what the flows left",
        )
        if not self.is_worker:
            # Created before xdist starts workers, so they inherit its location.
            # A folder named by the caller (an outer run or a test) is theirs
            # to remove; one this run creates is removed at its end.
            self.owns_canary_dir = not os.environ.get(CANARY_ENV)
            self.canary_dir = registry_dir()

    def load_waivers(self) -> WaiverSet:
        """Read waivers.yaml; a malformed file is a usage error (exit status 2)."""
        try:
            return load_waivers(self.config, known_controls=self.full_catalog.ids())
        except UsageError as exc:
            self.usage_errors.append(str(exc))
            return WaiverSet()

    # Collection ---------------------------------------------------------------

    def missing_section(self, control_id: str) -> str | None:
        control = self.catalog.get(control_id)
        for section in control.requires if control else ():
            value = getattr(self.config, section, None)
            if value in (None, {}, []):
                return (
                    f"{self.config.file} has no `{section}` section, so there is "
                    f"nothing to test for this control"
                )
        return None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list
    ) -> None:
        full = self.full_catalog
        named = {name for control in full.controls for name in control.checks}
        seen: set[str] = set()
        keep, drop = [], []
        for item in items:
            control_id = control_of(item)
            name = check_name(item)
            if control_id is None:
                self.join_errors.append(f"check {name} has no @pytest.mark.control")
                drop.append(item)
                continue
            control = full.get(control_id)
            if control is None or name not in control.checks:
                self.join_errors.append(
                    f"check {name} names control {control_id}, whose catalog entry "
                    "does not list it"
                )
            seen.add(name)
            if self.catalog.get(control_id) is None:
                drop.append(item)
                continue
            reason = self.missing_section(control_id)
            if reason:
                self.not_applicable[control_id] = reason
                drop.append(item)
                continue
            keep.append(item)
        for control in full.controls:
            if control.type == "automated" and not control.checks:
                self.join_errors.append(f"control {control.id} names no check")
            for name in control.checks:
                if name not in seen:
                    self.join_errors.append(
                        f"control {control.id} names check {name}, which was not found"
                    )
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
        # Checks that inspect what the flows left behind run last (stable sort).
        items.sort(key=lambda item: item.get_closest_marker("after_flows") is not None)

    # Reports ------------------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        control_id = control_of(item)
        if control_id is None:
            return
        status, reason = classify(call.excinfo, call.when)
        if call.excinfo is not None and isinstance(call.excinfo.value, UsageError):
            report.user_properties.append((USAGE_ERROR_KEY, str(call.excinfo.value)))
        if status == "error" and report.outcome == "skipped":
            # A bare pytest.skip() must not look green or grey anywhere.
            report.outcome = "failed"
            report.longrepr = reason
        if status == "attested":
            # Fresh evidence is a pass in JUnit; expired evidence stays a failure.
            report.outcome = "passed"
            report.longrepr = None
        if call.when == "call" or status != "passed":
            report.user_properties.append(
                (OUTCOME_KEY, json.dumps({"status": status, "reason": reason}))
            )
        report.user_properties.append((CONTROL_KEY, control_id))
        if RUN_INFO:
            report.user_properties.append((RUN_INFO_KEY, json.dumps(RUN_INFO, default=str)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker:
            return
        props = dict(report.user_properties)
        control_id = props.get(CONTROL_KEY)
        if control_id is None:
            return
        if RUN_INFO_KEY in props:
            self.run_info.update(json.loads(props[RUN_INFO_KEY]))
        if USAGE_ERROR_KEY in props:
            message = props[USAGE_ERROR_KEY]
            if message not in self.usage_errors:
                self.usage_errors.append(message)
        if OUTCOME_KEY in props:
            outcome = json.loads(props[OUTCOME_KEY])
            outcome["check"] = report.nodeid
            outcome["phase"] = report.when
            outcome["duration"] = round(report.duration, 3)
            self.outcomes[control_id].append(outcome)
        if report.when == "call" or FINDINGS_KEY in props:
            if FINDINGS_KEY in props and report.when == "call":
                for item in json.loads(props[FINDINGS_KEY]):
                    self.findings[control_id].append(Finding.from_dict(item))
            if OBSERVATIONS_KEY in props and report.when == "call":
                observed = json.loads(props[OBSERVATIONS_KEY])
                name = report.nodeid.split("::")[-1]
                self.observations[control_id][name] = observed

    # Verdicts -----------------------------------------------------------------

    def control_results(self) -> list[dict[str, Any]]:
        from assay.evidence import control_status

        results = []
        for control in self.catalog.controls:
            status, reasons = control_status(
                control,
                self.outcomes.get(control.id, []),
                self.findings.get(control.id, []),
                self.not_applicable.get(control.id),
            )
            results.append(
                {
                    "id": control.id,
                    "title": control.title,
                    "claim": control.claim,
                    "family": control.family,
                    "severity": control.severity,
                    "type": control.type,
                    "status": status,
                    "reasons": reasons,
                    "criteria": list(control.criteria),
                    "checks": self.outcomes.get(control.id, []),
                    "findings": [f.to_dict() for f in self.findings.get(control.id, [])],
                    "observations": self.observations.get(control.id, {}),
                }
            )
        return self.review_waivers(results)

    def review_waivers(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fail controls named by expired or unused waivers; list waivers in run info."""
        if not len(self.waivers):
            return results
        results, rows = review_waivers(self.waivers, results)
        self.run_info["waivers"] = rows
        return results

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            return
        from assay.evidence import write_run_evidence

        self.results = self.control_results()
        if self.join_errors:
            self.run_info["catalog_errors"] = self.join_errors
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            self.run_info["interrupted"] = (
                "the run was stopped (Ctrl-C or SIGTERM) before every check ran, "
                "so this evidence is incomplete"
            )
        if self.report_dir is not None:
            from assay.manifest import sign_run_folder, signer_for_run

            signer = signer_for_run(
                self.config, self.report_dir, self.run_info, self.usage_errors
            )
            try:
                write_run_evidence(
                    self.report_dir,
                    config=self.config,
                    catalog=self.catalog,
                    results=self.results,
                    run_info=self.run_info,
                    started=self.started,
                    usage_errors=self.usage_errors,
                )
            except AssayError as exc:
                self.usage_errors.append(str(exc))
            self.scan_for_canaries()
            # Signed last, so the manifest covers the files as the canary scan left them.
            sign_run_folder(self.report_dir, signer)
        if self.owns_canary_dir:
            shutil.rmtree(self.canary_dir, ignore_errors=True)
            os.environ.pop(CANARY_ENV, None)
        session.config.stash[RESULTS_KEY] = {
            "results": self.results,
            "usage_errors": self.usage_errors,
            "join_errors": self.join_errors,
        }

    def scan_for_canaries(self) -> None:
        """Fail the run if any evidence file contains a canary this run planted."""
        files = [p for p in self.report_dir.rglob("*") if p.is_file()]
        hits = find_canaries(files, registered())
        if not hits:
            return
        leaks = [
            {
                "file": str(path.relative_to(self.report_dir)),
                "canary": canary.redacted(),
                "encoding": form,
            }
            for path, canary, form in hits
        ]
        planted = {canary.value: canary for _, canary, _ in hits}
        for path in {path for path, _, _ in hits}:
            # The leaked value must not stay on disk: replace every encoding of
            # it in place, so the file stays readable (and JSON stays JSON).
            data = path.read_bytes()
            for canary in planted.values():
                for form in encodings(canary.value).values():
                    data = data.replace(form, canary.redacted().encode())
            path.write_bytes(data)
        self.run_info["canary_leaks"] = leaks
        evidence_path = self.report_dir / "evidence.json"
        evidence = json.loads(evidence_path.read_text("utf-8"))
        evidence["run"]["canary_leaks"] = leaks
        evidence_path.write_text(json.dumps(evidence, indent=2, default=str) + "\n")
        # Render the other files again so they report the leak too.
        from assay.evidence import WRITERS

        for writer in WRITERS:
            writer.write(self.report_dir, evidence)
        logger.error("canary values leaked into the evidence: %s", leaks)

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config) -> None:
        if self.is_worker or not hasattr(self, "results"):
            return
        from assay.summary import render_summary

        for line in render_summary(self.results, self.join_errors, self.usage_errors):
            terminalreporter.write_line(line)


RESULTS_KEY = pytest.StashKey[dict]()
