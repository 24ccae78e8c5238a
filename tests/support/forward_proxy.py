"""A forward HTTP proxy for the hub tests, as a corporate proxy is used:
CONNECT tunnels (what clients use for https:// and, some, for http://)
and absolute-form requests (GET or HEAD http://host/path). Hosts named with
--host NAME=ADDRESS resolve to ADDRESS (so that a test hub stand-in is
reachable under a name that only the proxy knows); every request it
forwards is counted by host, and `GET /_proxy_stats` (origin form) answers
the counts as JSON.

Usage: forward_proxy.py [--host NAME=ADDRESS]...  (prints "PORT n")
"""

import argparse
import json
import select
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

COUNTS = {}
LOCK = threading.Lock()
HOSTS = {}


def count(host):
    with LOCK:
        COUNTS[host] = COUNTS.get(host, 0) + 1


def connect(host, port):
    return socket.create_connection((HOSTS.get(host, host), port), timeout=30)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_CONNECT(self):
        host, _, port = self.path.rpartition(":")
        count(host)
        try:
            upstream = connect(host, int(port))
        except OSError as e:
            self.send_error(502, f"cannot reach {self.path}: {e}")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        sockets = [self.connection, upstream]
        while True:
            readable, _, _ = select.select(sockets, [], [], 30)
            if not readable:
                break
            for s in readable:
                data = s.recv(65536)
                if not data:
                    upstream.close()
                    return
                (upstream if s is self.connection else self.connection).sendall(data)
        upstream.close()

    def do_HEAD(self):
        self.forward("HEAD")

    def do_GET(self):
        self.forward("GET")

    def forward(self, method):
        if method == "GET" and self.path == "/_proxy_stats":
            body = json.dumps(COUNTS).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        url = urlsplit(self.path)
        if not url.hostname:
            self.send_error(400, "a proxy takes absolute-form requests")
            return
        count(url.hostname)
        try:
            upstream = connect(url.hostname, url.port or 80)
        except OSError as e:
            self.send_error(502, f"cannot reach {url.hostname}: {e}")
            return
        target = url.path + (f"?{url.query}" if url.query else "")
        headers = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items() if k.lower() != "proxy-connection")
        upstream.sendall(f"{method} {target} HTTP/1.1\r\n{headers}\r\n".encode())
        # The answer goes back as it comes; the connection closes after it.
        upstream_file = upstream.makefile("rb")
        status_line = upstream_file.readline()
        self.wfile.write(status_line)
        length = None
        while True:
            line = upstream_file.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
            if line.lower().startswith(b"connection:"):
                continue
            if line in (b"\r\n", b""):
                self.wfile.write(b"Connection: close\r\n\r\n")
                break
            self.wfile.write(line)
        remaining = 0 if method == "HEAD" else length
        while remaining is None or remaining > 0:
            chunk = upstream_file.read(65536 if remaining is None else min(65536, remaining))
            if not chunk:
                break
            self.wfile.write(chunk)
            if remaining is not None:
                remaining -= len(chunk)
        self.close_connection = True
        upstream.close()


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", action="append", default=[])
    args = parser.parse_args()
    for entry in args.host:
        name, address = entry.split("=", 1)
        HOSTS[name] = address
    server = Server(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
