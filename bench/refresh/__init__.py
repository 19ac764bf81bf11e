"""Single-flight token refresh, measured: N processes of the real SDK share one stored token.

Run from the repository root::

    python -m bench.refresh --workers 32 --backend postgresql
    python -m bench.refresh --workers 32 --backend all --kill --plot docs/refresh-coordination.png

Each run starts a :class:`~zoho_token_store.fake_zoho.FakeZoho` in this
process, exchanges one grant token and saves the token, then lets N worker
processes (``multiprocessing`` spawn) call ``GET /crm/v8/Leads`` through the
SDK and one ``SQLAlchemyTokenStore`` table until the deadline, across several
expiries of short-lived access tokens. The same workers run every scenario:
coordinated (the store's refresh lease), uncoordinated
(``RefreshPolicy(enabled=False)``) and, with ``--kill``, coordinated with the
first lease holder killed (SIGKILL) before it refreshes.

The modules, one job each:

- ``model``: what a run is told and what it brings back (picklable dataclasses).
- ``worker``: the worker process: the SDK, an instrumented store, the call loop.
- ``harness``: the worker pool, one run (fake, grant exchange, table observer).
- ``figures``: refreshes per generation, throttling, failures, lost saves.
- ``plot``: refresh calls over time, coordinated against uncoordinated.
- ``__main__``: the command line.

``tests/test_refresh_coordination.py`` runs the same harness with 4 workers.
"""
