#!/usr/bin/env python3
"""Stand-in for the GitHub Packages REST API (container packages only), for tests.

Backed by the filesystem storage of a running docker-registry 2.8 (`--storage` is the
directory its `rootdirectory` points at) and that registry's HTTP API (`--registry`).

    python3 ghcr_api.py --port PORT --storage DIR --registry http://127.0.0.1:RPORT \
        [--token TOKEN] [--user LOGIN]

Shaped after https://docs.github.com/rest/packages/packages :

  GET    /orgs/{org}/packages/container/{package}/versions[?per_page=&page=]
  GET    /users/{user}/packages/container/{package}/versions
  GET    /user/packages/container/{package}/versions        (owner = --user, or inferred)
  GET    .../versions/{package_version_id}
  DELETE .../versions/{package_version_id}                 -> 204

The package `{package}` of owner `{owner}` is the OCI repository `{owner}/{package}`;
a package name with slashes is sent URL-encoded (`api%2Fworker`).  Every manifest
revision of the repository (tagged or not) is one version: `name` is its digest,
`metadata.container.tags` the tags whose current link names it.  A version's id is
the integer value of the first 8 hex digits of its digest (stable across restarts).
Versions are listed newest first (revision link mtime).  DELETE is carried out by
`DELETE /v2/{owner}/{package}/manifests/{digest}` on the registry, which removes the
manifest and untags every tag pointing at it (a version has no tag-only delete).

Not modelled: the 5,000-download limit on deleting public versions, restore, the
`state` filter, rate limits, token scopes.

Every request is logged as one JSON line appended to `DIR/../standin-access.log`.
"""

import datetime
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

import standin_common

DOCS = "https://docs.github.com/rest/packages/packages"
ROUTE = re.compile(
    r"^/(?:(?P<kind>orgs|users)/(?P<owner>[^/]+)|(?P<self>user))"
    r"/packages/container/(?P<package>.+?)/versions(?:/(?P<id>[^/]+))?/?$"
)
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)



def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_id(digest):
    return int(digest.split(":", 1)[1][:8], 16)


class Storage(standin_common.Storage):
    def find_owner(self, package):
        """Owners that hold `package` (for /user/... without --user)."""
        owners = []
        if os.path.isdir(self.repos):
            for owner in sorted(os.listdir(self.repos)):
                if self.repo_dir(owner + "/" + package):
                    owners.append(owner)
        return owners

    def versions(self, repo_path):
        """All revisions, newest first: list of dicts (digest, mtime, tags)."""
        tags_by_digest = {}
        tags_dir = os.path.join(repo_path, "_manifests", "tags")
        if os.path.isdir(tags_dir):
            for tag in os.listdir(tags_dir):
                dgst, _ = self.read_link(os.path.join(tags_dir, tag, "current", "link"))
                if dgst:
                    tags_by_digest.setdefault(dgst, []).append(tag)
        out = []
        for algo in ("sha256", "sha512"):
            rev_dir = os.path.join(repo_path, "_manifests", "revisions", algo)
            if not os.path.isdir(rev_dir):
                continue
            for hexd in os.listdir(rev_dir):
                dgst, mtime = self.read_link(os.path.join(rev_dir, hexd, "link"))
                if not dgst:
                    continue  # link removed by a manifest delete; directory may remain
                out.append({"digest": dgst, "mtime": mtime, "tags": sorted(tags_by_digest.get(dgst, []))})
        out.sort(key=lambda v: (-v["mtime"], v["digest"]))
        return out


