"""What the API stand-ins share: reading a docker-registry 2.8 filesystem storage, a JSON
request handler that logs every request as one JSON line, and the server's start-up.

The scripts run from this directory, so `import standin_common` finds this file.
"""

import argparse
import datetime
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEGMENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
LOG_LOCK = threading.Lock()


class Storage:
    """A docker-registry 2.8 filesystem storage (`rootdirectory`)."""

    def __init__(self, root):
        self.root = root
        self.repos = os.path.join(root, "docker", "registry", "v2", "repositories")

    def repo_dir(self, name):
        if not all(SEGMENT.match(s) for s in name.split("/")):
            return None
        path = os.path.join(self.repos, *name.split("/"))
        return path if os.path.isdir(os.path.join(path, "_manifests")) else None

    @staticmethod
    def read_link(path):
        """A link file's digest and modification time, or (None, None)."""
        try:
            with open(path) as f:
                value = f.read().strip()
            return value, os.stat(path).st_mtime
        except OSError:
            return None, None

    def tags(self, repo_path):
        """Every tag, newest first: dicts of name, digest and mtime (of its link)."""
        out = []
        tags_dir = os.path.join(repo_path, "_manifests", "tags")
        if os.path.isdir(tags_dir):
            for tag in os.listdir(tags_dir):
                digest, mtime = self.read_link(os.path.join(tags_dir, tag, "current", "link"))
                if digest:
                    out.append({"name": tag, "digest": digest, "mtime": mtime})
        out.sort(key=lambda t: (-t["mtime"], t["name"]))
        return out

    def blob(self, digest):
        try:
            algo, hexd = digest.split(":", 1)
            path = os.path.join(self.root, "docker", "registry", "v2", "blobs", algo, hexd[:2], hexd, "data")
            with open(path, "rb") as f:
                return f.read()
        except (OSError, ValueError):
            return None


class JsonHandler(BaseHTTPRequestHandler):
    """Logs each request to the server's access log; `SERVER` names the stand-in there."""

    SERVER = "standin"
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return self.server_version

    def log_request(self, code="-", size="-"):
        try:
            code = int(code)
        except (TypeError, ValueError):
            pass
        line = json.dumps(
            {
                "server": self.SERVER,
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "method": self.command,
                "path": self.path,
                "status": code,
            }
        )
        with LOG_LOCK:
            with open(self.server.access_log, "a") as f:
                f.write(line + "\n")

    def log_message(self, fmt, *args):
        pass

    def write_json(self, status, body, content_type, headers=(), indent=None):
        data = b"" if body is None else json.dumps(body, indent=indent).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", content_type)
        if status != 204:
            self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def base_url(self):
        return "http://" + (self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_port)


def arguments(description, registry_help, token_help):
    """The command line every stand-in takes (more may be added)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--storage", required=True, help="docker-registry filesystem rootdirectory")
    ap.add_argument("--registry", required=True, help=registry_help)
    ap.add_argument("--token", help=token_help)
    return ap


def serve(handler, storage_class, args, **attributes):
    """Listens on 127.0.0.1:PORT, says `ready`, and serves until killed."""
    storage_dir = os.path.abspath(args.storage)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    server.storage = storage_class(storage_dir)
    server.registry = args.registry.rstrip("/")
    server.token = args.token
    server.access_log = os.path.join(os.path.dirname(storage_dir), "standin-access.log")
    for k, v in attributes.items():
        setattr(server, k, v)
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
