"""`assay verify`, `assay merge` and `assay diff` from the command line."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assay.cli import main
from assay.evidence_cli import diff_evidence, merge_evidence
from assay.manifest import load_signer, verify_folder
from fakes.evidence import control, evidence_document, rls_finding, write_folder


@pytest.fixture(autouse=True)
def no_config(tmp_path, monkeypatch):
    # Run from an empty folder so no assay.yaml of this repository is picked up.
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("ASSAY_SIGNING_KEY", raising=False)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def signer(key):
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return load_signer(None, environ={"ASSAY_SIGNING_KEY": pem})


@pytest.fixture
def public_key(tmp_path, key) -> Path:
    path = tmp_path / "signing.pub.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def folder(tmp_path, signer) -> Path:
    return write_folder(tmp_path / "run", evidence_document(), signer)


# verify ----------------------------------------------------------------------


def test_verify_command_passes(folder, public_key, capsys):
    status = main(["verify", str(folder), "--public-key", str(public_key)])
    out, err = capsys.readouterr()

    assert status == 0
    assert out.startswith(f"verified: 6 files in {folder} match manifest.json")
    assert err == ""


def test_verify_command_warns_with_folder_key(tmp_path, capsys):
    folder = write_folder(tmp_path / "self", evidence_document())

    status = main(["verify", str(folder)])
    _, err = capsys.readouterr()

    assert status == 0
    assert "public key stored in the evidence folder" in err
    assert "the signature is self-made" in err


def test_verify_command_names_changed_file(folder, public_key, capsys):
    (folder / "report.html").write_text("<p>all green</p>")

    status = main(["verify", str(folder), "--public-key", str(public_key)])
    _, err = capsys.readouterr()

    assert status == 1
    assert "changed: report.html" in err
    assert "Traceback" not in err


def test_verify_command_missing_folder(tmp_path, capsys):
    status = main(["verify", str(tmp_path / "absent")])
    _, err = capsys.readouterr()

    assert status == 2
    assert "no such evidence folder" in err


def test_verify_command_bad_key_file(folder, tmp_path, capsys):
    status = main(["verify", str(folder), "--public-key", str(tmp_path / "nokey.pem")])
    _, err = capsys.readouterr()

    assert status == 2
    assert "cannot read the public key" in err


def test_verify_command_wrong_key(folder, tmp_path, capsys):
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    status = main(["verify", str(folder), "--public-key", str(other)])
    _, err = capsys.readouterr()

    assert status == 1
    assert "signature does not verify" in err


def test_verify_uses_configured_public_key(folder, public_key, tmp_path, capsys):
    config = tmp_path / "cwd" / "assay.yaml"
    config.write_text(f"evidence:\n  public_key: {public_key}\n")

    status = main(["verify", str(folder)])
    out, err = capsys.readouterr()

    assert status == 0
    assert "evidence.public_key" in out
    assert err == ""


# merge -----------------------------------------------------------------------


def shard_documents():
    shared = rls_finding()
    second = rls_finding(line=40, message="policy tickets_update uses USING (true)")
    first = evidence_document(
        [
            control("TI-1", "passed"),
            control("TI-2", "failed", [shared]),
            control("TI-5", "passed", criteria=("CC6.3",)),
        ]
    )
    other = evidence_document(
        [
            control("TI-2", "failed", [shared, second]),
            control("TI-3", "passed"),
            control("TI-5", "error", reasons=["server went away"], criteria=("CC6.3",)),
        ],
        started="2026-01-05T10:00:00+00:00",
    )
    other["run"]["started"] = "2026-01-05T10:00:20+00:00"
    other["run"]["finished"] = "2026-01-05T10:03:00+00:00"
    return first, other


@pytest.fixture
def shards(tmp_path, signer) -> list[Path]:
    first, other = shard_documents()
    return [
        write_folder(tmp_path / "shard-1", first, signer),
        write_folder(tmp_path / "shard-2", other, signer),
    ]


def test_merge_worst_status_wins():
    first, other = shard_documents()
    merged = merge_evidence([(Path("a"), first), (Path("b"), other)])
    statuses = {c["id"]: c["status"] for c in merged["controls"]}

    assert statuses == {
        "TI-1": "passed",
        "TI-2": "failed",
        "TI-5": "error",
        "TI-3": "passed",
    }
    assert merged["summary"] == {"passed": 2, "failed": 1, "error": 1}


def test_merge_deduplicates_findings():
    first, other = shard_documents()
    merged = merge_evidence([(Path("a"), first), (Path("b"), other)])
    ti2 = next(c for c in merged["controls"] if c["id"] == "TI-2")

    assert [f["line"] for f in ti2["findings"]] == [14, 40]


def test_merge_lists_shards_in_run():
    first, other = shard_documents()
    merged = merge_evidence([(Path("a"), first), (Path("b"), other)])
    run = merged["run"]

    assert [s["folder"] for s in run["shards"]] == ["a", "b"]
    assert run["shards"][1]["controls"] == ["TI-2", "TI-3", "TI-5"]
    assert run["started"] == "2026-01-05T10:00:00+00:00"
    assert run["finished"] == "2026-01-05T10:03:00+00:00"


def test_merge_command_writes_signed_folder(shards, public_key, tmp_path, capsys):
    out = tmp_path / "merged"

    status = main(
        ["merge", *map(str, shards), "-o", str(out), "--public-key", str(public_key)]
    )
    stdout, err = capsys.readouterr()
    evidence = json.loads((out / "evidence.json").read_text())
    junit = ElementTree.parse(out / "junit.xml").getroot()

    assert status == 1  # TI-2 failed and TI-5 is an error in the merged run
    assert stdout.startswith(f"merged 2 shards into {out}")
    assert "self-made" in err
    assert verify_folder(out).files == 6
    assert {c["id"] for c in evidence["controls"]} == {"TI-1", "TI-2", "TI-3", "TI-5"}
    assert len(junit.findall("testsuite")) == 2
    assert (out / "report.html").read_text().count('class="page control"') == 4


def test_merge_rejects_tampered_shard(shards, public_key, tmp_path, capsys):
    (shards[1] / "evidence.json").write_text(
        (shards[1] / "evidence.json").read_text().replace('"failed"', '"passed"')
    )

    status = main(
        [
            "merge",
            *map(str, shards),
            "-o",
            str(tmp_path / "merged"),
            "--public-key",
            str(public_key),
        ]
    )
    _, err = capsys.readouterr()

    assert status == 1
    assert "changed: evidence.json" in err
    assert not (tmp_path / "merged").exists()


def test_merge_rejects_other_commit(tmp_path, signer, capsys):
    first, other = shard_documents()
    other["run"]["git"]["commit"] = "f" * 40
    shards = [
        write_folder(tmp_path / "a", first, signer),
        write_folder(tmp_path / "b", other, signer),
    ]

    status = main(["merge", *map(str, shards), "-o", str(tmp_path / "merged")])
    _, err = capsys.readouterr()

    assert status == 2
    assert "the shards differ in git commit" in err


def test_merge_rejects_nonempty_output(shards, tmp_path, capsys):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("x")

    status = main(["merge", *map(str, shards), "-o", str(out)])
    _, err = capsys.readouterr()

    assert status == 2
    assert "already exists and is not empty" in err


def test_merge_signs_with_configured_key(
    shards, key, public_key, tmp_path, monkeypatch
):
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    monkeypatch.setenv("ASSAY_SIGNING_KEY", pem)
    out = tmp_path / "merged"

    main(["merge", *map(str, shards), "-o", str(out), "--public-key", str(public_key)])

    assert verify_folder(out, public_key).warnings == ()


# diff ------------------------------------------------------------------------


def test_diff_flags_control_regression():
    base = evidence_document([control("TI-1", "passed"), control("TI-4", "waived")])
    new = evidence_document([control("TI-1", "failed"), control("TI-4", "expired")])

    result = diff_evidence(base, new)

    assert [(c.subject, c.text, c.regression) for c in result.changes] == [
        ("TI-1", "passed -> failed", True),
        ("TI-4", "waived -> expired", True),
    ]


def test_diff_new_blocking_finding_regresses():
    base = evidence_document([control("TI-2", "failed", [rls_finding()])])
    extra = rls_finding(line=50, message="policy x uses USING (true)")
    new = evidence_document([control("TI-2", "failed", [rls_finding(), extra])])

    result = diff_evidence(base, new)

    assert len(result.changes) == 1
    assert result.changes[0].text == "appeared, error"
    assert result.changes[0].regression is True


def test_diff_fixed_finding_is_not_regression():
    base = evidence_document([control("TI-2", "failed", [rls_finding()])])
    new = evidence_document([control("TI-2", "passed")])

    result = diff_evidence(base, new)

    assert [c.text for c in result.changes] == [
        "failed -> passed",
        "disappeared (was error)",
    ]
    assert result.regressions == []


def test_diff_moved_and_waived_findings():
    base = evidence_document([control("TI-2", "failed", [rls_finding()])])
    moved = rls_finding(line=20).with_waiver({"approver": "a", "reason": "r"})
    new = evidence_document([control("TI-2", "waived", [moved])])

    result = diff_evidence(base, new)

    assert result.changes[1].text == "changed: now waived, line 14 -> 20"
    assert result.regressions == []


def test_diff_waiver_removed_regresses():
    waived = rls_finding().with_waiver({"approver": "a", "reason": "r"})
    base = evidence_document([control("TI-2", "waived", [waived])])
    new = evidence_document([control("TI-2", "failed", [rls_finding()])])

    result = diff_evidence(base, new)

    assert [c.regression for c in result.changes] == [True, True]
    assert result.changes[1].text == "changed: waiver removed"


def test_diff_appeared_and_disappeared_controls():
    base = evidence_document([control("TI-1", "passed"), control("TI-6", "passed")])
    new = evidence_document([control("TI-1", "passed"), control("TI-7", "failed")])

    result = diff_evidence(base, new)

    assert [(c.subject, c.text) for c in result.changes] == [
        ("TI-7", "appeared, failed"),
        ("TI-6", "disappeared (was passed)"),
    ]
    assert [c.subject for c in result.regressions] == ["TI-7"]


def test_diff_command_exit_codes(tmp_path, capsys):
    base = write_folder(
        tmp_path / "base", evidence_document([control("TI-1", "passed")])
    )
    same = write_folder(
        tmp_path / "same", evidence_document([control("TI-1", "passed")])
    )
    worse = write_folder(
        tmp_path / "worse", evidence_document([control("TI-1", "error")])
    )

    assert main(["diff", str(base), str(same)]) == 0
    assert (
        capsys.readouterr().out
        == "no change in controls or findings\n0 regression(s)\n"
    )
    assert main(["diff", str(base), str(worse)]) == 1
    assert capsys.readouterr().out == (
        "control TI-1: passed -> error  [regression]\n1 regression(s)\n"
    )
    assert main(["diff", str(base), str(tmp_path / "absent")]) == 2


def test_diff_github_annotations(tmp_path, capsys):
    base = write_folder(
        tmp_path / "base", evidence_document([control("TI-2", "passed")])
    )
    new = write_folder(
        tmp_path / "new",
        evidence_document([control("TI-2", "failed", [rls_finding()])]),
    )

    status = main(["diff", str(base), str(new), "--format", "github"])
    lines = capsys.readouterr().out.splitlines()

    assert status == 1
    assert lines[0] == (
        "::error title=assay regression::control TI-2: passed -> failed"
    )
    assert lines[1].startswith(
        "::error file=examples/acme/supabase/migrations/20240102000000_tenancy.sql,"
        "line=14,title=assay regression::finding TI-2 policy-not-tenant-scoped"
    )


def test_diff_json_format(tmp_path, capsys):
    base = write_folder(
        tmp_path / "base", evidence_document([control("TI-1", "passed")])
    )
    new = write_folder(tmp_path / "new", evidence_document([control("TI-1", "failed")]))

    main(["diff", str(base), str(new), "--format", "json"])
    report = json.loads(capsys.readouterr().out)

    assert report == {
        "changes": [
            {
                "kind": "control",
                "subject": "TI-1",
                "change": "passed -> failed",
                "regression": True,
            }
        ],
        "regressions": 1,
    }


# CI examples -----------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def assay_commands(text: str) -> list[list[str]]:
    """Return the argument lists of every `assay ...` command line in a text."""
    found = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for part in re.split(r"&&|\|\||;", line):
            words = part.replace("run:", " ").replace("- ", " ", 1).split()
            if len(words) >= 2 and words[0] == "assay":
                found.append(words[1:])
    return found


def test_workflow_uses_existing_commands():
    import assay.cli

    text = (REPO / "examples" / "ci" / "github-workflow.yml").read_text()
    workflow = yaml.safe_load(text)
    commands = assay_commands(text)
    assay.cli._load_extra_commands()

    assert set(workflow["jobs"]) == {"lint", "run", "evidence"}
    assert {c[0] for c in commands} == {"lint", "run", "merge", "verify", "diff", "upload"}
    for words in commands:
        assert words[0] in assay.cli.COMMANDS, words
    parser = assay.cli.build_parser()
    for words in commands:
        # Shell variables and globs stand in for real paths here.
        args = [w.strip('"') for w in words if "${{" not in w]
        if words[0] == "run":
            args = ["run", "--controls", "TI-1", "--workers", "2", "--report-dir", "x"]
        parser.parse_args(args)


def test_precommit_hook_runs_lint():
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())

    assert [h["id"] for h in hooks] == ["assay-lint"]
    assert hooks[0]["entry"] == "assay lint"
    assert hooks[0]["pass_filenames"] is False
    assert re.search(hooks[0]["files"], "supabase/migrations/0001_init.sql")
    assert re.search(hooks[0]["files"], "assay.yaml")
    assert not re.search(hooks[0]["files"], "src/app.py")
