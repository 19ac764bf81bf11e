"""The ``zoho-token-store`` command line: the console script's entry point.

Needs the ``[cli]`` extra (Typer and Rich)::

    pip install 'zoho-token-store[cli]'
    zoho-token-store --url postgresql://app@db/app upgrade

The app itself is in cli_app.py (global options and migrations), with the
token commands in cli_tokens.py, import and export in cli_transfer.py and the
health checks in cli_doctor.py.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return its exit code (0 ok, 1 failure, 2 usage)."""
    try:
        from zoho_token_store.cli_app import app
    except ImportError as exc:
        if exc.name not in ("typer", "rich"):
            raise
        print(
            "zoho-token-store: the command line needs its extra: "
            "pip install 'zoho-token-store[cli]'",
            file=sys.stderr,
        )
        return 1
    try:
        app(args=argv, prog_name="zoho-token-store")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
