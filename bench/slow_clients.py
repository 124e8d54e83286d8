"""Slow and stalled clients: connections that never finish a request, held open against a
server while ordinary clients are measured (bench/run.py's slow-client scenario, and
tests/test_container.py against the image).

Four kinds, in turn: headers never finished, headers sent one byte a second, a body stalled
after its first byte, a body sent one byte a second. Each connection the server closes is
opened again at once, so `count` stay open for as long as the server allows; how long the
server kept each one open is recorded.

    python -m bench.slow_clients PORT [--count 200] [--seconds 30]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time

PREDICT = "/v1/models/model:predict"
KINDS = ("stalled headers", "trickled headers", "stalled body", "trickled body")


def _opening(kind: str, path: str) -> tuple[bytes, bytes]:
    """What a connection of this kind sends at once, and then one byte a second (cycled)."""
    if kind == "stalled headers":
        return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode(), b""
    if kind == "trickled headers":
        return f"POST {path} HTTP/1.1\r\n".encode(), b"X-Slow: a\r\n"
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100000\r\n\r\n{{").encode()
    return head, (b"" if kind == "stalled body" else b" ")


class SlowClients:
    """`count` slow connections to 127.0.0.1:port, on an asyncio loop in a thread of its own.
    Use as a context manager; `held` lists, per kind, how long the server kept each closed
    connection open (seconds)."""

    def __init__(self, port: int, count: int = 200, path: str = PREDICT, host="127.0.0.1"):
        self.port, self.count, self.path, self.host = port, count, path, host
        self.held: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self.open = 0
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._tasks: list[asyncio.Task] = []

    def __enter__(self) -> SlowClients:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def wait_open(self, timeout: float = 10.0) -> None:
        """Until every connection is open (the server accepted them)."""
        deadline = time.monotonic() + timeout
        while self.open < self.count and time.monotonic() < deadline:
            time.sleep(0.05)

    async def _start(self) -> None:
        self._tasks = [self._loop.create_task(self._connection(KINDS[i % len(KINDS)]))
                       for i in range(self.count)]

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, kind: str) -> None:
        opening, trickle = _opening(kind, self.path)
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                self.refused += 1
                await asyncio.sleep(0.1)
                continue
            opened = time.monotonic()
            self.open += 1
            try:
                writer.write(opening)
                sending = self._loop.create_task(self._trickle(writer, trickle))
                try:
                    await reader.read()  # until the server answers and closes, or resets
                except OSError:
                    pass
                finally:
                    sending.cancel()
                self.held[kind].append(time.monotonic() - opened)
            finally:
                self.open -= 1
                writer.close()

    @staticmethod
    async def _trickle(writer: asyncio.StreamWriter, trickle: bytes) -> None:
        if not trickle:
            return
        i = 0
        while True:
            await asyncio.sleep(1)
            writer.write(trickle[i % len(trickle):i % len(trickle) + 1])
            i += 1

    def summary(self) -> dict:
        """Per kind: connections the server closed, and the longest it held one (seconds)."""
        return {kind: {"closed": len(times),
                       "max_held_s": round(max(times), 2) if times else None,
                       "median_held_s": round(statistics.median(times), 2) if times else None}
                for kind, times in self.held.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args(argv)
    with SlowClients(args.port, args.count) as clients:
        time.sleep(args.seconds)
        print(clients.summary(), f"open: {clients.open}", f"refused: {clients.refused}")


if __name__ == "__main__":
    main()
