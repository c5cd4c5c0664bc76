"""Provider fakes: token exchange, identity calls, recorded bearers, outages."""

from __future__ import annotations

import httpx
import pytest

from assay.providers import PROVIDERS, TOKEN_PATHS, start_fakes

IDENTITY = {
    "zendesk": ("GET", "/api/v2/users/me.json"),
    "intercom": ("GET", "/me"),
    "github": ("GET", "/user"),
    "slack": ("POST", "/api/auth.test"),
    "jira": ("GET", "/oauth/token/accessible-resources"),
    "linear": ("POST", "/graphql"),
}


@pytest.fixture(scope="module")
def fakes():
    with start_fakes() as running:
        yield running


@pytest.mark.parametrize("provider", PROVIDERS)
def test_code_exchange_then_identity(fakes, provider):
    fake = fakes[provider]
    fake.grant(f"code-{provider}", f"access-{provider}", f"refresh-{provider}")
    with httpx.Client(base_url=fake.base_url) as client:
        grant = client.post(
            TOKEN_PATHS[provider],
            data={"grant_type": "authorization_code", "code": f"code-{provider}"},
        )
        mark = fake.mark()
        method, path = IDENTITY[provider]
        identity = client.request(
            method, path, headers={"Authorization": f"Bearer access-{provider}"}
        )
    assert grant.status_code == 200
    assert grant.json()["access_token"] == f"access-{provider}"
    assert grant.json()["refresh_token"] == f"refresh-{provider}"
    assert identity.status_code == 200
    assert fake.bearer_tokens(mark) == [f"access-{provider}"]


def test_unknown_code_rejected(fakes):
    fake = fakes["github"]
    response = httpx.post(
        fake.base_url + TOKEN_PATHS["github"], data={"code": "never-granted"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant"}


def test_refresh_grant(fakes):
    fake = fakes["linear"]
    fake.grant("c1", "lin-access", "lin-refresh")
    response = httpx.post(
        fake.base_url + TOKEN_PATHS["linear"],
        data={"grant_type": "refresh_token", "refresh_token": "lin-refresh"},
    )
    assert response.json()["access_token"] == "lin-access"


def test_unknown_bearer_is_401_and_recorded(fakes):
    fake = fakes["slack"]
    mark = fake.mark()
    response = httpx.post(
        fake.base_url + "/api/auth.test", headers={"Authorization": "Bearer garbled"}
    )
    assert response.status_code == 401
    assert fake.bearer_tokens(mark) == ["garbled"]


def test_outage_returns_500(fakes):
    fake = fakes["jira"]
    fake.grant("c2", "jira-access", None)
    fake.fail_next(500)
    headers = {"Authorization": "Bearer jira-access"}
    url = fake.base_url + "/oauth/token/accessible-resources"
    assert httpx.get(url, headers=headers).status_code == 500
    assert httpx.get(url, headers=headers).status_code == 200


def test_unknown_provider_rejected():
    with pytest.raises(ValueError, match="no provider fake for asana"):
        with start_fakes(("asana",)):
            pass
