"""assay.yaml loading: valid files, and every error naming file, line, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from assay.config import load_config
from assay.errors import ConfigError

ISSUE_EXAMPLE = """\
database:
  provider: auto        # auto | url | docker | local | pypi
  url: null             # for provider url
  flavor: supabase      # supabase | postgres
migrations:
  path: supabase/migrations
tenancy:
  column: organization_id
  tenant_table: public.organizations      # its primary key is the tenant id
  membership: {table: public.members, tenant_column: organization_id, user_column: user_id}
  act_as: supabase      # or a SQL template using {user_id} and {tenant_id}
  role: authenticated   # the role application users run as
  exempt: [{table: public.plans, reason: "global catalogue, no customer data"}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "assay.yaml"
    path.write_text(text)
    return path


def test_documented_keys_load(tmp_path):
    config = load_config(write(tmp_path, ISSUE_EXAMPLE))

    assert config.database.provider == "auto"
    assert config.database.flavor == "supabase"
    assert config.migrations.path == "supabase/migrations"
    assert config.tenancy.membership.user_column == "user_id"
    assert config.tenancy.exempt[0].table == "public.plans"
    assert config.root == tmp_path


def test_config_is_frozen(tmp_path):
    config = load_config(write(tmp_path, ISSUE_EXAMPLE))

    with pytest.raises(AttributeError):
        config.database.provider = "url"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "database:\n  provder: auto\n",
            ":2: database.provder='auto': unknown key. Did you mean 'provider'?",
        ),
        (
            "database:\n  provider: dockr\n",
            ":2: database.provider='dockr': invalid value. Did you mean 'docker'?",
        ),
        (
            "tenancy:\n  exempt:\n    - {table: public.x}\n",
            ":3: tenancy.exempt.0.reason: missing required key",
        ),
        (
            "tenancy:\n  tenant_table: organizations\n",
            ":2: tenancy.tenant_table='organizations': table name must be "
            "schema-qualified",
        ),
        (
            "database:\n  provider: url\n",
            ":2: database.provider='url': provider url needs database.url",
        ),
        (
            "tenancy:\n  act_as: set role me\n",
            ":2: tenancy.act_as='set role me': act_as is neither 'supabase' nor a "
            "SQL template",
        ),
        (
            "migrations:\n  path: [a, b]\n",
            ":2: migrations.path=['a', 'b']: expected a string",
        ),
        ("database:\n  provider: auto\n  provider: url\n", ":3: database.provider="),
        ("tenancy: [\n", ": invalid YAML"),
        ("- a\n- b\n", "expected a mapping of sections"),
    ],
)
def test_invalid_config_names_line_key_and_value(tmp_path, text, expected):
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text))

    message = str(raised.value)
    assert message.startswith(str(tmp_path / "assay.yaml")) or "assay.yaml" in message
    assert expected in message


def test_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")


def test_paths_resolve_against_config_folder(tmp_path):
    config = load_config(write(tmp_path, "migrations:\n  path: db/migrations\n"))

    assert config.path(config.migrations.path) == tmp_path / "db" / "migrations"
