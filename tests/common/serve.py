#!/usr/bin/env python3
"""A misbehaving-on-demand HTTP server for one repository directory.

Used by the engine tests (common/http.rs) to stand in for LAN peers and upstream servers:

    serve.py ROOT [--port N] [--no-summary] [--missing LIST_FILE]
             [--corrupt PATH]... [--rate BYTES_PER_SEC] [--die-after N]
             [--trickle PREFIX]... [--endless PATH]... [--log FILE]

--trickle sends every path starting with PREFIX one byte a second (each
connection on its own); --endless sends PATH's bytes and then zeros without end
(no Content-Length), stopping only when the client hangs up or after 4 GiB. Each
finished response is logged as "sent PATH BYTES".

The chosen port is printed on the first line of stdout (port 0 picks a free one).
Only 127.0.0.1 is ever bound. Standard library only.
"""

import argparse
import os
import posixpath
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 16 * 1024


class Throttle:
    """One token bucket shared by every connection: the whole server sends at most
    `rate` bytes per second."""

    def __init__(self, rate):
        self.rate = float(rate)
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def wait(self, nbytes):
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + nbytes / self.rate
            until = self.next_free
        delay = until - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class State:
    def __init__(self, args):
        self.root = os.path.realpath(args.root)
        self.no_summary = args.no_summary
        self.missing = set()
        if args.missing:
            with open(args.missing, encoding="utf-8") as f:
                self.missing = {line.strip().lstrip("/") for line in f if line.strip()}
        self.corrupt = {p.lstrip("/") for p in args.corrupt}
        self.throttle = Throttle(args.rate) if args.rate else None
        self.die_after = args.die_after
        self.trickle = list(args.trickle)
        self.endless = {p.lstrip("/") for p in args.endless}
        self.object_requests = 0
        self.lock = threading.Lock()
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None

    def record(self, path):
        """Logs the request; returns False when the server must die now."""
        with self.lock:
            if self.log:
                self.log.write(path + "\n")
                self.log.flush()
            if path.startswith("objects/"):
                self.object_requests += 1
                if self.die_after is not None and self.object_requests > self.die_after:
                    return False
        return True


    def record_sent(self, path, nbytes):
        with self.lock:
            if self.log:
                self.log.write(f"sent {path} {nbytes}\n")
                self.log.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ferry-test-serve/1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def relative_path(self):
        raw = urllib.parse.urlsplit(self.path).path
        path = posixpath.normpath(urllib.parse.unquote(raw)).lstrip("/")
        if path in (".", ""):
            return ""
        if path.startswith("..") or "/../" in path:
            return None
        return path

    def send_status(self, code, head_only=False):
        body = b"" if head_only else f"{code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_HEAD(self):
        self.serve(head_only=True)

    def do_GET(self):
        self.serve(head_only=False)

    def serve(self, head_only):
        state = self.server.state
        path = self.relative_path()
        if path is None:
            return self.send_status(403, head_only)
        if not state.record(path):
            # Abruptly, like a machine switched off: no response, no cleanup.
            os._exit(3)
        if state.no_summary and path in ("summary", "summary.sig"):
            return self.send_status(404, head_only)
        if path in state.missing:
            return self.send_status(404, head_only)
        full = os.path.join(state.root, path)
        if not os.path.isfile(full):
            return self.send_status(404, head_only)
        with open(full, "rb") as f:
            data = f.read()
        if path in state.corrupt and data:
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0xFF
            data = bytes(flipped)
        endless = path in state.endless
        trickle = any(path.startswith(p) for p in state.trickle)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if endless:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if head_only:
            return
        sent = 0
        try:
            if trickle:
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    sent += 1
                    time.sleep(1)
            else:
                for start in range(0, len(data), CHUNK):
                    chunk = data[start : start + CHUNK]
                    if state.throttle:
                        state.throttle.wait(len(chunk))
                    self.wfile.write(chunk)
                    sent += len(chunk)
                zeros = bytes(CHUNK)
                while endless and sent < 4 << 30:
                    self.wfile.write(zeros)
                    sent += len(zeros)
        finally:
            state.record_sent(path, sent)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # Clients hanging up (a killed ferryctl, a dropped source) are expected.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-summary", action="store_true")
    parser.add_argument("--missing", metavar="LIST_FILE")
    parser.add_argument("--corrupt", metavar="PATH", action="append", default=[])
    parser.add_argument("--rate", metavar="BYTES_PER_SEC", type=int)
    parser.add_argument("--die-after", metavar="N", type=int)
    parser.add_argument("--trickle", metavar="PREFIX", action="append", default=[])
    parser.add_argument("--endless", metavar="PATH", action="append", default=[])
    parser.add_argument("--log", metavar="FILE")
    args = parser.parse_args()

    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args)
    sys.stdout.write(f"{server.server_address[1]}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
