"""A stand-in for the Hugging Face hub, for tests: serves model repositories
from local directories with the hub's API and headers, as inferd's and
huggingface_hub's downloaders read them.

  GET /api/models/ORG/NAME/revision/REV   {"id", "sha", "siblings": [{"rfilename"}]}
  HEAD|GET /ORG/NAME/resolve/REV/FILE     the file; X-Repo-Commit, ETag (its
                                          sha256), Content-Length; Range
                                          "bytes=N-" answers 206
  GET /_stats                             {"PATH": GETs of it} (file bodies)

Options: --repo ID=DIR (repeatable), --tag ID=TAG (the commit also under
that name), --gated ID (needs `Authorization: Bearer TOKEN`: none -> 401,
another -> 403), --token TOKEN, --cut ID/FILE (the first full GET of that
file sends half its bytes and closes), --cert/--key (HTTPS). It prints
"PORT N" once listening.
"""

import argparse
import hashlib
import http.server
import json
import os
import ssl
import sys
import threading
import urllib.parse


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", action="append", default=[])
    parser.add_argument("--tag", action="append", default=[])
    parser.add_argument("--gated", action="append", default=[])
    parser.add_argument("--token", default="")
    parser.add_argument("--cut", action="append", default=[])
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()

    repos = {}
    for spec in args.repo:
        repo_id, directory = spec.split("=", 1)
        files = {}
        for root, _, names in os.walk(directory):
            for name in names:
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    data = f.read()
                files[os.path.relpath(path, directory)] = (data, hashlib.sha256(data).hexdigest())
        commit = hashlib.sha1("".join(f"{n}:{h};" for n, (_, h) in sorted(files.items())).encode()).hexdigest()
        repos[repo_id] = {"files": files, "sha": commit, "revisions": {"main", commit}}
    for spec in args.tag:
        repo_id, tag = spec.split("=", 1)
        repos[repo_id]["revisions"].add(tag)
    stats, lock, cut = {}, threading.Lock(), set(args.cut)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, code, body=b"", headers=()):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def refused(self, repo_id):
            if repo_id not in args.gated:
                return False
            auth = self.headers.get("Authorization", "")
            if not auth:
                self.reply(401, b'{"error":"Access to this model is restricted"}')
            elif auth != f"Bearer {args.token}":
                self.reply(403, b'{"error":"You need to accept the conditions"}')
            else:
                return False
            return True

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            if path == "/_stats":
                with lock:
                    return self.reply(200, json.dumps(stats).encode())
            parts = path.strip("/").split("/")
            if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "revision":
                repo_id, rev = f"{parts[2]}/{parts[3]}", "/".join(parts[5:])
                repo = repos.get(repo_id)
                if repo is None or rev not in repo["revisions"]:
                    return self.reply(404, b'{"error":"Repository not found"}')
                if self.refused(repo_id):
                    return
                body = {"id": repo_id, "sha": repo["sha"],
                        "siblings": [{"rfilename": n} for n in sorted(repo["files"])]}
                return self.reply(200, json.dumps(body).encode(), [("Content-Type", "application/json")])
            if len(parts) >= 5 and parts[2] == "resolve":
                repo_id, rev, name = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
                repo = repos.get(repo_id)
                if repo is None or rev not in repo["revisions"] or name not in repo["files"]:
                    return self.reply(404, b"Entry not found", [("X-Error-Code", "EntryNotFound")])
                if self.refused(repo_id):
                    return
                data, digest = repo["files"][name]
                headers = [("X-Repo-Commit", repo["sha"]), ("ETag", f'"{digest}"'), ("Accept-Ranges", "bytes")]
                if self.command == "HEAD":
                    return self.reply(200, data, headers)
                with lock:
                    stats[path] = stats.get(path, 0) + 1
                wanted = self.headers.get("Range", "")
                if wanted.startswith("bytes=") and wanted.endswith("-"):
                    start = int(wanted[6:-1])
                    headers.append(("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"))
                    return self.reply(206, data[start:], headers)
                key = f"{repo_id}/{name}"
                if key in cut:
                    cut.discard(key)
                    self.send_response(200)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                return self.reply(200, data, headers)
            return self.reply(404, b"not found")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
