"""The distributions: an sdist that builds the wheel, and a wheel that works on its own.

``python -m build`` makes the sdist, then the wheel from the sdist, so a file
the sdist forgets fails here too. The wheel is installed with ``[sdk8,cli]``
into one clean virtual environment in a temporary directory, and run from
there, away from the source tree: the packaged migrations (through the command
line and through :mod:`zoho_token_store.migrate`) and the demo. Pip's cache is
reused, so after a first run this takes about half a minute.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "zoho_token_store"
TIMEOUT = 300
EXTRAS = {"cli", "encryption", "mysql", "postgres", "sdk7", "sdk8"}


def _version() -> str:
    found = re.search(r'^__version__ = "([^"]+)"$', (PACKAGE / "__init__.py").read_text(), re.M)
    assert found, "src/zoho_token_store/__init__.py defines no __version__"
    return found.group(1)


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(REPO / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built from this source tree."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, REPO, cwd=out)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_the_wheel_carries_the_package_its_migrations_and_no_tests(dist: dict[str, Path]) -> None:
    version = _version()
    assert dist["wheel"].name == f"zoho_token_store-{version}-py3-none-any.whl"
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = HeaderParser().parsestr(
            wheel.read(f"zoho_token_store-{version}.dist-info/METADATA").decode()
        )
        entry_points = wheel.read(f"zoho_token_store-{version}.dist-info/entry_points.txt")

    modules = {f"zoho_token_store/{p.name}" for p in PACKAGE.glob("*.py")}
    assert {n for n in names if re.fullmatch(r"zoho_token_store/[^/]+\.py", n)} == modules
    assert "zoho_token_store/py.typed" in names
    migrations = {
        f"zoho_token_store/migrations/{p.relative_to(REPO / 'migrations').as_posix()}"
        for p in (REPO / "migrations").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "zoho_token_store/migrations/env.py" in migrations
    assert any(m.startswith("zoho_token_store/migrations/versions/0001_") for m in migrations)
    assert migrations <= names
    assert not [n for n in names if re.search(r"(^|/)(tests?/|test_[^/]*\.py$|conftest\.py$)", n)]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert f"zoho_token_store-{version}.dist-info/licenses/LICENSE" in names

    assert metadata["Version"] == version
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.9"
    assert set(metadata.get_all("Provides-Extra") or []) >= EXTRAS
    assert {"Source", "Documentation", "Issues", "Changelog"} <= {
        url.split(",")[0] for url in metadata.get_all("Project-URL") or []
    }
    assert "Typing :: Typed" in (metadata.get_all("Classifier") or [])
    assert b"zoho-token-store = zoho_token_store.cli:main" in entry_points


def test_the_sdist_carries_what_the_wheel_and_the_tests_need(dist: dict[str, Path]) -> None:
    root = f"zoho_token_store-{_version()}"
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.removeprefix(root + "/") for name in sdist.getnames()}
    for wanted in (
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "alembic.ini",
        "noxfile.py",
        "migrations/env.py",
        "src/zoho_token_store/py.typed",
        "tests/conftest.py",
    ):
        assert wanted in names
    assert any(n.startswith("migrations/versions/0001_") for n in names)
    assert not [n for n in names if n.startswith(".venv/") or n.endswith((".db", ".pyc"))]


@pytest.fixture(scope="module")
def installed(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtual environment, outside the repository, with the wheel and [sdk8,cli]."""
    home = tmp_path_factory.mktemp("venv")
    assert REPO not in home.parents
    venv.EnvBuilder(with_pip=True).create(home / "env")
    python = _scripts(home / "env") / ("python.exe" if os.name == "nt" else "python")
    _run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        # Compiling the SDK's 1,700 modules up front would double the install time.
        "--no-compile",
        f"{dist['wheel']}[sdk8,cli]",
        cwd=home,
        env=_clean_env(),
    )
    return python


def _scripts(env: Path) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin")


def _clean_env() -> dict[str, str]:
    # Nothing that points back at the source tree or at another database.
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "ZOHO_TOKEN_STORE_URL"):
        env.pop(name, None)
    return env


def test_the_installed_wheel_migrates_reports_and_runs_the_demo(
    installed: Path, tmp_path: Path
) -> None:
    head, env = _head(), _clean_env()
    work = tmp_path / "work"
    work.mkdir()

    # The package and its migrations come from the virtual environment.
    where = _run(
        installed,
        "-c",
        "import zoho_token_store as z; from zoho_token_store import migrate\n"
        "print(z.__file__); print(migrate.migrations_path()); print(z.__version__)",
        cwd=work,
        env=env,
    ).splitlines()
    env_dir = installed.parents[1]
    module, migrations, version = Path(where[0]), Path(where[1]), where[2]
    assert module.is_relative_to(env_dir)
    assert migrations == module.parent / "migrations"
    assert version == _version()

    # The command line upgrades a fresh database and reports the head.
    cli = _scripts(installed.parents[1]) / "zoho-token-store"
    url = f"sqlite:///{work / 'cli.db'}"
    assert _run(cli, "--url", url, "current", cwd=work, env=env).strip() == "None"
    assert _run(cli, "--url", url, "upgrade", cwd=work, env=env).strip() == (
        f"oauthtoken: at revision {head}"
    )
    assert _run(cli, "--url", url, "current", cwd=work, env=env).strip() == head

    # So does the Python API.
    url = f"sqlite:///{work / 'api.db'}"
    printed = _run(
        installed,
        "-c",
        "import sys; from zoho_token_store import migrate\n"
        "migrate.upgrade(sys.argv[1]); print(migrate.current(sys.argv[1]), migrate.head())",
        url,
        cwd=work,
        env=env,
    )
    assert printed.split() == [head, head]

    # The offline demo, with the real SDK, on a third fresh database.
    url = f"sqlite:///{work / 'demo.db'}"
    out = _run(installed, "-m", "zoho_token_store.demo", "--url", url, cwd=work, env=env)
    assert "Schema migrated to head." in out
    assert "refresh token kept: True" in out
