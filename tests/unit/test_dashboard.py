"""The dashboard's rules that need no store: credentials from the environment, where it may
listen without them, the CSRF token, and the job list's filters."""

from __future__ import annotations

import pytest

from agenda_decl.dashboard.security import (
    Credentials,
    CredentialsError,
    CsrfGuard,
    check_binding,
    credentials_from_env,
    is_loopback,
)
from agenda_decl.dashboard.views import FilterError, JobFilters, parse_data_filter

SECRET = "s3cr3t-value-19"


def test_credentials_come_in_pairs_and_never_show_their_values() -> None:
    assert not credentials_from_env({}).required
    token = credentials_from_env({"AGENDA_DECL_DASHBOARD_TOKEN": SECRET})
    assert token.required and SECRET not in repr(token)
    with pytest.raises(CredentialsError) as half:
        credentials_from_env({"AGENDA_DECL_DASHBOARD_PASSWORD": SECRET})
    assert "AGENDA_DECL_DASHBOARD_USER" in str(half.value) and SECRET not in str(half.value)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False),
    ("dashboard.example.com", False),
])
def test_only_loopback_listens_without_credentials(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    if loopback:
        check_binding(host, Credentials())
    else:
        with pytest.raises(CredentialsError, match="needs credentials"):
            check_binding(host, Credentials())
    check_binding(host, Credentials(token=SECRET))


def test_a_csrf_token_is_bound_to_its_cookie_and_this_process() -> None:
    guard = CsrfGuard()
    nonce = guard.new_nonce()
    token = guard.token_for(nonce)
    assert guard.valid(nonce, token)
    assert not guard.valid(guard.new_nonce(), token)  # another cookie
    assert not CsrfGuard().valid(nonce, token)  # another process (a restart)
    assert not guard.valid(nonce, None) and not guard.valid(None, token)
    assert not guard.valid(nonce, "")


def test_the_data_filter() -> None:
    assert parse_data_filter("") is None
    assert parse_data_filter("customer.id=42, plan=pro") == {
        "customer": {"id": 42}, "plan": "pro"}
    assert parse_data_filter("flag=true, name=\"7\"") == {"flag": True, "name": "7"}
    assert parse_data_filter('{"a": [1]}') == {"a": [1]}
    for bad, message in [("plan", "write key=value"), ("=3", "write key=value"),
                         ("{nope", "not a JSON object"), ('{"a": 1', "not a JSON object")]:
        with pytest.raises(FilterError, match=message):
            parse_data_filter(bad)


def test_job_list_filters_name_the_bad_field_and_value() -> None:
    filters = JobFilters.of({"name": "report", "state": "failed", "page": "3"})
    assert filters.query(page=1) == {"name": "report", "state": "failed",
                                     "sort": "next_run_at", "order": "desc"}
    for query, message in [({"page": "0"}, "page must be a whole number from 1, got '0'"),
                           ({"state": "lost"}, "state must be one of"),
                           ({"sort": "data"}, "sort must be one of"),
                           ({"order": "up"}, "order must be asc or desc, got 'up'")]:
        with pytest.raises(FilterError, match=message):
            JobFilters.of(query)
