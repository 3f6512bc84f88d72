"""A local HTTP server on 127.0.0.1 for the download tests (the ``server`` fixture in conftest)."""

from __future__ import annotations

import http.server
import threading
from collections import Counter
from typing import Any


class LocalHTTPServer:
    """A local HTTP server: routes map a path to its body; some responses are truncated, and
    ``first`` lists bodies served before the route's (a publisher's wrong first copy)."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.first: dict[str, list[bytes]] = {}  # path -> bodies served (whole) before routes
        self.truncate: dict[str, int] = {}  # path -> how many more responses to cut short
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.hits[self.path] += 1
                queued = server.first.get(self.path)
                body = queued.pop(0) if queued else server.routes.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.truncate.get(self.path, 0) > 0:
                    server.truncate[self.path] -= 1
                    # Promise the whole body, send half, close (HTTP/1.0 closes after this).
                    self.wfile.write(body[: len(body) // 2])
                    return
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"
