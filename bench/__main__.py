"""``python -m bench``: see ``python -m bench --help`` and bench/cli.py."""

if __name__ == "__main__":
    # Imported here, not at the top: the proxy's child processes start by
    # importing this module, and need none of the benchmark.
    from bench.cli import main

    raise SystemExit(main())
