"""uvicorn's h11 protocol with two answers it lacks: 431 for oversized headers, and no reset.

uvicorn answers every h11 protocol error with a plain-text 400 and closes at once. For a head past
h11's buffer limit the right answer is 431 (h11 itself says so in ``error_status_hint``), and closing
a socket that still holds unread request bytes makes the kernel send a TCP reset, which can destroy
the answer before the client reads it. So the answer goes out, the write side is shut, and what the
client still sends is read and discarded for a short while before the connection closes.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 64 << 10  # request line + headers; uvicorn is given this limit (h11's default is 16 KiB)
DRAIN_SECONDS = 2.0
DRAIN_BYTES = 16 << 20


class BodycamH11Protocol(H11Protocol):
    _draining = False
    _drained = 0

    def send_400_response(self, msg: str) -> None:
        limit = self.config.h11_max_incomplete_event_size or MAX_HEAD_BYTES
        too_big = len(self.conn.trailing_data[0]) > limit
        status, code, message = (
            (431, "headers_too_large", "request line and headers are over the server's limit; send smaller ones")
            if too_big
            else (400, "bad_request", f"not a valid HTTP/1.1 request ({msg.rstrip('.')})")
        )
        body = json.dumps({"error": code, "message": message, "status": status}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   (b"content-length", str(len(body)).encode())]
        for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self._drain_then_close()

    def _drain_then_close(self) -> None:
        self._draining = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(DRAIN_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._draining:
            self._drained += len(data)
            if self._drained > DRAIN_BYTES:
                self.transport.close()
            return
        super().data_received(data)

    def eof_received(self) -> None:
        if self._draining:
            self.transport.close()
            return
        super().eof_received()
