"""A regional receiver of rest-hook notifications: a separate process on loopback (``python -m``).

Every POST is appended to a JSON-lines log (path, headers, Bundle, arrival time). While the file
``<log>.down`` exists it answers 503 (an outage); while ``<log>.slow`` exists it waits that many seconds
before answering (a delivery in flight, for killing the sender mid-delivery).
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(port: int, log: Path) -> None:
    down, slow = log.with_suffix(".down"), log.with_suffix(".slow")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if down.exists():
                self.send_response(503)
                self.end_headers()
                return
            if slow.exists():
                time.sleep(float(slow.read_text() or "2"))
            record = {"path": self.path, "headers": dict(self.headers), "bundle": json.loads(body), "t": time.time()}
            with log.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
