"""The worker process: the real SDK, a store that reports what it decides, and a call loop.

A worker lives across runs: it imports the SDK once (seconds of CPU), then
takes :class:`~bench.refresh.model.Scenario` after scenario from its pipe.
For each one it answers "ready", waits for :class:`~bench.refresh.model.Go`,
initializes the SDK with a fresh ``OAuthToken`` (client id, secret and the
grant token the parent has already exchanged, so the store finds the row
through ``find_token``), then calls ``GET /crm/v8/Leads`` until the deadline
and sends back a :class:`~bench.refresh.model.WorkerResult`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from zohocrmsdk.src.com.zoho.api.authenticator import oauth_token as sdk_oauth_token
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api import ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.record import GetRecordsParam, RecordOperations
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig

from bench.refresh.model import (
    KILL_AFTER_LEASE,
    KILL_BEFORE_SAVE,
    OUTCOME_INVALID_TOKEN,
    OUTCOME_OK,
    OUTCOME_REFRESH_DENIED,
    OUTCOME_STORE_ERROR,
    Go,
    Scenario,
    WorkerResult,
    token_digest,
)
from zoho_token_store import SQLAlchemyTokenStore
from zoho_token_store.errors import TokenStoreError
from zoho_token_store.fake_zoho import ACCESS_DENIED
from zoho_token_store.store import DUE

__all__ = ["main"]


class _Recorder:
    """Records what the store decides, and kills this process where the scenario says."""

    def __init__(
        self,
        scenario: Scenario,
        result: WorkerResult,
        kill_claim: Synchronized[int],
        kill_at: Synchronized[float],
    ) -> None:
        self.kill = scenario.kill
        self.result = result
        self.kill_claim = kill_claim
        self.kill_at = kill_at
        self.holding = False  # the store told us to refresh, and we have not saved yet

    def leased(self, method: str) -> None:
        self.result.leases.append((time.time(), method))
        self.holding = True
        if self.kill == KILL_AFTER_LEASE:
            self._die_if_first()

    def saving(self) -> None:
        if self.kill == KILL_BEFORE_SAVE and self.holding:
            self._die_if_first()

    def saved(self, access_token: object, ok: bool) -> None:
        shown = token_digest(access_token) if isinstance(access_token, str) else ""
        self.result.saves.append((time.time(), shown, ok))
        self.holding = False

    def _die_if_first(self) -> None:
        # Only the first lease holder of the run dies: the next must take over.
        with self.kill_claim.get_lock():
            if self.kill_claim.value:
                return
            self.kill_claim.value = self.result.index + 1
            self.kill_at.value = time.time()
        os.kill(os.getpid(), signal.SIGKILL)


class InstrumentedStore(SQLAlchemyTokenStore):
    """The store as an app would configure it, reporting leases and saves to a recorder."""

    def __init__(self, scenario: Scenario, recorder: _Recorder) -> None:
        super().__init__(scenario.url, table_name=scenario.table_name, refresh=scenario.policy)
        self._recorder = recorder

    def find_token(self, token: Any) -> Any:
        found = super().find_token(token)
        if found is not None and found.get_expires_in() == DUE:
            self._recorder.leased("find_token")
        return found

    def find_token_by_id(self, id: str) -> Any:
        found = super().find_token_by_id(id)
        if found is not None and found.get_expires_in() == DUE:
            self._recorder.leased("find_token_by_id")
        return found

    def save_token(self, token: Any) -> None:
        self._recorder.saving()
        try:
            super().save_token(token)
        except Exception:
            self._recorder.saved(token.get_access_token(), ok=False)
            raise
        self._recorder.saved(token.get_access_token(), ok=True)


def _outcome(exc: BaseException, result: WorkerResult) -> str:
    if isinstance(exc, TokenStoreError):
        kind = OUTCOME_STORE_ERROR
    elif isinstance(exc, SDKException) and ACCESS_DENIED in str(exc.error_message):
        kind = OUTCOME_REFRESH_DENIED
    elif isinstance(exc, SDKException):
        kind = f"sdk_error:{exc.code}"
    else:
        kind = f"error:{type(exc).__name__}"
    message = exc.error_message if isinstance(exc, SDKException) else str(exc)
    result.errors.setdefault(kind, str(message)[:300])
    return kind


class _SkewedTime:
    """The ``time`` module, with ``time()`` ``skew`` seconds off: a drifted machine clock."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _set_sdk_clock(skew: float) -> None:
    # OAuthToken.get_token and parse_response read the clock as time.time()
    # through their module's `time`: only the SDK's expiry arithmetic drifts.
    sdk_oauth_token.time = _SkewedTime(skew) if skew else time


