"""The ``zoho-token-store`` command line: global options, help, exit codes, migrations, errors.

Commands run through Typer's ``CliRunner`` on the app the console script
runs, and a few through the installed console script itself, in a subprocess.
"""

# The shared fixtures are imported by name, and pytest passes them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from conftest import ENCRYPTION_KEY
from test_cli_support import CliDb, _cli_backend, bare_db, cli_db, insert_rows, invoke  # noqa: F401
from zoho_token_store import SchemaMissingError, migrate
from zoho_token_store.admin import TokenTable
from zoho_token_store.cli import main

SCRIPT = Path(sys.executable).parent / "zoho-token-store"
COMMANDS = [
    "upgrade",
    "downgrade",
    "current",
    "history",
    "list",
    "show",
    "delete",
    "purge",
    "import",
    "export",
    "doctor",
    "encrypt",
    "rotate-key",
    "decrypt",
]


def run_script(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_TOKEN_STORE_")}
    environment.update(env or {})
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, env=environment, capture_output=True, text=True, check=False
    )


# Help and usage -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help_with_examples(command: str) -> None:
    result = invoke(None, None, command, "--help")
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.stdout
    assert f"zoho-token-store {command}" in result.stdout or f" {command} " in result.stdout


def test_the_top_level_help_lists_every_command_and_the_exit_codes() -> None:
    result = invoke(None, None, "--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command} " in result.stdout
    assert "Exit codes: 0 ok, 1 failure, 2 usage error." in result.stdout
    assert "ZOHO_TOKEN_STORE_URL" in result.stdout


def test_no_command_shows_the_help_as_a_usage_error() -> None:
    result = invoke(None, None)
    assert result.exit_code == 2
    assert "Usage: zoho-token-store" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "not a url", "list"], "invalid database URL"),
        (["--table", "x; drop table y", "list"], "invalid table name 'x; drop table y'"),
        (["nosuchcommand"], "No such command"),
        (["delete"], "give either a token ID or --user NAME"),
        (["delete", "1", "--user", "ada"], "give either a token ID or --user NAME"),
        (["purge"], "give either --expired-before DURATION or --all"),
        (["purge", "--all", "--expired-before", "1d"], "give either --expired-before"),
        (["purge", "--expired-before", "a year"], "'a year' is not a duration"),
        (["import"], "give either a FILE or --from-dbstore URL"),
        (["downgrade"], "Missing argument"),
        (["upgrade", "9999"], f"unknown revision '9999'; the head is {migrate.head()}"),
        (["downgrade", "9999"], f"unknown revision '9999'; the head is {migrate.head()}"),
        (["purge", "--expired-before", "999999999999999d"], "is out of range"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(tmp_path: Path, args: list[str], message: str) -> None:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    argv = args if args[0].startswith("--") else ["--url", url, *args]
    result = invoke(None, None, *argv)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "usage.db").exists()


def test_a_url_password_is_never_echoed_back() -> None:
    result = invoke("postgresql://app:s3cr3t-pw@127.0.0.1:1/app", None, "list")
    assert result.exit_code == 1
    assert "s3cr3t-pw" not in result.output
    assert result.stderr.count("\n") == 1


# Failures: one line, exit 1, a traceback only with --debug -------------------------------------


def test_an_unreachable_database_fails_with_one_line() -> None:
    result = invoke("postgresql://postgres@127.0.0.1:1/test", None, "list")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("zoho-token-store: list failed: OperationalError: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def unreachable_url(name: str, tmp_path: Path) -> str:
    """A URL of backend ``name`` that cannot be opened (for SQLite, a directory)."""
    return {
        "sqlite": f"sqlite:///{tmp_path}",
        "postgresql": "postgresql://postgres@127.0.0.1:1/test",
        "mariadb": "mariadb://root@127.0.0.1:1/test",
    }[name]


@pytest.mark.parametrize("command", ["upgrade", "downgrade base", "current"])
@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mariadb"])
def test_a_migration_command_that_cannot_reach_the_database_names_itself(
    tmp_path: Path, name: str, command: str
) -> None:
    result = invoke(unreachable_url(name, tmp_path), None, *command.split())
    assert (result.exit_code, result.stdout) == (1, "")
    verb = command.split()[0]
    assert result.stderr.startswith(f"zoho-token-store: {verb} failed: OperationalError: ")
    assert result.stderr.count("\n") == 1


def test_debug_adds_the_traceback() -> None:
    result = invoke("postgresql://postgres@127.0.0.1:1/test", None, "--debug", "list")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("zoho-token-store: list failed")


@pytest.mark.parametrize(
    "command", ["list", "show 1", "delete 1", "downgrade base", "doctor", "export x.csv"]
)
def test_a_missing_sqlite_file_is_reported_and_not_created(tmp_path: Path, command: str) -> None:
    path = tmp_path / "absent.db"
    result = invoke(f"sqlite:///{path}", None, *command.split())
    assert result.exit_code == 1
    assert f"no SQLite database at '{path}'" in result.output
    assert not path.exists()


def test_current_on_a_missing_sqlite_file_is_none_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    result = invoke(f"sqlite:///{path}", None, "current")
    assert (result.exit_code, result.stdout) == (0, "None\n")
    assert not path.exists()


@pytest.mark.parametrize(
    "command",
    [
        "list",
        "show 1",
        "delete 1",
        "delete --user ada",
        "purge --all --yes",
        "export {tmp}/o.csv",
        "import {tmp}/i.csv",
    ],
)
def test_a_missing_table_is_reported_by_name(bare_db: CliDb, tmp_path: Path, command: str) -> None:
    migrate.upgrade(bare_db.url, table_name=bare_db.table)  # the database exists
    (tmp_path / "i.csv").write_text("1,ada,c,s,1000.r,1000.a,,1,https://x,\n")
    missing = f"{bare_db.table}_absent"
    result = invoke(bare_db.url, missing, *command.format(tmp=tmp_path).split())
    assert result.exit_code == 1
    assert f"the table '{missing}' does not exist in " in result.stderr
    assert "create it with `zoho-token-store upgrade`" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "o.csv").exists()


