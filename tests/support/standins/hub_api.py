#!/usr/bin/env python3
"""Stand-in for the Docker Hub API v2 (tags of a repository), for tests.

Backed by the filesystem storage of a running docker-registry 2.8 (`--storage` is the
directory its `rootdirectory` points at).

    python3 hub_api.py --port PORT --storage DIR --registry http://127.0.0.1:RPORT \
        [--token TOKEN]

Shaped after https://docs.docker.com/reference/api/hub/latest/ :

  POST   /v2/users/login   {"username", "password"}   -> {"token": JWT}        (deprecated route)
  POST   /v2/auth/token    {"identifier", "secret"}   -> {"access_token": JWT}
  GET    /v2/namespaces/{ns}/repositories/{repo}/tags[?page=&page_size=]
  GET    /v2/repositories/{ns}/{repo}/tags[/]            (older alias)
  GET    /v2/namespaces/{ns}/repositories/{repo}/tags/{tag}   (and the older alias)
  DELETE /v2/namespaces/{ns}/repositories/{repo}/tags/{tag}   -> 204
  DELETE /v2/repositories/{ns}/{repo}/tags/{tag}/             -> 204

With --token, the password/secret must equal TOKEN (think of it as the PAT); without it
any credentials are accepted.  Every other route needs `Authorization: Bearer <issued
JWT>` (or `JWT <issued JWT>`).  Tags are listed newest push first (tag link mtime);
page_size defaults to 10, max 100; `next`/`previous` are absolute URLs or null.

DELETE of a tag removes `_manifests/tags/{tag}` from the storage directly: the manifest
stays in the repository, untagged (Hub does not delete the image with the tag;
distribution 2.8 cannot untag over its HTTP API, and removing that directory is exactly
what its tag store's Untag does).

Every request is logged as one JSON line appended to `DIR/../standin-access.log`.
"""

import base64
import datetime
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import threading
import time
import urllib.parse

import standin_common

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
ROUTE = re.compile(
    r"^/v2/(?:namespaces/(?P<ns1>[^/]+)/repositories/(?P<repo1>[^/]+)"
    r"|repositories/(?P<ns2>[^/]+)/(?P<repo2>[^/]+))"
    r"/tags(?:/(?P<tag>[^/]+))?/?$"
)


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(subject):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = {"sub": subject, "username": subject, "iat": now, "exp": now + 3600, "jti": secrets.token_hex(8)}
    payload = b64url(json.dumps(claims).encode())
    sig = b64url(hashlib.sha256((header + "." + payload).encode()).digest())
    return "%s.%s.%s" % (header, payload, sig)


class Storage(standin_common.Storage):
    def blob_json(self, digest):
        data = self.blob(digest)
        try:
            return json.loads(data) if data is not None else None
        except ValueError:
            return None

    def image_entry(self, digest, manifest, pushed, platform=None):
        """One `images[]` element for an image manifest."""
        manifest = manifest or {}
        layers = manifest.get("layers") or []
        size = sum(int(l.get("size", 0)) for l in layers if isinstance(l, dict))
        platform = dict(platform or {})
        cfg_desc = manifest.get("config") or {}
        if not platform and cfg_desc.get("digest"):
            cfg = self.blob_json(cfg_desc["digest"]) or {}
            platform = {k: cfg.get(k) for k in ("architecture", "os", "variant", "os.version") if cfg.get(k)}
        return {
            "architecture": platform.get("architecture", "unknown"),
            "features": "",
            "variant": platform.get("variant"),
            "digest": digest,
            "os": platform.get("os", "unknown"),
            "os_features": "",
            "os_version": platform.get("os.version"),
            "size": size,
            "status": "active",
            "last_pulled": None,
            "last_pushed": pushed,
        }

    def tag_json(self, repo_id, t):
        pushed = iso(t["mtime"])
        manifest = self.blob_json(t["digest"]) or {}
        media_type = manifest.get("mediaType") or (
            "application/vnd.oci.image.index.v1+json" if "manifests" in manifest else "application/vnd.oci.image.manifest.v1+json"
        )
        if "manifests" in manifest:
            images = []
            for d in manifest.get("manifests") or []:
                child = self.blob_json(d.get("digest", "")) or {}
                images.append(self.image_entry(d.get("digest"), child, pushed, d.get("platform")))
        else:
            images = [self.image_entry(t["digest"], manifest, pushed)]
        return {
            "creator": 1,
            "id": int(hashlib.sha256(("%d/%s" % (repo_id, t["name"])).encode()).hexdigest()[:8], 16),
            "images": images,
            "last_updated": pushed,
            "last_updater": 1,
            "last_updater_username": "standin",
            "name": t["name"],
            "repository": repo_id,
            "full_size": sum(i["size"] for i in images),
            "v2": True,
            "tag_status": "active",
            "tag_last_pulled": None,
            "tag_last_pushed": pushed,
            "media_type": media_type,
            "content_type": "image",
            "digest": t["digest"],
        }