class _Session:
    """One scenario in this worker."""

    def __init__(
        self,
        scenario: Scenario,
        result: WorkerResult,
        workdir: Path,
        kill_claim: Synchronized[int],
        kill_at: Synchronized[float],
    ) -> None:
        self.scenario = scenario
        self.result = result
        self.resources = workdir / "resources"
        self.resources.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "sdk.log"
        self.store = InstrumentedStore(scenario, _Recorder(scenario, result, kill_claim, kill_at))
        self.params = ParameterMap()
        self.params.add(GetRecordsParam.fields, "Last_Name,Email")
        _reset_sdk()
        _set_sdk_clock(scenario.skew if scenario.slot < scenario.skewed_workers else 0.0)

    def _token(self) -> Any:
        s = self.scenario
        return OAuthToken(
            client_id=s.client_id, client_secret=s.client_secret, grant_token=s.grant_token
        )

    def _timed_init(self, start: Any) -> None:
        began = time.time()
        try:
            start()
            outcome = OUTCOME_OK
        except Exception as exc:  # recorded, like a failed call
            outcome = _outcome(exc, self.result)
        self.result.inits.append((began, time.time(), outcome))

    def run(self, go: Go) -> None:
        s = self.scenario
        environment = DataCenter.Environment(s.api_url, s.accounts_url, s.api_url)
        self._timed_init(
            lambda: Initializer.initialize(
                environment=environment,
                token=self._token(),
                store=self.store,
                sdk_config=SDKConfig(auto_refresh_fields=False),
                resource_path=str(self.resources),
                logger=Logger.get_instance(Logger.Levels.WARNING, str(self.log_path)),
            )
        )
        done = 0
        while time.time() < go.deadline:
            if s.reinit_every and done and done % s.reinit_every == 0:
                self._timed_init(lambda: Initializer.switch_user(token=self._token()))
            self._call()
            done += 1
            if s.pause:
                time.sleep(s.pause)

    def _call(self) -> None:
        began = time.time()
        try:
            response = RecordOperations("Leads").get_records(self.params)
            status = None if response is None else response.get_status_code()
            if status == 200:
                outcome = OUTCOME_OK
            elif status == 401 and "INVALID_TOKEN" in _error_code(response):
                outcome = OUTCOME_INVALID_TOKEN
            else:
                outcome = f"http_{status}"
        except Exception as exc:
            outcome = _outcome(exc, self.result)
        self.result.calls.append((began, time.time(), outcome))

    def close(self) -> None:
        self.store.close()
        _reset_sdk()
        _set_sdk_clock(0.0)


def _error_code(response: Any) -> str:
    try:
        return str(response.get_object().get_code().get_value())
    except Exception:
        return ""


def _reset_sdk() -> None:
    # The SDK keeps its session in class attributes and adds a log file handler
    # on every initialize(): clear both, as tests/test_sdk_end_to_end.py does.
    Initializer.initializer = None
    Initializer.LOCAL.init = None
    sdk_logger = logging.getLogger("SDKLogger")
    for handler in list(sdk_logger.handlers):
        sdk_logger.removeHandler(handler)
        handler.close()


def main(
    conn: Connection,
    index: int,
    workdir: str,
    kill_claim: Synchronized[int],
    kill_at: Synchronized[float],
) -> None:
    """Serve scenarios from ``conn`` until it sends ``None`` or closes."""
    home = Path(workdir) / f"worker-{index}"
    while True:
        try:
            message = conn.recv()
        except EOFError:
            message = None
        if message is None:
            # Every store is closed and every log handler too: skip the
            # interpreter's teardown of the SDK's thousands of objects, which
            # takes seconds on a busy machine.
            conn.close()
            os._exit(0)
        result = WorkerResult(index=index, pid=os.getpid())
        try:
            session = _Session(message, result, home, kill_claim, kill_at)
        except Exception:
            conn.send(("error", traceback.format_exc()))
            continue
        try:
            conn.send(("ready", None))
            go = conn.recv()
            if go is None:
                session.close()
                os._exit(0)
            session.run(go)
        except Exception:
            conn.send(("error", traceback.format_exc()))
            continue
        finally:
            session.close()
        conn.send(("done", result))