# Another application's tables, as a wrong --table can name them: one shares
# no column with a token table, the other shares id and user_name.
FOREIGN_TABLES = {
    "customers": (
        "CREATE TABLE {table} (name varchar(50), email varchar(100))",
        [{"name": "Ada", "email": "ada@example.com"}, {"name": "Bob", "email": "bob@example.com"}],
    ),
    "other_app": (
        "CREATE TABLE {table} (id varchar(10) NOT NULL, user_name varchar(50), "
        "secret varchar(50), PRIMARY KEY (id))",
        [
            {"id": "1", "user_name": "ada", "secret": "s1"},
            {"id": "2", "user_name": "bob", "secret": "s2"},
        ],
    ),
}


def foreign_table(db: CliDb, shape: str) -> list[tuple[str, ...]]:
    """Make ``db.table`` a table of another application; return its rows."""
    ddl, rows = FOREIGN_TABLES[shape]
    engine = db.engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(ddl.format(table=db.table)))
        insert_rows(engine, db.table, rows)
    finally:
        engine.dispose()
    return rows_of(db)


def rows_of(db: CliDb) -> list[tuple[str, ...]]:
    engine = db.engine()
    try:
        with engine.connect() as conn:
            result = conn.execute(text(f"SELECT * FROM {db.table}"))  # noqa: S608  # test names
            return sorted(tuple(row) for row in result)
    finally:
        engine.dispose()


def table_exists(db: CliDb) -> bool:
    engine = db.engine()
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table(db.table)
    finally:
        engine.dispose()


def where(db: CliDb) -> str:
    engine = db.engine()
    try:
        return engine.url.render_as_string(hide_password=True)
    finally:
        engine.dispose()


@pytest.mark.parametrize("shape", sorted(FOREIGN_TABLES))
@pytest.mark.parametrize(
    "command",
    [
        "list",
        "purge --all --yes",
        "purge --all --dry-run",
        "purge --expired-before 1s",
        "delete 1",
        "delete --user ada",
        "import {tmp}/i.csv",
        "encrypt",
        "rotate-key",
        "decrypt",
    ],
)
def test_every_command_that_writes_refuses_another_applications_table_as_list_does(
    bare_db: CliDb, tmp_path: Path, shape: str, command: str
) -> None:
    before = foreign_table(bare_db, shape)
    (tmp_path / "i.csv").write_text("1,ada,c,s,1000.r,1000.a,,1,https://x,\n")
    args = command.format(tmp=tmp_path).split()
    result = invoke(
        bare_db.url, bare_db.table, *args, env={"ZOHO_TOKEN_STORE_KEYS": ENCRYPTION_KEY}
    )
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"zoho-token-store: {args[0]}: the table '{bare_db.table}' in {where(bare_db)} exists "
        "but was not created by these migrations: check --table, or run "
        "`zoho-token-store upgrade` to adopt a table of the SDK's DBStore\n"
    )
    assert rows_of(bare_db) == before


@pytest.mark.parametrize("shape", sorted(FOREIGN_TABLES))
def test_token_table_deletes_refuse_another_applications_table_without_a_check_first(
    bare_db: CliDb, shape: str
) -> None:
    before = foreign_table(bare_db, shape)
    refusal = (
        f"the table '{bare_db.table}' in {where(bare_db)} exists but was not created by these "
        "migrations: check --table, or run `zoho-token-store upgrade` to adopt a table of the "
        "SDK's DBStore"
    )
    engine = bare_db.engine()
    try:
        with pytest.raises(SchemaMissingError) as by_id:
            TokenTable(engine, bare_db.table).delete(["1", "2"])
        with pytest.raises(SchemaMissingError) as every_row:
            TokenTable(engine, bare_db.table).delete_all()
    finally:
        engine.dispose()
    assert by_id.value.error_message == f"delete: {refusal}"
    assert every_row.value.error_message == f"purge: {refusal}"
    assert rows_of(bare_db) == before


