"""The service-role scan: patterns, comments, justifications and config errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from assay.config import load_config
from assay.errors import ConfigError
from assay.service_role import scan_config

REPO = Path(__file__).resolve().parents[1]


def scan(tmp_path: Path, files: dict[str, str], section: str = ""):
    """Write `files` under src/ and scan them with a service_role section."""
    for name, text in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    config = tmp_path / "assay.yaml"
    config.write_text("service_role:\n  paths: [src]\n" + section)
    return scan_config(load_config(config))


def test_python_client_justified_above(tmp_path):
    result = scan(
        tmp_path,
        {
            "jobs.py": """\
            import os
            from supabase import create_client

            # service-role: the nightly job runs without a user session, so
            # it cannot act as one.
            client = create_client(
                os.environ["SUPABASE_URL"],
                os.environ["SUPABASE_SERVICE_ROLE_KEY"],
            )
            """
        },
    )

    (use,) = result.uses
    assert use.file == "src/jobs.py"
    assert use.line == 6
    assert use.pattern == "supabase-py create_client with the service-role key"
    assert use.justification == (
        "the nightly job runs without a user session, so it cannot act as one."
    )
    assert result.unjustified() == []


def test_typescript_client_justified_on_line(tmp_path):
    result = scan(
        tmp_path,
        {
            "admin.ts": """\
            import { createClient } from "@supabase/supabase-js";
            const url = "https://project.supabase.co"; // not a comment marker inside
            export const admin = createClient("https://x.supabase.co", process.env.SUPABASE_SERVICE_ROLE_KEY!); // service-role: OAuth callback before any session
            """
        },
    )

    (use,) = result.uses
    assert use.line == 3
    assert use.pattern == "supabase-js createClient with the service-role key"
    assert use.justification == "OAuth callback before any session"


def test_unjustified_use_reported_with_line(tmp_path):
    result = scan(
        tmp_path,
        {
            "sync.py": """\
            import os

            KEY = os.environ["SUPABASE_SERVICE_ROLE_KEY"]
            """
        },
    )

    (use,) = result.unjustified()
    assert (use.file, use.line) == ("src/sync.py", 3)
    assert use.pattern == "SUPABASE_SERVICE_ROLE_KEY"
    assert use.code == 'KEY = os.environ["SUPABASE_SERVICE_ROLE_KEY"]'


def test_url_in_string_is_not_comment(tmp_path):
    result = scan(
        tmp_path,
        {
            "client.js": """\
            const c = createClient("https://x.supabase.co", serviceRoleKey);
            """
        },
    )

    assert [use.line for use in result.unjustified()] == [1]


def test_mention_in_comment_is_not_use(tmp_path):
    result = scan(
        tmp_path,
        {
            "notes.py": """\
            # Never read SUPABASE_SERVICE_ROLE_KEY in request handlers.
            x = 1  # see SUPABASE_SERVICE_ROLE_KEY rotation notes
            """
        },
    )

    assert result.uses == ()
    assert result.files == 1


def test_empty_justification_fails(tmp_path):
    result = scan(
        tmp_path,
        {
            "a.py": """\
            # service-role:
            KEY = env["SUPABASE_SERVICE_ROLE_KEY"]
            """
        },
    )

    (use,) = result.unjustified()
    assert use.marker_line == 1
    assert use.justification == ""


def test_blank_line_ends_comment_block(tmp_path):
    result = scan(
        tmp_path,
        {
            "a.py": """\
            # service-role: an old comment about something else

            KEY = env["SUPABASE_SERVICE_ROLE_KEY"]
            """
        },
    )

    assert [use.line for use in result.unjustified()] == [3]


def test_marker_too_far_above(tmp_path):
    text = """\
    # service-role: admin RPC after checking membership
    # one
    # two
    # three
    KEY = env["SUPABASE_SERVICE_ROLE_KEY"]
    """

    far = scan(tmp_path, {"a.py": text}, "  lines_above: 3\n")
    near = scan(tmp_path, {"a.py": text}, "  lines_above: 4\n")

    assert [use.line for use in far.unjustified()] == [5]
    assert near.unjustified() == []
    assert (
        near.uses[0].justification
        == "admin RPC after checking membership one two three"
    )


def test_block_comment_justifies(tmp_path):
    result = scan(
        tmp_path,
        {
            "b.ts": """\
            /*
             * service-role: webhook receiver, no user session.
             */
            const admin = createClient(url, SERVICE_ROLE);
            """
        },
    )

    assert result.uses[0].justification == "webhook receiver, no user session."


def test_custom_pattern_and_marker(tmp_path):
    result = scan(
        tmp_path,
        {
            "db.py": """\
            # bypass-rls: background job
            with db.as_service() as cur:
                pass
            with db.as_service() as cur:
                pass
            """
        },
        "  patterns: ['\\.as_service\\(']\n  marker: 'bypass-rls:'\n  defaults: false\n",
    )

    assert [(u.line, u.justification) for u in result.uses] == [
        (2, "background job"),
        (4, None),
    ]


def test_defaults_off_ignores_supabase(tmp_path):
    result = scan(
        tmp_path,
        {"a.py": 'KEY = env["SUPABASE_SERVICE_ROLE_KEY"]\n'},
        "  patterns: ['as_service']\n  defaults: false\n",
    )

    assert result.uses == ()


def test_skipped_folders_and_extensions(tmp_path):
    result = scan(
        tmp_path,
        {
            "node_modules/lib.js": "createClient(u, SERVICE_ROLE)\n",
            "README.md": "Set SUPABASE_SERVICE_ROLE_KEY in .env\n",
            "ok.py": "x = 1\n",
        },
    )

    assert result.uses == ()
    assert result.files == 1


def test_invalid_pattern_names_line(tmp_path):
    with pytest.raises(ConfigError) as raised:
        scan(tmp_path, {"a.py": "x = 1\n"}, "  patterns: ['as_service(']\n")

    assert raised.value.line == 3
    assert raised.value.key == "service_role.patterns.0"
    assert "invalid regular expression" in str(raised.value)


def test_missing_path_names_line(tmp_path):
    (tmp_path / "assay.yaml").write_text("service_role:\n  paths: [src, lib]\n")
    (tmp_path / "src").mkdir()

    with pytest.raises(ConfigError) as raised:
        scan_config(load_config(tmp_path / "assay.yaml"))

    assert raised.value.key == "service_role.paths.1"
    assert "not found" in str(raised.value)


def test_acme_uses_all_justified():
    result = scan_config(load_config(REPO / "assay.yaml"))

    assert result.uses, "acme has service-role uses to inventory"
    assert [(u.file, u.line) for u in result.unjustified()] == []
    assert all(u.file.startswith("examples/acme/acme/") for u in result.uses)
