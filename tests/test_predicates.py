"""Tests for policy predicate analysis with sqlglot."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.migrations import parse_all
from assay.predicates import FunctionInfo, analyse, function_infos
from assay.schema import build_model

COLUMNS = ["id", "organization_id", "user_id", "tenant_id", "owner", "is_public"]

HELPERS = {
    "public.is_member_of": FunctionInfo(
        "public.is_member_of",
        "sql",
        "select exists (select 1 from public.members m\n"
        "  where m.organization_id = org and m.user_id = auth.uid())",
        ("org",),
    ),
    "public.is_admin": FunctionInfo(
        "public.is_admin",
        "sql",
        "select exists (select 1 from public.admins where id = auth.uid())",
    ),
    "public.my_orgs": FunctionInfo(
        "public.my_orgs",
        "plpgsql",
        "begin\n  return query select organization_id from members\n"
        "    where user_id = auth.uid();\nend",
    ),
    "public.can_see": FunctionInfo(
        "public.can_see", "sql", "select public.is_member_of(target)", ("target",)
    ),
    "public.ignores_argument": FunctionInfo(
        "public.ignores_argument", "sql", "select auth.uid() is not null", ("org",)
    ),
    "public.commented": FunctionInfo(
        "public.commented",
        "plpgsql",
        "begin\n  -- used to call auth.uid() here\n  return org is not null;\nend",
        ("org",),
    ),
    "public.meta_org": FunctionInfo(
        "public.meta_org",
        "sql",
        "select (raw_user_meta_data ->> 'org')::uuid from auth.users\n"
        "  where id = auth.uid()",
    ),
    "basejump.has_role_on_account": FunctionInfo(
        "basejump.has_role_on_account",
        "sql",
        "select exists (select 1 from basejump.account_user\n"
        "  where user_id = auth.uid() and account_user.account_id = $1)",
        ("account_id", "account_role"),
    ),
}


def check(text: str, **options):
    options.setdefault("table", "public.docs")
    options.setdefault("columns", COLUMNS)
    options.setdefault("functions", HELPERS)
    return analyse(text, **options)


# ---------------------------------------------------------------------------
# always true


@pytest.mark.parametrize(
    "text",
    [
        "true",
        "TRUE",
        "(true)",
        "1 = 1",
        "'a' = 'a'",
        "organization_id = organization_id",
        "user_id = auth.uid() OR true",
        "NOT false",
        "2 > 1",
    ],
)
def test_always_true(text):
    result = check(text)

    assert result.always_true
    assert result.scoped is False
    assert "always true" in result.reasons[0]


@pytest.mark.parametrize(
    "text",
    ["false", "user_id = auth.uid()", "1 = 2", "auth.uid() = auth.uid()"],
)
def test_not_always_true(text):
    assert not check(text).always_true


# ---------------------------------------------------------------------------
# scoped


@pytest.mark.parametrize(
    "text",
    [
        "user_id = auth.uid()",
        "auth.uid() = user_id",
        "(select auth.uid()) = user_id",
        "user_id = (SELECT auth.uid() AS uid)",
        "user_id IS NOT DISTINCT FROM auth.uid()",
        "current_setting('app.tenant_id')::uuid = tenant_id",
        "tenant_id = current_setting('app.tenant_id', true)::uuid",
        "(current_setting('request.jwt.claims', true)::json ->> 'sub')::uuid = user_id",
        "organization_id in (select organization_id from members\n"
        "  where user_id = auth.uid())",
        "organization_id = ANY (my_orgs())",
        "organization_id in (select my_orgs())",
        "is_member_of(organization_id)",
        "public.is_member_of(organization_id)",
        "can_see(organization_id)",
        "basejump.has_role_on_account(organization_id, 'owner')",
        "basejump.has_role_on_account(organization_id) = true",
        "true IS NOT DISTINCT FROM is_member_of(organization_id)",
        "(auth.jwt() -> 'app_metadata' ->> 'tenant_id')::uuid = tenant_id",
        "owner = current_user",
        "(storage.foldername(name))[1] = auth.uid()::text",
        "user_id = auth.uid() AND (is_public OR tenant_id = auth.uid())",
        "(is_public OR user_id = auth.uid()) AND tenant_id = auth.uid()",
        "coalesce(user_id = auth.uid(), false)",
        "(SELECT public.is_member_of(docs.organization_id) AS is_member)",
        "(select is_member_of(organization_id))",
        "(select true from members m where m.org = docs.organization_id"
        " and m.user_id = auth.uid())",
        "CASE WHEN is_public THEN user_id = auth.uid() ELSE tenant_id = auth.uid() END",
    ],
)
def test_scoped(text):
    result = check(text)

    assert result.scoped is True, result.reasons
    assert not result.always_true


def test_exists_correlated_by_table_name():
    text = (
        "exists (select 1 from orders o where o.address_id = addresses.id "
        "and o.seller_id = auth.uid())"
    )

    result = check(text, table="public.addresses", columns=["id", "street"])

    assert result.scoped is True
    assert result.row_columns == {"id"}
    assert result.session_refs == {"auth.uid"}


def test_exists_correlated_through_known_columns():
    text = (
        "exists (select 1 from members m where m.org = organization_id "
        "and m.user_id = auth.uid())"
    )

    result = check(text, tables={"public.members": ["org", "user_id"]})

    assert result.scoped is True
    assert result.row_columns == {"organization_id"}


def test_exists_join_condition_counts():
    text = (
        "exists (select 1 from projects p join members m on m.project_id = p.id "
        "where p.id = docs.project_id and m.user_id = (select auth.uid()))"
    )

    assert check(text).scoped is True


# ---------------------------------------------------------------------------
# not scoped


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("auth.uid() is not null", "checks who the caller is"),
        ("auth.role() = 'authenticated'", "checks who the caller is"),
        (
            "auth.uid() is null or user_id = auth.uid()",
            "admits callers without a session",
        ),
        (
            "is_public or user_id = auth.uid()",
            "does not compare the row with the caller",
        ),
        ("tenant_id <> auth.uid()", "does not bind a row column to the caller"),
        ("is_member_of(organization_id) or is_admin()", "branch `is_admin()`"),
        ("ignores_argument(organization_id)", "does not bind"),
        ("(select is_admin())", "checks who the caller is"),
        ("is_member_of(organization_id) = false", "does not bind"),
        ("(select true from members m where m.user_id = auth.uid())", "never refers"),
        ("commented(organization_id)", "does not compare the row"),
        (
            "organization_id in (select organization_id from members "
            "where auth.uid() is not null)",
            "does not bind",
        ),
        (
            "CASE WHEN auth.role() = 'service_role' THEN true "
            "ELSE user_id = auth.uid() END",
            "auth.role() = 'service_role' AND TRUE",
        ),
    ],
)
def test_not_scoped(text, reason):
    result = check(text)

    assert result.scoped is False
    assert any(reason in line for line in result.reasons), result.reasons


def test_null_branch_is_named():
    result = check("auth.uid() IS NULL OR user_id = auth.uid()")

    assert result.reasons == (
        "branch `auth.uid() IS NULL` admits callers without a session",
    )


def test_exists_without_correlation():
    text = (
        "exists (select 1 from members m where m.organization_id = organization_id "
        "and m.user_id = auth.uid())"
    )

    result = check(text, tables={"public.members": ["organization_id", "user_id"]})

    assert result.scoped is False
    assert "never refers to the protected row" in result.reasons[0]
    assert result.row_columns == frozenset()


def test_user_metadata_in_jwt_is_not_scoped():
    text = "(auth.jwt() -> 'user_metadata' ->> 'org_id')::uuid = organization_id"

    result = check(text)

    assert result.user_metadata
    assert result.scoped is False
    assert any("user_metadata" in line for line in result.reasons)


def test_user_metadata_through_helper():
    result = check("organization_id = meta_org()")

    assert result.user_metadata
    assert result.scoped is False
    assert any("meta_org" in line for line in result.reasons)


# ---------------------------------------------------------------------------
# undecided


def test_unknown_function_with_row_column():
    result = check("mystery_check(organization_id)")

    assert result.scoped is None
    assert "mystery_check" in result.reasons[0]


def test_unknown_function_as_caller_value():
    result = check("organization_id = current_org()")

    assert result.scoped is None


def test_ambiguous_subquery_column():
    text = (
        "exists (select 1 from members m where m.org = organization_id "
        "and m.user_id = auth.uid())"
    )

    result = check(text)

    assert result.scoped is None
    assert "qualify it with the table name" in result.reasons[0]


@pytest.mark.parametrize("text", ["user_id = auth.uid() AND", "user_id = (", "))"])
def test_unparseable_is_undecided(text):
    result = check(text)

    assert result.scoped is None
    assert result.reasons[0].startswith("sqlglot could not parse the predicate")
    assert "\x1b" not in result.reasons[0]


# ---------------------------------------------------------------------------
# what the predicate reads


def test_reads_columns_sessions_and_functions():
    text = (
        "tenant_id = current_setting('app.tenant_id')::uuid "
        "and public.is_member_of(organization_id) and lower(owner) = current_user"
    )

    result = check(text)

    assert result.row_columns == {"tenant_id", "organization_id", "owner"}
    assert result.session_refs == {
        "current_setting:app.tenant_id",
        "auth.uid",
        "current_user",
    }
    assert result.functions == {
        "current_setting",
        "public.is_member_of",
        "lower",
        "current_user",
    }
    assert not result.user_metadata


def test_subquery_columns_are_not_row_columns():
    text = (
        "organization_id in (select organization_id from members "
        "where user_id = auth.uid())"
    )

    result = check(text)

    assert result.row_columns == {"organization_id"}


def test_plpgsql_helper_scanned_textually():
    result = check("organization_id = any(my_orgs())")

    assert result.session_refs == {"auth.uid"}
    assert result.scoped is True


def test_recursive_helpers_terminate():
    helpers = {
        "public.a": FunctionInfo("public.a", "sql", "select public.b(x)", ("x",)),
        "public.b": FunctionInfo("public.b", "sql", "select public.a(y)", ("y",)),
    }

    result = check("a(organization_id)", functions=helpers)

    assert result.scoped is False


def test_overloads_accepted():
    overloads = (
        FunctionInfo("public.check", "sql", "select true", ("x",)),
        FunctionInfo("public.check", "sql", "select x = auth.uid()", ("x",)),
    )

    result = check("public.check(user_id)", functions={"public.check": overloads})

    assert result.scoped is True


# ---------------------------------------------------------------------------
# with the schema model


def test_model_policies_parse_in_sqlglot(tmp_path: Path):
    text = (
        "create table public.docs (id uuid, organization_id uuid, user_id uuid);\n"
        "create function public.is_member_of(org uuid) returns boolean language sql\n"
        "  security definer set search_path = '' as $$\n"
        "  select exists (select 1 from public.members\n"
        "    where organization_id = org and user_id = auth.uid()) $$;\n"
        "create policy a on docs using (user_id = (select auth.uid()));\n"
        "create policy b on docs\n"
        "  using (current_setting('app.t')::uuid = organization_id);\n"
        "create policy c on docs using (is_member_of(organization_id));\n"
        "create policy d on docs using (organization_id = any(array[auth.uid()]));\n"
        "create policy e on docs using (auth.uid() is not null);\n"
    )
    path = tmp_path / "1.sql"
    path.write_text(text)
    model = build_model(parse_all([path], root=tmp_path))
    docs = model.table("docs")

    verdicts = {
        policy.name: analyse(
            policy.using,
            table=docs.name,
            columns=docs.columns,
            functions=function_infos(model),
        ).scoped
        for policy in docs.policies.values()
    }

    assert verdicts == {"a": True, "b": True, "c": True, "d": True, "e": False}


def test_function_info_from_model(tmp_path: Path):
    path = tmp_path / "1.sql"
    path.write_text(
        "create function f(a int, b text) returns int language plpgsql\n"
        "  as $$ begin return a; end $$;"
    )
    model = build_model(parse_all([path], root=tmp_path))

    (info,) = function_infos(model)["public.f"]

    assert info.name == "public.f"
    assert info.language == "plpgsql"
    assert info.body == " begin return a; end "
    assert info.arg_names == ("a", "b")


# ---------------------------------------------------------------------------
# hypothesis

SCOPED_ATOMS = [
    "user_id = auth.uid()",
    "tenant_id = current_setting('app.tenant')::uuid",
    "is_member_of(organization_id)",
    "organization_id in (select organization_id from members\n"
    "  where user_id = auth.uid())",
]
UNSCOPED_ATOMS = [
    "auth.uid() is not null",
    "is_public",
    "auth.role() = 'authenticated'",
    "tenant_id <> auth.uid()",
]


def formulas(depth: int = 3):
    """Build (text, expected scoped) pairs from atoms joined with AND and OR."""
    atom = st.one_of(
        st.sampled_from(SCOPED_ATOMS).map(lambda text: (text, True)),
        st.sampled_from(UNSCOPED_ATOMS).map(lambda text: (text, False)),
    )

    def combine(children):
        return st.tuples(children, st.sampled_from(["and", "or"]), children).map(
            lambda parts: (
                f"({parts[0][0]}) {parts[1]} ({parts[2][0]})",
                parts[0][1] or parts[2][1]
                if parts[1] == "and"
                else parts[0][1] and parts[2][1],
            )
        )

    return st.recursive(atom, combine, max_leaves=depth * 3)


@settings(max_examples=150, deadline=None)
@given(formula=formulas())
def test_scoped_follows_branch_logic(formula):
    text, expected = formula

    assert check(text).scoped is expected


@settings(max_examples=100, deadline=None)
@given(
    text=st.sampled_from(
        [
            "user_id = auth.uid()",
            "tenant_id in (select tenant_id from members where user_id = auth.uid())",
            "public.is_member_of(organization_id)",
        ]
    ),
    cut=st.integers(min_value=1, max_value=200),
)
def test_truncated_predicate_never_scoped(text, cut):
    truncated = text[: max(0, len(text) - cut)]

    assert check(truncated).scoped is not True


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40))
def test_arbitrary_text_never_raises(text):
    result = check(text)

    assert result.text == text
    assert result.scoped in (True, False, None)



# The caller's identity passed to a helper as an argument, as in
# can_access(workspace_id, auth.uid()), reaches the helper's comparison.
PASSED_CALLER = {
    "public.can_access": FunctionInfo(
        "public.can_access",
        "sql",
        "select exists (select 1 from public.members m\n"
        "  where m.organization_id = org and m.user_id = who)",
        ("org", "who"),
    ),
    "public.role_in": FunctionInfo(
        "public.role_in",
        "sql",
        "select role from public.members m\n"
        "  where m.organization_id = org and m.user_id = who",
        ("org", "who"),
    ),
    "public.any_member": FunctionInfo(
        "public.any_member",
        "sql",
        "select exists (select 1 from public.members m where m.organization_id = org)",
        ("org", "who"),
    ),
}


@pytest.mark.parametrize(
    "text",
    [
        "can_access(organization_id, auth.uid())",
        "public.can_access(organization_id, (select auth.uid()))",
        "can_access(organization_id, current_setting('app.user_id')::uuid)",
        "role_in(organization_id, auth.uid()) = 'admin'",
        "role_in(organization_id, auth.uid()) IN ('owner', 'admin')",
        "role_in(organization_id, auth.uid()) = ANY (ARRAY['owner'::role, 'admin'::role])",
    ],
)
def test_caller_passed_to_helper_is_scoped(text):
    result = analyse(text, table="public.docs", columns=COLUMNS, functions=PASSED_CALLER)

    assert result.scoped is True, result.reasons


@pytest.mark.parametrize(
    "text",
    [
        "any_member(organization_id, auth.uid())",
        "can_access(organization_id, user_id)",
        "can_access(organization_id, (auth.jwt() -> 'user_metadata' ->> 'id')::uuid)",
        "role_in(organization_id, auth.uid()) <> 'admin'",
        "role_in(organization_id, auth.uid()) IS NULL",
        "role_in(organization_id, user_id) = 'admin'",
    ],
)
def test_caller_argument_unused_is_not_scoped(text):
    result = analyse(text, table="public.docs", columns=COLUMNS, functions=PASSED_CALLER)

    assert result.scoped is not True, result.reasons



def test_parenthesized_join_as_deparsed():
    # pg_get_expr wraps a subquery's joins in parentheses.
    text = (
        "EXISTS ( SELECT 1\n   FROM (projects p\n     JOIN members m ON "
        "(((m.organization_id = p.organization_id) AND (m.user_id = auth.uid()))))\n"
        "  WHERE (p.id = docs.project_id))"
    )

    result = analyse(
        text,
        table="public.docs",
        columns=[*COLUMNS, "project_id"],
        tables={"projects": ["id", "organization_id"], "members": ["organization_id", "user_id"]},
    )

    assert result.scoped is True, result.reasons


def test_parenthesized_join_without_row_is_not_scoped():
    text = (
        "EXISTS ( SELECT 1\n   FROM (projects p\n     JOIN members m ON "
        "(((m.organization_id = p.organization_id) AND (m.user_id = auth.uid())))))"
    )

    result = analyse(
        text,
        table="public.docs",
        columns=[*COLUMNS, "project_id"],
        tables={"projects": ["id", "organization_id"], "members": ["organization_id", "user_id"]},
    )

    assert result.scoped is False, result.reasons