def test_a_table_behind_the_package_is_reported_with_its_revision(bare_db: CliDb) -> None:
    migrate.upgrade(bare_db.url, "0001", table_name=bare_db.table)
    result = bare_db.invoke("list")
    assert result.exit_code == 1
    assert (
        f"list: the table '{bare_db.table}' in " in result.stderr
        and f"is at revision 0001, and this package needs {migrate.head()}" in result.stderr
    )


# Migrations -----------------------------------------------------------------------------------


def test_upgrade_current_downgrade_and_history(bare_db: CliDb) -> None:
    head = migrate.head()
    assert bare_db.invoke("current").stdout == "None\n"
    upgraded = bare_db.invoke("upgrade")
    assert (upgraded.exit_code, upgraded.stdout) == (0, f"{bare_db.table}: at revision {head}\n")
    assert bare_db.invoke("current").stdout == f"{head}\n"

    down = bare_db.invoke("downgrade", "0001")
    assert (down.exit_code, down.stdout) == (0, f"{bare_db.table}: at revision 0001\n")
    assert bare_db.invoke("upgrade", "0002").stdout == f"{bare_db.table}: at revision 0002\n"
    assert bare_db.invoke("upgrade").stdout == f"{bare_db.table}: at revision {head}\n"

    history = bare_db.invoke("history")
    assert history.exit_code == 0
    lines = history.stdout.splitlines()
    assert lines[0].endswith(f" -> {head} (head), " + lines[0].split(", ", 1)[1])
    assert "0001 -> 0002, Add the refresh lease columns." in lines or (
        "0001 -> 0002 (head), Add the refresh lease columns." in lines
    )
    assert lines[-1] == "<base> -> 0001, Create the token table."

    base = bare_db.invoke("downgrade", "base")
    assert (base.exit_code, base.stdout) == (0, f"{bare_db.table}: at revision None\n")
    assert migrate.current(bare_db.url, table_name=bare_db.table) is None


@pytest.mark.parametrize(
    "args", [["upgrade", "9999"], ["upgrade", "nosuch+1"], ["downgrade", "9999"]]
)
def test_an_unknown_revision_is_a_usage_error_naming_it_and_the_head(
    bare_db: CliDb, args: list[str]
) -> None:
    result = bare_db.invoke(*args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for 'REVISION': unknown revision '{args[1]}'; the head is "
        f"{migrate.head()} (`zoho-token-store history` lists them all)"
    )
    assert migrate.current(bare_db.url, table_name=bare_db.table) is None
    assert not table_exists(bare_db)


def test_a_table_at_a_revision_the_package_lacks_still_fails_with_exit_1(bare_db: CliDb) -> None:
    # A newer version of the package recorded 0005: the database is the
    # problem, not the revision asked for.
    migrate.upgrade(bare_db.url, table_name=bare_db.table)
    engine = bare_db.engine()
    try:
        with engine.begin() as conn:
            version_table = migrate.version_table_name(bare_db.table)
            conn.execute(text(f"UPDATE {version_table} SET version_num = '0005'"))  # noqa: S608
    finally:
        engine.dispose()
    for args in (["upgrade"], ["downgrade", "0001"]):
        result = bare_db.invoke(*args)
        assert (result.exit_code, result.stdout) == (1, "")
        assert result.stderr == "zoho-token-store: Can't locate revision identified by '0005'\n"


# The console script itself ----------------------------------------------------------------------


def test_the_console_script_runs_and_passes_on_exit_codes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'script.db'}"
    assert (
        run_script("--url", url, "upgrade", cwd=tmp_path).stdout
        == f"oauthtoken: at revision {migrate.head()}\n"
    )
    listed = run_script("--url", url, "list", "--json", cwd=tmp_path)
    assert (listed.returncode, listed.stdout) == (0, "[]\n")
    unknown = run_script("--url", url, "show", "nope", cwd=tmp_path)
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "zoho-token-store: show: no token with id 'nope' in table 'oauthtoken'\n",
    )
    assert run_script("--url", url, "purge", cwd=tmp_path).returncode == 2


def test_the_url_comes_from_the_environment_then_the_default_file(tmp_path: Path) -> None:
    from_env = tmp_path / "from_env.db"
    result = run_script(
        "upgrade", cwd=tmp_path, env={"ZOHO_TOKEN_STORE_URL": f"sqlite:///{from_env}"}
    )
    assert result.returncode == 0 and from_env.exists()
    assert not (tmp_path / "zohooauth.db").exists()

    result = run_script("upgrade", cwd=tmp_path)
    assert result.returncode == 0
    assert (tmp_path / "zohooauth.db").exists()


def test_main_returns_the_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'main.db'}"
    assert main(["--url", url, "upgrade"]) == 0
    assert main(["--url", url, "show", "x"]) == 1
    assert main(["--url", url, "purge"]) == 2
    assert main(["--url", url, "list", "--json"]) == 0
    assert capsys.readouterr().out.endswith("[]\n")