class Handler(standin_common.JsonHandler):
    SERVER = "ghcr"
    server_version = "GitHub.com"

    def send_json(self, status, body, headers=None):
        headers = [("X-GitHub-Media-Type", "github.v3; format=json")] + list((headers or {}).items())
        self.write_json(status, body, "application/json; charset=utf-8", headers, indent=2)

    def error(self, status, message, doc=DOCS):
        self.send_json(status, {"message": message, "documentation_url": doc, "status": str(status)})

    def authorized(self):
        token = self.server.token
        if token is None:
            return True
        auth = self.headers.get("Authorization", "")
        parts = auth.split(None, 1)
        if len(parts) == 2 and parts[0].lower() in ("bearer", "token") and parts[1].strip() == token:
            return True
        if auth:
            self.error(401, "Bad credentials", "https://docs.github.com/rest")
        else:
            self.error(401, "Requires authentication", "https://docs.github.com/rest")
        return False

    # --- routing --------------------------------------------------------
    def route(self):
        raw = urllib.parse.urlsplit(self.path)
        m = ROUTE.match(raw.path)
        if not m:
            self.error(404, "Not Found", "https://docs.github.com/rest")
            return None
        package = urllib.parse.unquote(m.group("package")).lower()
        if m.group("self"):
            if self.server.user:
                owner = self.server.user
            else:
                owners = self.server.storage.find_owner(package)
                owner = owners[0] if len(owners) == 1 else None
            prefix = "/user"
        else:
            owner = urllib.parse.unquote(m.group("owner")).lower()
            prefix = "/%s/%s" % (m.group("kind"), m.group("owner"))
        repo_path = self.server.storage.repo_dir("%s/%s" % (owner, package)) if owner else None
        if repo_path is None:
            self.error(404, "Package not found.")
            return None
        enc = urllib.parse.quote(package, safe="")
        return {
            "owner": owner,
            "package": package,
            "repo_path": repo_path,
            "id": m.group("id"),
            "versions_url": "%s%s/packages/container/%s/versions" % (self.base_url(), prefix, enc),
            "html_base": "https://github.com/%s/%s/pkgs/container/%s"
            % ("orgs" if m.group("kind") == "orgs" else "users", owner, enc),
            "query": urllib.parse.parse_qs(raw.query),
        }

    def version_json(self, r, v):
        vid = version_id(v["digest"])
        return {
            "id": vid,
            "name": v["digest"],
            "url": "%s/%d" % (r["versions_url"], vid),
            "package_html_url": r["html_base"],
            "html_url": "%s/%d" % (r["html_base"], vid),
            "created_at": iso(v["mtime"]),
            "updated_at": iso(v["mtime"]),
            "metadata": {"package_type": "container", "container": {"tags": v["tags"]}},
        }

    def find_version(self, r):
        try:
            wanted = int(r["id"])
        except ValueError:
            return None
        for v in self.server.storage.versions(r["repo_path"]):
            if version_id(v["digest"]) == wanted:
                return v
        return None

    # --- verbs ----------------------------------------------------------
    def do_GET(self):
        if not self.authorized():
            return
        r = self.route()
        if r is None:
            return
        if r["id"] is not None:
            v = self.find_version(r)
            if v is None:
                self.error(404, "Package version not found.")
            else:
                self.send_json(200, self.version_json(r, v))
            return
        q = r["query"]
        try:
            per_page = int(q.get("per_page", ["30"])[0])
            page = int(q.get("page", ["1"])[0])
        except ValueError:
            self.error(400, "Invalid pagination parameters")
            return
        per_page = max(1, min(per_page, 100))
        page = max(1, page)
        versions = self.server.storage.versions(r["repo_path"])
        last = max(1, (len(versions) + per_page - 1) // per_page)
        chunk = versions[(page - 1) * per_page : page * per_page]
        links = []

        def link(p, rel):
            params = dict((k, v[-1]) for k, v in q.items())
            params["per_page"] = str(per_page)
            params["page"] = str(p)
            links.append('<%s?%s>; rel="%s"' % (r["versions_url"], urllib.parse.urlencode(params), rel))

        if page > 1:
            link(min(page - 1, last), "prev")
        if page < last:
            link(page + 1, "next")
            link(last, "last")
        if page > 1:
            link(1, "first")
        headers = {"Link": ", ".join(links)} if links else {}
        self.send_json(200, [self.version_json(r, v) for v in chunk], headers)

    def do_DELETE(self):
        if not self.authorized():
            return
        r = self.route()
        if r is None:
            return
        if r["id"] is None:
            self.error(404, "Not Found", "https://docs.github.com/rest")
            return
        v = self.find_version(r)
        if v is None:
            self.error(404, "Package version not found.")
            return
        url = "%s/v2/%s/%s/manifests/%s" % (self.server.registry, r["owner"], r["package"], v["digest"])
        req = urllib.request.Request(url, method="DELETE", headers={"Accept": MANIFEST_ACCEPT})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            if e.code == 404:
                self.error(404, "Package version not found.")
            else:
                self.error(500, "registry answered %d: %s" % (e.code, body.strip()))
            return
        except OSError as e:
            self.error(502, "registry unreachable: %s" % e)
            return
        self.send_json(204, None)

    def do_POST(self):
        self.error(404, "Not Found", "https://docs.github.com/rest")

    do_PUT = do_PATCH = do_POST


def main():
    ap = standin_common.arguments(
        __doc__.splitlines()[0],
        "base URL of that registry, e.g. http://127.0.0.1:5000",
        "require Authorization: Bearer TOKEN",
    )
    ap.add_argument("--user", help="login of the authenticated user, for /user/... routes")
    args = ap.parse_args()
    standin_common.serve(Handler, Storage, args, user=args.user.lower() if args.user else None)


if __name__ == "__main__":
    sys.exit(main())
