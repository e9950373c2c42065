"""pytest plugin (loaded with `-p ferry_conformance_offline` by tests/conformance/run) that lets
the vendored sigstore-conformance suite run with no network, without editing the suite itself.

1. The suite's `identity_token` fixture (test/conftest.py) GETs an OIDC token from a public bucket
   for every test, because its `client` fixture parses the token's `email`, `iss` and `exp` claims
   even when only verifying. The token is only ever *sent* anywhere by `sign-bundle`, which
   `--skip-signing` and the run script's test selection never reach. This plugin replaces
   `urllib3.request` before the suite's conftest does `from urllib3 import request`, so that
   fixture gets a fixed, unsigned stand-in token; any other URL raises.
2. Python-side sockets to anything but loopback or a Unix socket raise, so that a fixture that
   tries the network fails at once and by name. (The run script also runs pytest, and with it the
   client under test, in a fresh network namespace when it can.)
3. The pass/fail/skip counts go to the file named by $FERRY_CONFORMANCE_SUMMARY (if set), for the
   run script's one-line summary.
"""

from __future__ import annotations

import base64
import json
import os
import socket

import urllib3

TOKEN_URL = (
    "https://storage.googleapis.com/sigstore-conformance-testing-token/untrusted-testing-token.txt"
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# An unsigned JWT with the three claims SigstoreClient reads. Nothing verifies it; verification
# tests take their identity and issuer from each case's directory, not from the token.
OFFLINE_TOKEN = ".".join(
    [
        _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()),
        _b64url(
            json.dumps(
                {
                    "iss": "https://offline.invalid",
                    "sub": "ferry-conformance-offline",
                    "email": "offline@ferry.invalid",
                    "exp": 4102444800,  # 2100-01-01
                }
            ).encode()
        ),
        "",
    ]
)
# client.py decodes the claims with the standard (not URL-safe) alphabet: keep them free of - and _.
assert not set(OFFLINE_TOKEN.split(".")[1]) & set("-_"), "re-word the stand-in token's claims"


class _Response:
    status = 200

    def __init__(self, data: bytes) -> None:
        self.data = data


def _offline_request(method, url, *args, **kwargs):
    if method == "GET" and url == TOKEN_URL:
        return _Response(OFFLINE_TOKEN.encode())
    raise RuntimeError(f"ferry conformance runs offline: refusing {method} {url}")


urllib3.request = _offline_request

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(sock: socket.socket, address) -> None:
    if sock.family == socket.AF_UNIX:
        return
    host = address[0] if isinstance(address, tuple) else address
    if host in ("127.0.0.1", "::1", "localhost"):
        return
    raise OSError(f"ferry conformance runs offline: refusing to connect to {address!r}")


def _connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def _connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


socket.socket.connect = _connect  # type: ignore[method-assign]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]


def pytest_sessionfinish(session, exitstatus) -> None:
    path = os.environ.get("FERRY_CONFORMANCE_SUMMARY")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not path or reporter is None:
        return
    stats = {key: len(reports) for key, reports in reporter.stats.items() if key}
    stats["exitstatus"] = int(exitstatus)
    with open(path, "w") as f:
        json.dump(stats, f)
