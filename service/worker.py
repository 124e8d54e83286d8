"""The gunicorn worker class of the service: gunicorn's gevent worker, which reads every
connection in a greenlet of its own, so a client that sends slowly or not at all holds only
that greenlet and every other client is served (bench/RESULTS.md, "Slow clients").

It adds what gevent's worker lacks, so that the app only ever gets complete requests and a
slow connection cannot stay open for ever:
- the headers must arrive within `keepalive` seconds (gunicorn's own rule for async workers:
  the connection is closed without an answer, as for an idle kept-alive connection);
- then the body within BODY_TIMEOUT seconds (default 10), read here before the app runs;
  otherwise 408 and the connection is closed. A body over MAX_BODY_BYTES is not read: the app
  answers 413 from its Content-Length and the connection is closed.

    gunicorn -k service.worker.ServiceWorker ...   (service/gunicorn_conf.py sets it)
"""
from __future__ import annotations

import io
import os
from time import perf_counter

import gevent
import orjson
from gunicorn.http.body import Body
from gunicorn.workers.ggevent import GeventWorker

from service.config import Config
from service.logs import log_request
from service.metrics import observe_request

INCOMPLETE = "(incomplete body)"


class ServiceWorker(GeventWorker):

    def init_process(self):
        self.body_timeout = float(os.environ.get("BODY_TIMEOUT") or 10)
        self.max_body_bytes = Config.from_env().max_body_bytes
        super().init_process()

    def handle_request(self, listener_name, req, sock, addr):
        length = getattr(req.body.reader, "length", None)  # None: chunked
        if length is not None and length > self.max_body_bytes:
            req.must_close = True  # the app refuses it unread; the rest is never read
            return super().handle_request(listener_name, req, sock, addr)
        started = perf_counter()
        try:
            with gevent.Timeout(self.body_timeout):
                # One more byte than allowed tells the app (werkzeug) that a chunked body is
                # too large; what is left of it is then never read.
                body = req.body.read(self.max_body_bytes + 1)
        except gevent.Timeout:
            self._request_timeout(req, sock, addr, perf_counter() - started)
            raise StopIteration() from None  # gunicorn closes the connection
        if len(body) > self.max_body_bytes:
            req.must_close = True
        req.body = Body(io.BytesIO(body))
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            # A kept-alive client that sends its next request at once would find it already
            # read, and its greenlet would run on while the others wait (p99 of hundreds of
            # ms at 32 connections): let every ready connection have its turn first.
            gevent.idle()

    def _request_timeout(self, req, sock, addr, elapsed: float) -> None:
        message = f"Request body not received within {self.body_timeout:g} s (BODY_TIMEOUT)"
        payload = orjson.dumps({"error": message})
        sock.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(payload), payload))
        observe_request(req.method, INCOMPLETE, 408, elapsed)
        log_request({"method": req.method, "path": req.path, "route": INCOMPLETE, "status": 408,
                     "latency_ms": round(elapsed * 1000, 3),
                     "remote_addr": addr[0] if isinstance(addr, tuple) else addr,
                     "error": message})
