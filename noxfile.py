"""The compatibility matrix: Python 3.9 to 3.13, each with Zoho CRM SDK 8.0 and 7.0.

    pip install nox
    nox -l                       # list the sessions
    nox                          # all of them: the matrix, the wheel test, lint
    nox -s tests                 # the matrix only: 5 interpreters x 2 SDKs
    nox -s "tests-3.9(sdk7)"     # one cell
    nox -s tests -- -k refresh   # arguments after -- go to pytest

Each cell installs the package (a wheel, not the source tree) with one SDK
extra, never both: ``zohocrmsdk8-0`` and ``zohocrmsdk7-0`` provide the same
``zohocrmsdk`` import package. Every cell runs the whole suite on SQLite, a
file and in-memory. PostgreSQL and MariaDB also run in ``SERVER_CELLS``, one
interpreter per SDK, where a server that cannot be reached fails the session
(``ZTS_REQUIRE_BACKENDS=1``); their URLs are those of tests/conftest.py.
``ZTS_BACKENDS=sqlite,postgresql`` in the environment picks the backends of
every cell instead.

Interpreters are ``python3.X`` on PATH; pyenv's versions are put on PATH
first when they are there, so no pyenv shim or ``pyenv global`` is needed.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import nox

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
SDKS = {"sdk8": "zohocrmsdk8-0", "sdk7": "zohocrmsdk7-0"}
SQLITE_BACKENDS = "sqlite,sqlite_memory"
ALL_BACKENDS = "sqlite,sqlite_memory,postgresql,mariadb"
# The cells that also run on the database servers: the newest interpreter
# with the newest SDK, the oldest with the oldest.
SERVER_CELLS = {("3.13", "sdk8"), ("3.9", "sdk7")}
# mypy 2 runs on 3.10 or newer; the package's own floor is checked by the matrix.
LINT_PYTHON = "3.13"
# The wheel test, which runs the installed command line, on the oldest and the
# newest interpreter the command line supports (Typer 0.24 needs 3.10); CI
# runs it on its own. The library on 3.9 is covered by the tests-3.9 cells.
BUILD_PYTHONS = ["3.10", "3.13"]

nox.options.default_venv_backend = "venv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests", "build", "lint"]


def _put_pyenv_on_path() -> None:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for python in PYTHONS:
        # The newest patch release of each minor version, e.g. 3.9.18 for 3.9.
        candidates = sorted(
            (p for p in root.glob(f"{python}.*") if p.name.replace(".", "").isdigit()),
            key=lambda p: tuple(int(part) for part in p.name.split(".")),
        )
        if candidates and (candidates[-1] / "bin").is_dir():
            found.append(str(candidates[-1] / "bin"))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_put_pyenv_on_path()


def _install(session: nox.Session, sdk: str, *extras: str) -> None:
    session.install(f".[{','.join([sdk, *extras])}]")
    # Record which SDK the cell runs on, and prove the other one is absent.
    session.run(
        "python",
        "-c",
        "import sys\n"
        "from importlib.metadata import PackageNotFoundError, version\n"
        f"wanted, other = {SDKS[sdk]!r}, {SDKS[_other(sdk)]!r}\n"
        "try:\n"
        "    version(other)\n"
        "except PackageNotFoundError:\n"
        "    pass\n"
        "else:\n"
        "    sys.exit(f'{other} is installed beside {wanted}')\n"
        "print(f'Python {sys.version.split()[0]}, {wanted} {version(wanted)}')",
        silent=False,
    )


def _other(sdk: str) -> str:
    return next(name for name in SDKS if name != sdk)


@nox.session(python=PYTHONS)
@nox.parametrize("sdk", list(SDKS), ids=list(SDKS))
def tests(session: nox.Session, sdk: str) -> None:
    """The test suite on one interpreter and one SDK."""
    # The command line needs Typer 0.24, which needs Python 3.10: on 3.9 the
    # library is tested without it.
    cli = session.python != "3.9"
    _install(session, sdk, "postgres", "mysql", *(["cli"] if cli else []), "encryption", "test")
    no_cli = (
        []
        if cli
        else [
            f"--ignore={path}"
            for path in sorted([*glob.glob("tests/test_cli*.py"), "tests/test_adopt.py"])
        ]
    )
    on_servers = (session.python, sdk) in SERVER_CELLS
    backends = os.environ.get("ZTS_BACKENDS") or (ALL_BACKENDS if on_servers else SQLITE_BACKENDS)
    env = {"ZTS_BACKENDS": backends}
    if on_servers and "ZTS_BACKENDS" not in os.environ:
        env["ZTS_REQUIRE_BACKENDS"] = "1"
    session.log(f"backends: {backends}")
    session.run(
        "pytest",
        "-n",
        "2",
        # The wheel test has a session of its own.
        "--ignore=tests/test_build.py",
        *no_cli,
        *session.posargs,
        env=env,
    )


@nox.session(python=BUILD_PYTHONS)
def build(session: nox.Session) -> None:
    """Build the sdist and wheel, and try the wheel in a clean virtual environment."""
    _install(session, "sdk8", "cli", "encryption", "test")
    session.run("pytest", "tests/test_build.py", *session.posargs)


@nox.session(python=LINT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict, as ``make lint`` runs them."""
    _install(session, "sdk8", "cli", "encryption", "test")
    session.run("ruff", "check")
    session.run("ruff", "format", "--check")
    session.run("mypy")
