"""A loopback TCP proxy that delays what it forwards, and counts connections and round trips.

It runs in a child process of its own, so that its threads never compete with
the timed code for the GIL. Per accepted connection, one thread per direction
reads chunks; with a delay, each chunk waits in a queue until ``delay`` after
it arrived, and a writer thread forwards chunks in order at their due times.
So every chunk takes the same one-way delay and a request-response round trip
costs twice the delay, as on a link with that latency and ample bandwidth
(``time.sleep`` on Linux wakes within tens of microseconds).

Counters, in shared memory, readable from the parent at any time:

- ``connections``: client connections accepted;
- ``round_trips``: server replies that followed a client request (or opened
  the connection, as MySQL's greeting does): each one is a wait of the client
  for the server. A message the client sends with no reply (a quit) is not
  one. TCP's own handshake is not counted (see ``connections``).

Both are counted before the chunk is forwarded, so a client call that has
returned is already counted in full.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["LoopbackProxy", "ProxyCounts"]

_CHUNK = 256 * 1024
_CONNECTIONS, _ROUND_TRIPS = 0, 1


@dataclass(frozen=True)
class ProxyCounts:
    connections: int
    round_trips: int

    def __sub__(self, other: ProxyCounts) -> ProxyCounts:
        return ProxyCounts(
            self.connections - other.connections, self.round_trips - other.round_trips
        )


class LoopbackProxy:
    """A proxy on 127.0.0.1 in front of ``target``; a context manager that runs its process."""

    def __init__(self, target_host: str, target_port: int, delay_ms: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.delay_ms = delay_ms
        context = multiprocessing.get_context("spawn")
        self._counters: Any = context.Array("q", 2, lock=False)
        self._port: Any = context.Value("i", 0, lock=False)
        self._ready = context.Event()
        self._process = context.Process(
            target=_serve,
            args=(self.target, delay_ms / 1000.0, self._counters, self._port, self._ready),
            name=f"bench-proxy-{target_port}",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._port.value)

    def counts(self) -> ProxyCounts:
        return ProxyCounts(int(self._counters[_CONNECTIONS]), int(self._counters[_ROUND_TRIPS]))

    def __enter__(self) -> LoopbackProxy:
        self._process.start()
        if not self._ready.wait(timeout=30):
            self.close()
            raise RuntimeError(f"the proxy to {self.target} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=10)


def _serve(
    target: tuple[str, int], delay: float, counters: Any, port: Any, ready: Any
) -> None:  # pragma: no cover - runs in the child process
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port.value = listener.getsockname()[1]
    lock = threading.Lock()
    ready.set()
    while True:
        client, _address = listener.accept()
        with lock:
            counters[_CONNECTIONS] += 1
        threading.Thread(
            target=_relay, args=(client, target, delay, counters, lock), daemon=True
        ).start()


class _Turns:
    """Who spoke last on one connection; counts the server's answers to the client."""

    def __init__(self, counters: Any, lock: threading.Lock) -> None:
        self._counters = counters
        self._lock = lock
        self._last: str | None = None

    def client_sent(self) -> None:
        with self._lock:
            self._last = "client"

    def server_sent(self) -> None:
        with self._lock:
            if self._last != "server":
                self._counters[_ROUND_TRIPS] += 1
            self._last = "server"


def _relay(
    client: socket.socket, target: tuple[str, int], delay: float, counters: Any, lock: Any
) -> None:  # pragma: no cover - runs in the child process
    try:
        server = socket.create_connection(target)
    except OSError:
        client.close()
        return
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    turns = _Turns(counters, lock)
    pumps = [
        threading.Thread(
            target=_pump, args=(client, server, delay, turns.client_sent), daemon=True
        ),
        threading.Thread(
            target=_pump, args=(server, client, delay, turns.server_sent), daemon=True
        ),
    ]
    for pump in pumps:
        pump.start()
    for pump in pumps:
        pump.join()
    client.close()
    server.close()


def _pump(
    source: socket.socket, sink: socket.socket, delay: float, seen: Any
) -> None:  # pragma: no cover - runs in the child process
    """Forward ``source`` to ``sink`` until EOF, each chunk ``delay`` seconds after it came."""
    pending: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
    writer = None
    if delay > 0:
        writer = threading.Thread(target=_delayed_writer, args=(pending, sink), daemon=True)
        writer.start()
    try:
        while chunk := source.recv(_CHUNK):
            seen()
            if writer is None:
                sink.sendall(chunk)
            else:
                pending.put((time.monotonic() + delay, chunk))
    except OSError:
        pass
    if writer is not None:
        pending.put((0.0, b""))
        writer.join()
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _delayed_writer(
    pending: queue.SimpleQueue[tuple[float, bytes]], sink: socket.socket
) -> None:  # pragma: no cover - runs in the child process
    while True:
        due, chunk = pending.get()
        if not chunk:
            return
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            sink.sendall(chunk)
        except OSError:
            return