class Handler(standin_common.JsonHandler):
    SERVER = "hub"
    server_version = "hub-standin"

    def send_json(self, status, body):
        limits = [
            ("X-RateLimit-Limit", "180"),
            ("X-RateLimit-Remaining", "179"),
            ("X-RateLimit-Reset", str(int(time.time()) + 60)),
        ]
        self.write_json(status, body, "application/json", limits)

    def read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
            return body if isinstance(body, dict) else {}
        except ValueError:
            return None

    def authorized(self):
        parts = self.headers.get("Authorization", "").split(None, 1)
        if len(parts) == 2 and parts[0].lower() in ("bearer", "jwt"):
            with self.server.lock:
                if parts[1].strip() in self.server.issued:
                    return True
            self.send_json(401, {"detail": "Invalid token.", "message": "Invalid token."})
            return False
        self.send_json(401, {"detail": "Authentication credentials were not provided.",
                             "message": "Authentication credentials were not provided."})
        return False

    def issue(self, who, secret):
        if not who or secret is None or (self.server.token is not None and secret != self.server.token):
            return None
        token = make_jwt(who)
        with self.server.lock:
            self.server.issued.add(token)
        return token

    # --- verbs ----------------------------------------------------------
    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        if path not in ("/v2/users/login", "/v2/auth/token"):
            self.send_json(404, {"detail": "Not found.", "message": "Not found."})
            return
        body = self.read_json()
        if body is None:
            self.send_json(400, {"detail": "JSON parse error", "message": "JSON parse error"})
            return
        if path == "/v2/users/login":
            token = self.issue(body.get("username"), body.get("password"))
            if token is None:
                self.send_json(401, {"detail": "Incorrect authentication credentials"})
            else:
                self.send_json(200, {"token": token})
        else:
            token = self.issue(body.get("identifier"), body.get("secret"))
            if token is None:
                self.send_json(401, {"detail": "Incorrect authentication credentials",
                                     "message": "Incorrect authentication credentials"})
            else:
                self.send_json(200, {"access_token": token})

    def route(self):
        raw = urllib.parse.urlsplit(self.path)
        m = ROUTE.match(raw.path)
        if not m:
            self.send_json(404, {"detail": "Not found.", "message": "Not found."})
            return None
        ns = urllib.parse.unquote(m.group("ns1") or m.group("ns2"))
        repo = urllib.parse.unquote(m.group("repo1") or m.group("repo2"))
        tag = urllib.parse.unquote(m.group("tag")) if m.group("tag") else None
        repo_path = self.server.storage.repo_dir("%s/%s" % (ns, repo)) if "/" not in ns + repo else None
        if repo_path is None:
            self.send_json(404, {"message": "object not found", "errinfo": {"namespace": ns, "repository": repo}})
            return None
        if tag is not None and not TAG.match(tag):
            self.send_json(404, {"message": "tag '%s' not found" % tag,
                                 "errinfo": {"namespace": ns, "repository": repo, "tag": tag}})
            return None
        return {
            "ns": ns,
            "repo": repo,
            "tag": tag,
            "repo_path": repo_path,
            "repo_id": int(hashlib.sha256(("%s/%s" % (ns, repo)).encode()).hexdigest()[:8], 16),
            "list_url": self.base_url() + raw.path.rstrip("/") if tag is None else None,
            "query": urllib.parse.parse_qs(raw.query),
        }

    def tag_not_found(self, r):
        self.send_json(404, {"message": "httperror 404: tag '%s' not found" % r["tag"],
                             "errinfo": {"namespace": r["ns"], "repository": r["repo"], "tag": r["tag"]}})

    def do_GET(self):
        if not self.authorized():
            return
        r = self.route()
        if r is None:
            return
        storage = self.server.storage
        tags = storage.tags(r["repo_path"])
        if r["tag"] is not None:
            for t in tags:
                if t["name"] == r["tag"]:
                    self.send_json(200, storage.tag_json(r["repo_id"], t))
                    return
            self.tag_not_found(r)
            return
        q = r["query"]
        try:
            page = int(q.get("page", ["1"])[0])
            page_size = int(q.get("page_size", ["10"])[0])
        except ValueError:
            self.send_json(400, {"detail": "Invalid page.", "message": "Invalid page."})
            return
        page_size = max(1, min(page_size, 100))
        if page < 1 or (page - 1) * page_size >= max(len(tags), 1):
            self.send_json(404, {"detail": "Invalid page.", "message": "Invalid page."})
            return
        chunk = tags[(page - 1) * page_size : page * page_size]

        def page_url(p):
            params = dict((k, v[-1]) for k, v in q.items())
            params["page"] = str(p)
            params["page_size"] = str(page_size)
            return "%s?%s" % (r["list_url"], urllib.parse.urlencode(params))

        self.send_json(
            200,
            {
                "count": len(tags),
                "next": page_url(page + 1) if page * page_size < len(tags) else None,
                "previous": page_url(page - 1) if page > 1 else None,
                "results": [storage.tag_json(r["repo_id"], t) for t in chunk],
            },
        )

    def do_HEAD(self):
        self.do_GET()

    def do_DELETE(self):
        if not self.authorized():
            return
        r = self.route()
        if r is None:
            return
        if r["tag"] is None:
            self.send_json(405, {"detail": 'Method "DELETE" not allowed.', "message": 'Method "DELETE" not allowed.'})
            return
        tag_dir = os.path.join(r["repo_path"], "_manifests", "tags", r["tag"])
        with self.server.lock:
            if not os.path.isfile(os.path.join(tag_dir, "current", "link")):
                self.tag_not_found(r)
                return
            shutil.rmtree(tag_dir, ignore_errors=True)
        self.send_json(204, None)


def main():
    args = standin_common.arguments(
        __doc__.splitlines()[0],
        "base URL of that registry (kept for symmetry; unused)",
        "the only password/secret accepted by the login routes",
    ).parse_args()
    standin_common.serve(Handler, Storage, args, issued=set(), lock=threading.Lock())


if __name__ == "__main__":
    sys.exit(main())
