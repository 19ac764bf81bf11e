"""The offline demo: it runs, runs again on the same database, and prints no secret."""

from __future__ import annotations

import re

import pytest

from zoho_token_store import SQLAlchemyTokenStore
from zoho_token_store.demo import main

# Each run waits about 5 s for its first access token to come due.
pytestmark = pytest.mark.slow


def test_the_demo_runs_twice_on_one_database_and_prints_no_secret(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'demo.db'}"

    assert main(["--url", url]) == 0
    assert main(["--url", url]) == 0

    out = capsys.readouterr().out
    for line in (
        "  grant exchanges: 1, refreshes: 0",
        "  refreshes: 1; refresh token kept: True",
        "  grant exchanges: 2; ada.demo@example.com's row untouched: True",
    ):
        assert out.count(line + "\n") == 2
    # Tokens are "1000." and two runs of 32 hex digits, the client secret one:
    # no run of 16 may appear (row ids are UUIDs, whose longest run is 12).
    assert re.findall(r"[0-9a-f]{16}", out) == []
    store = SQLAlchemyTokenStore(url)
    names = sorted(t.get_user_signature().get_name() for t in store.get_tokens())
    store.close()
    assert names == ["ada.demo@example.com:80001234", "grace.demo@example.com:80001234"]


def test_the_demo_refuses_an_in_memory_database(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--url", "sqlite://"])

    assert exit_info.value.code == 2
    assert "an in-memory SQLite database cannot be shared by two store instances" in (
        capsys.readouterr().err
    )
