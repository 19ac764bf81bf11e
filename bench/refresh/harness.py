"""One run: a fake Zoho, one stored token, N SDK worker processes, and a watch on the table.

:class:`WorkerPool` keeps N spawned worker processes across runs (each pays
for the SDK import once) and replaces any that a run killed.
:func:`run_scenario` does one run and returns a :class:`RunResult`: what the
fake issued and counted, what each worker did, and what the token table held
over time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import requests
from sqlalchemy import select

from bench.refresh.model import NO_KILL, Go, Scenario, WorkerResult, token_digest
from zoho_token_store import SQLAlchemyTokenStore
from zoho_token_store._sdk import OAuthToken, UserSignature
from zoho_token_store.clock import db_epoch_ms
from zoho_token_store.fake_zoho import FakeZoho, FakeZohoStats
from zoho_token_store.refresh import RefreshPolicy

__all__ = ["Grant", "RunResult", "TableSample", "WorkerPool", "run_scenario"]

CLIENT_ID = "1000.REFRESHBENCH"
USER = "ada@example.com"

# How long a worker may take to say "ready" (importing the SDK, the first time).
READY_TIMEOUT = 180.0
# How long after the deadline a worker may take to report (its last call).
REPORT_GRACE = 60.0


@dataclass(frozen=True)
class Grant:
    """One answer of the fake's token endpoint, the access token as its digest."""

    at: float
    grant_type: str
    outcome: str
    access_digest: str | None


@dataclass(frozen=True)
class TableSample:
    """What the token row held at ``at``: recorded whenever the token or the lease changed."""

    at: float
    access_digest: str | None
    expiry_time: int | None
    issued_at: int | None
    lease_until: int | None
    db_now: int


@dataclass
class RunResult:
    """Everything one run observed; :mod:`bench.refresh.figures` reduces it to figures."""

    backend: str
    scenario: str
    workers: int
    lifetime: float
    duration: float
    policy: RefreshPolicy
    started: float  # the parent's grant exchange: the first token's life starts here
    deadline: float
    grants: list[Grant]
    stats: FakeZohoStats
    results: list[WorkerResult]
    dead: list[int]  # indexes of the workers that died during the run
    kill_at: float | None  # when the killed lease holder died, if one did
    table: list[TableSample]
    table_polls: int
    final_digest: str | None
    errors: list[str] = field(default_factory=list)  # workers' tracebacks


class _Worker:
    def __init__(self, index: int, process: BaseProcess, conn: Connection) -> None:
        self.index = index
        self.process = process
        self.conn = conn


class WorkerPool:
    """N worker processes (multiprocessing spawn) that run scenario after scenario.

    ``spares`` more processes start with them and wait: a worker that a run
    kills is replaced by a spare that has already imported the SDK, and a new
    spare starts in the background.
    """

    def __init__(self, size: int, spares: int = 1) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self.size = size
        self.workdir = tempfile.mkdtemp(prefix="zts-refresh-")
        self.kill_claim = self._ctx.Value("i", 0)
        self.kill_at = self._ctx.Value("d", 0.0)
        self._spawned = 0
        self._workers: list[_Worker] = [self._spawn() for _ in range(size)]
        self._spare_count = spares
        self._spares: list[_Worker] = [self._spawn() for _ in range(spares)]

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        from bench.refresh.worker import main  # the child imports it; so does the parent

        index, self._spawned = self._spawned, self._spawned + 1
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=main,
            args=(child_conn, index, self.workdir, self.kill_claim, self.kill_at),
            name=f"refresh-worker-{index}",
            daemon=True,
        )
        process.start()
        child_conn.close()  # so that a dead worker's pipe reads as EOF here
        return _Worker(index, process, parent_conn)

    def replace_dead(self) -> list[int]:
        """Put a spare (or a new process) in place of each dead worker; return their indexes."""
        replaced = []
        for slot, worker in enumerate(self._workers):
            if not worker.process.is_alive():
                worker.conn.close()
                self._spares = [spare for spare in self._spares if spare.process.is_alive()]
                self._workers[slot] = self._spares.pop(0) if self._spares else self._spawn()
                replaced.append(worker.index)
        while len(self._spares) < self._spare_count:
            self._spares.append(self._spawn())
        return replaced

    def close(self) -> None:
        for spare in self._spares:  # idle, or still importing: nothing to wait for
            spare.process.terminate()
        everyone = self._workers + self._spares
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in everyone:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _send_all(self, message: object) -> None:
        for worker in self._workers:
            worker.conn.send(message)

    def _receive(self, worker: _Worker, until: float) -> tuple[str, Any]:
        if not worker.conn.poll(max(0.0, until - time.time())):
            raise TimeoutError(f"worker {worker.process.name} did not answer in time")
        try:
            kind, payload = worker.conn.recv()
        except (EOFError, ConnectionResetError):
            worker.process.join(timeout=5)
            return "dead", worker.process.exitcode
        return str(kind), payload

    def prepare(self, scenario: Scenario) -> None:
        """Hand every worker the scenario and wait until each is ready to start."""
        self.replace_dead()
        self.kill_claim.value = 0
        self.kill_at.value = 0.0
        for slot, worker in enumerate(self._workers):
            worker.conn.send(dataclasses.replace(scenario, slot=slot))
        until = time.time() + READY_TIMEOUT
        problems = []
        for worker in self._workers:
            kind, payload = self._receive(worker, until)
            if kind != "ready":
                problems.append(f"{worker.process.name}: {kind}: {payload}")
        if problems:
            raise RuntimeError("workers failed to prepare:\n" + "\n".join(problems))

    def start(self, deadline: float) -> None:
        self._send_all(Go(deadline))

    def collect(self, deadline: float) -> tuple[list[WorkerResult], list[int], list[str]]:
        """Each worker's result, the indexes of the dead, and any worker's traceback."""
        results, dead, errors = [], [], []
        until = deadline + REPORT_GRACE
        for worker in self._workers:
            kind, payload = self._receive(worker, until)
            if kind == "done":
                results.append(payload)
            elif kind == "dead":
                dead.append(worker.index)
            else:
                errors.append(str(payload))
        return results, dead, errors


