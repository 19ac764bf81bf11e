"""Benchmark of ``SQLAlchemyTokenStore`` against the raw DBAPI floor and the SDK's own stores.

Run ``python -m bench --help`` from the repository root. The modules, one job each:

- ``settings``: what one run measures (backends, table sizes, iteration budget).
- ``dataset``: the deterministic token rows, and the SDK tokens each operation passes.
- ``tables``: creating, filling and dropping the tables and the CSV file.
- ``contenders``: each store behind one interface, one callable per operation.
- ``floor``: the raw DBAPI floor (one persistent connection per driver).
- ``proxy``: a loopback TCP proxy that delays and counts what it forwards.
- ``counting``: statements, round trips and new connections per operation.
- ``timing``: the timed loop, and medians and p99.
- ``runner``: one whole run, stage by stage.
- ``targets``: the performance targets, checked against a run.
- ``report``: the text and Markdown tables, and the JSON.
- ``cli``: the command line (``__main__`` runs it).
- ``machine``: the machine and the versions the run used.
- ``plot``: find_token latency against table size (matplotlib).
- ``profiling``: one operation under pyinstrument or cProfile.

``bench.refresh`` is a separate benchmark (refresh coordination across
processes), with its own command line.
"""
