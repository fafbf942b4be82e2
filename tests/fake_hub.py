"""A Hugging Face Hub stand-in on 127.0.0.1 that speaks the upload API huggingface_hub calls.

Endpoints (what `HfApi.whoami`, `create_repo` and `create_commit` of huggingface_hub 2.4 use):
- GET  /api/whoami-v2                                   -> 401 unless the token is known
- POST /api/repos/create                                -> 200, or 409 when the repo exists
- POST /api/validate-yaml                               -> README front matter check
- POST /api/{type}s/{org}/{name}/preupload/{revision}   -> every file "regular" (tests keep
  files small, so there is no LFS/Xet leg), with the oid of the stored file if any
- POST /api/{type}s/{org}/{name}/commit/{revision}      -> NDJSON commit, files stored
- GET  /api/{type}s/{org}/{name}/revision/{revision}    -> repo info (used for no-op commits)
Unknown repos answer 404 with X-Error-Code: RepoNotFound, as the Hub does.
`drop_next` makes the server close the connection, without an answer, on the next N requests
to a path containing the given fragment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml


def git_hash(data: bytes) -> str:
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


class FakeHub:
    def __init__(self, token: str = "hf_testtoken") -> None:
        self.token = token
        self.repos: dict[tuple[str, str], dict[str, Any]] = {}  # (type, id) -> {files, private}
        self.commits: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.drop: dict[str, int] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def drop_next(self, fragment: str, times: int = 1) -> None:
        self.drop[fragment] = times

    def files(self, repo_type: str, repo_id: str) -> dict[str, bytes]:
        return self.repos[(repo_type, repo_id)]["files"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with hub.lock:
                    hub.requests.append(
                        (method, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    for fragment, times in hub.drop.items():
                        if times and fragment in self.path:
                            hub.drop[fragment] = times - 1
                            self.close_connection = True
                            return  # no answer at all: a dropped connection
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self._reply(401, {"error": "Invalid credentials"})
                try:
                    status, answer, headers = hub.route(method, self.path, body)
                except KeyError:
                    status, answer = 404, {"error": "Repository not found"}
                    headers = {"X-Error-Code": "RepoNotFound"}
                self._reply(status, answer, headers)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        return Handler

    def route(self, method: str, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        path = path.split("?")[0]
        if path == "/api/whoami-v2":
            return 200, {"type": "user", "name": "tester", "orgs": []}, {}
        if path == "/api/repos/create":
            spec = json.loads(body)
            repo_type = spec.get("type") or "model"
            repo_id = f"{spec['organization']}/{spec['name']}"
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            url = f"{self.url}/{prefix}{repo_id}"
            if (repo_type, repo_id) in self.repos:
                return 409, {"error": "You already created this repo", "url": url}, {}
            self.repos[(repo_type, repo_id)] = {"files": {}, "visibility": spec.get("visibility")}
            return 200, {"url": url}, {}
        if path == "/api/validate-yaml":
            content = json.loads(body)["content"]
            yaml.safe_load(content.split("---")[1])  # raises (500) on broken front matter
            return 200, {"errors": [], "warnings": []}, {}
        m = re.fullmatch(
            r"/api/(model|dataset)s/([^/]+/[^/]+)/(preupload|commit|revision)/(.+)", path
        )
        if not m:
            return 404, {"error": f"no route {method} {path}"}, {}
        repo_type, repo_id, action, _ = m.groups()
        repo = self.repos[(repo_type, repo_id)]  # KeyError -> 404 RepoNotFound
        if action == "preupload":
            files = json.loads(body)["files"]
            answer = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_hash(repo["files"][f["path"]])
                    if f["path"] in repo["files"]
                    else None,
                }
                for f in files
            ]
            return 200, {"files": answer, "commitOid": "0" * 40}, {}
        if action == "revision":
            return (
                200,
                {"id": repo_id, "sha": "0" * 40, "private": repo["visibility"] == "private"},
                {},
            )
        lines = [json.loads(line) for line in body.decode().splitlines() if line]
        header, ops = lines[0], lines[1:]
        added = {}
        for op in ops:
            assert op["key"] == "file" and op["value"]["encoding"] == "base64", op
            added[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
        repo["files"].update(added)
        oid = hashlib.sha1(json.dumps(sorted(added)).encode()).hexdigest()
        self.commits.append(
            {"repo": repo_id, "summary": header["value"]["summary"], "files": added}
        )
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.url}/{prefix}{repo_id}/commit/{oid}"
        return 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None}, {}
