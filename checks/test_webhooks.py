"""Inbound webhooks and internal notes: WH-1 to WH-3 and DM-1, against the live app."""

from __future__ import annotations

import pytest

from assay.recorder import NotApplicable, Recorder
from assay.webhooks.notes import NOTE_PROVIDERS, probe_internal_notes
from assay.webhooks.probes import (
    Prober,
    ProbeReport,
    probe_raw_body,
    probe_replays,
    probe_signatures,
)


def record(
    evidence: Recorder, prober: Prober, report: ProbeReport, examined: str
) -> None:
    evidence.observe(prober.receiver.name, report.observations)
    evidence.examined_count(examined, report.examined)
    evidence.extend(report.findings)


def count_requests(evidence: Recorder, probers: list[Prober], before: int) -> None:
    evidence.observe("requests_sent", sum(p.sent for p in probers) - before)


@pytest.mark.control("WH-1")
def test_forged_deliveries_rejected(evidence, webhook_probers):
    before = sum(p.sent for p in webhook_probers)
    for prober in webhook_probers:
        record(evidence, prober, probe_signatures(prober), "forged deliveries")
    count_requests(evidence, webhook_probers, before)
    evidence.verdict()


@pytest.mark.control("WH-2")
def test_raw_body_verified(evidence, webhook_probers):
    before = sum(p.sent for p in webhook_probers)
    for prober in webhook_probers:
        record(evidence, prober, probe_raw_body(prober), "non-canonical deliveries")
    count_requests(evidence, webhook_probers, before)
    evidence.verdict()


@pytest.mark.control("WH-3")
def test_replays_processed_once(evidence, webhook_probers):
    before = sum(p.sent for p in webhook_probers)
    for prober in webhook_probers:
        report = probe_replays(prober, concurrency=prober.receiver.config.concurrency)
        record(evidence, prober, report, "replayed deliveries")
    count_requests(evidence, webhook_probers, before)
    evidence.verdict()


@pytest.mark.control("DM-1")
def test_internal_notes_not_stored(evidence, webhook_probers):
    probers = {
        p.signer.name: p for p in webhook_probers if p.signer.name in NOTE_PROVIDERS
    }
    if not probers:
        raise NotApplicable(
            "no Zendesk or Intercom receiver is configured, so no event carries "
            "an internal note"
        )
    target = next(iter(probers.values())).target
    before = sum(p.sent for p in webhook_probers)
    report = probe_internal_notes(probers, target.dsn, target.read_logs)
    count_requests(evidence, webhook_probers, before)
    evidence.observe("deliveries", report.observations)
    evidence.examined_count("deliveries and searched columns", report.examined)
    evidence.extend(report.findings)
    evidence.verdict()