class _TableWatch(threading.Thread):
    """Polls the token row and keeps a sample whenever its token or lease changes."""

    def __init__(self, store: SQLAlchemyTokenStore, user_name: str, interval: float) -> None:
        super().__init__(name="table-watch", daemon=True)
        self.store = store
        self.user_name = user_name
        self.interval = interval
        self.samples: list[TableSample] = []
        self.polls = 0
        self._stop_event = threading.Event()

    def read(self) -> TableSample | None:
        table = self.store.table
        query = select(
            table.c.expiry_time,
            table.c.issued_at,
            table.c.refresh_lease_until,
            db_epoch_ms().label("db_now"),
        ).where(table.c.user_name == self.user_name)
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        # The access token through the store, which opens it if it is sealed.
        tokens = self.store.get_tokens()
        if row is None or not tokens:
            return None
        access = tokens[0].get_access_token()
        return TableSample(time.time(), token_digest(access) if access else None, *row)

    def run(self) -> None:
        last: tuple[Any, ...] | None = None
        while not self._stop_event.is_set():
            sample = self.read()
            self.polls += 1
            if sample is not None:
                key = (sample.access_digest, sample.expiry_time, sample.lease_until)
                if key != last:
                    self.samples.append(sample)
                    last = key
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _exchange_and_save(
    fake: FakeZoho, store: SQLAlchemyTokenStore, client_secret: str, grant_token: str
) -> None:
    """The one grant exchange, saved as the SDK saves it, so that every worker finds the row."""
    form = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": client_secret,
        "code": grant_token,
    }
    body = requests.post(fake.accounts_url, data=form, timeout=30).json()
    if "access_token" not in body:
        raise RuntimeError(f"the grant exchange failed: {body.get('error')}")
    token = OAuthToken(
        client_id=CLIENT_ID,
        client_secret=client_secret,
        grant_token=grant_token,
        refresh_token=body["refresh_token"],
        access_token=body["access_token"],
        # What the SDK names a user: "<email>:<organization id>" (see the demo).
        user_signature=UserSignature(f"{USER}:{fake.org_id}"),
        api_domain=body["api_domain"],
    )
    # The SDK's expiry: its own clock when the answer came, plus expires_in.
    token.set_expires_in(str(int(time.time() * 1000) + int(body["expires_in"]) * 1000))
    store.save_token(token)


def run_scenario(
    pool: WorkerPool,
    *,
    backend: str,
    url: str,
    table_name: str,
    scenario: str,
    policy: RefreshPolicy,
    lifetime: int,
    duration: float,
    pause: float = 0.02,
    reinit_every: int = 0,
    kill: str = NO_KILL,
    skew: float = 0.0,
    skewed_workers: int = 0,
    watch_interval: float = 0.02,
) -> RunResult:
    """One run of ``pool``'s workers against a new fake and an emptied table."""
    store = SQLAlchemyTokenStore(url, table_name=table_name, refresh=RefreshPolicy(enabled=False))
    try:
        store.delete_tokens()
        with FakeZoho(access_token_lifetime=lifetime) as fake:
            client_secret = secrets.token_hex(16)
            fake.add_client(CLIENT_ID, client_secret)
            grant_token = fake.issue_grant_token(CLIENT_ID, USER)
            pool.prepare(
                Scenario(
                    name=scenario,
                    url=url,
                    table_name=table_name,
                    policy=policy,
                    api_url=fake.api_url,
                    accounts_url=fake.accounts_url,
                    client_id=CLIENT_ID,
                    client_secret=client_secret,
                    grant_token=grant_token,
                    pause=pause,
                    reinit_every=reinit_every,
                    kill=kill,
                    skew=skew,
                    skewed_workers=skewed_workers,
                )
            )
            started = time.time()
            _exchange_and_save(fake, store, client_secret, grant_token)
            watch = _TableWatch(store, f"{USER}:{fake.org_id}", watch_interval)
            watch.start()
            deadline = time.time() + duration
            pool.start(deadline)
            try:
                results, dead, errors = pool.collect(deadline)
            finally:
                watch.stop()
            final = watch.read()
            grants = [
                Grant(
                    g.at,
                    g.grant_type,
                    g.outcome,
                    token_digest(g.access_token) if g.access_token else None,
                )
                for g in fake.grants
            ]
            stats = fake.stats()
        kill_at = pool.kill_at.value or None
        # Start replacements now: they import the SDK while the caller looks at the figures.
        pool.replace_dead()
        return RunResult(
            backend=backend,
            scenario=scenario,
            workers=pool.size,
            lifetime=lifetime,
            duration=duration,
            policy=policy,
            started=started,
            deadline=deadline,
            grants=grants,
            stats=stats,
            results=results,
            dead=dead,
            kill_at=kill_at,
            table=watch.samples,
            table_polls=watch.polls,
            final_digest=None if final is None else final.access_digest,
            errors=errors,
        )
    finally:
        store.delete_tokens()
        store.close()
