"""A webhook endpoint on 127.0.0.1 for the notify tests: it records every POST and answers
from a script, so retries, Retry-After and give-ups can be driven from a test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Response = tuple[int, dict[str, str]]


class WebhookReceiver:
    """Answers the POSTs with ``responses`` in order, then 200.

    ``bodies`` and ``headers`` are every POST's, ``statuses`` what each was answered,
    ``delivered`` the bodies answered 200.
    """

    def __init__(self, responses: Iterable[Response] = (), path: str = "/hook") -> None:
        self.responses = list(responses)
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self.delivered: list[Any] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers = (receiver.responses.pop(0) if receiver.responses
                                   else (200, {}))
                receiver.bodies.append(body)
                receiver.headers.append(dict(self.headers))
                receiver.statuses.append(status)
                if status == 200:
                    receiver.delivered.append(body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @classmethod
    def refusing(cls, times: int = 1, status: int = 503) -> WebhookReceiver:
        """One that answers ``status`` (503: retried at once) to the first ``times`` POSTs."""
        return cls([(status, {"Retry-After": "0"})] * times, path="/hook?token=abc")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
