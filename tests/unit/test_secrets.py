"""The one masking rule (agenda_decl._secrets): passwords masked where they sit in connection
strings and free text, never by searching for them; values from the environment printed as
the file wrote them."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from agenda_decl._secrets import EnvText, mask_text, mask_url, shown


@pytest.mark.parametrize(("url", "printed"), [
    ("postgresql://postgres:postgres@127.0.0.1/db", "postgresql://postgres:***@127.0.0.1/db"),
    ("redis://:redis@redis:6379/0", "redis://:***@redis:6379/0"),
    ("postgresql://app:p:w@[::1]:5432/db", "postgresql://app:***@[::1]:5432/db"),
    ("mongodb://app:p%40ss@h1,h2/jobs?replicaSet=rs", "mongodb://app:***@h1,h2/jobs?replicaSet=rs"),
    ("postgresql://app@db/jobs?sslmode=require&password=pw&x=1",
     "postgresql://app@db/jobs?sslmode=require&password=***&x=1"),
    ("postgresql://app@db/jobs", "postgresql://app@db/jobs"),
    ("postgresql://app:@db/jobs", "postgresql://app:@db/jobs"),
    ("redis://db:6379/0?name=a@b", "redis://db:6379/0?name=a@b"),
    ("host=db user=postgres password=postgres dbname=postgres",
     "host=db user=postgres password=*** dbname=postgres"),
    ("host=db password='it\\'s a \\\\ secret' dbname=jobs", "host=db password=*** dbname=jobs"),
    ("host=db sslpassword = key-pw port=5432", "host=db sslpassword = *** port=5432"),
])
def test_a_connection_string_prints_with_only_its_password_masked(url: str, printed: str) -> None:
    assert mask_url(url) == printed
    assert mask_url(printed) == printed  # masking twice changes nothing


def test_free_text_is_masked_where_passwords_sit_and_nowhere_else() -> None:
    text = ('connection to postgresql://postgres:postgres@127.0.0.1/db failed: FATAL: password '
            'authentication failed for user "postgres" (conninfo "host=x password=postgres")')
    assert mask_text(text) == (
        'connection to postgresql://postgres:***@127.0.0.1/db failed: FATAL: password '
        'authentication failed for user "postgres" (conninfo "host=x password=***")')


def test_an_env_text_is_its_value_but_prints_as_its_reference() -> None:
    value = EnvText("s3cret", "Bearer ${TOKEN}")
    assert value == "s3cret" and hash(value) == hash("s3cret")
    assert (str(value), f"{value}", json.dumps(value)) == ("s3cret", "s3cret", '"s3cret"')
    assert repr(value) == f"{value!r}" == "'Bearer ${TOKEN}'"
    assert shown(value) == "Bearer ${TOKEN}" and shown("plain") == "plain"
    for copied in (copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert (copied, repr(copied)) == ("s3cret", "'Bearer ${TOKEN}'")
    assert mask_url(EnvText("redis://h/0", "${URL}")) == "redis://h/0"  # a connection string
