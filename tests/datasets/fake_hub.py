"""A Hugging Face Hub stand-in on loopback: exactly the endpoints huggingface_hub calls for a
dataset download, so the real client code runs against it (``HF_ENDPOINT=http://127.0.0.1:PORT``).

- ``GET /api/datasets/<repo>/revision/<rev>?blobs=true``: commit id and files (size, git blob
  id, LFS sha256), as ``HfApi.repo_info(files_metadata=True)`` reads them;
- ``HEAD|GET /datasets/<repo>/resolve/<rev>/<path>``: ``X-Repo-Commit``, ``ETag``,
  ``Content-Length``; LFS files answer with a redirect to ``/cdn/<sha256>`` carrying
  ``X-Linked-Etag`` / ``X-Linked-Size``, as the real Hub does;
- ``GET /cdn/<sha256>``: the bytes, honouring ``Range: bytes=N-`` (206 + ``Content-Range``);
- gated repos answer 401 with ``X-Error-Code: GatedRepo`` unless the right bearer token is sent;
- ``stall_after`` bytes into a body the server stops sending until ``resume`` is set, so a test
  can kill a client mid-file at a known point;
- model repos too (``/api/models/<repo>/revision/<rev>``, ``/<repo>/resolve/<rev>/<path>``) and
  what ``HfApi.create_repo`` / ``upload_folder`` call: ``POST /api/repos/create``,
  ``/api/validate-yaml``, ``/api/models/<repo>/preupload/<rev>`` (every file "regular") and
  ``/api/models/<repo>/commit/<rev>`` (the NDJSON commit, applied as a new commit); writes need
  ``Authorization: Bearer <write_token>``.

Every request is logged as (method, path, Range header, body bytes sent), before its reply is
sent, so a client that has its answer always finds the request in the log.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

LFS_THRESHOLD = 1024  # files larger than this are "LFS" (sha256 ETag, CDN redirect)
CHUNK = 64 * 1024


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclasses.dataclass
class FakeRepo:
    files: dict[str, bytes]
    token: str | None = None  # gated: this bearer token is required for file access
    commit: str = ""

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if len(data) > LFS_THRESHOLD else git_sha1(data)


@dataclasses.dataclass
class Logged:
    method: str
    path: str
    range: str | None
    sent: int


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.log: list[Logged] = []
        self.stall_after: int | None = None
        self.write_token = "hf_fake_write_token"
        self.resume = threading.Event()
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                hub._serve(self, head=True)

            def do_GET(self) -> None:
                hub._serve(self, head=False)

            def do_POST(self) -> None:
                hub._post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo_id: str, files: dict[str, bytes], token: str | None = None) -> str:
        digest = hashlib.sha1(json.dumps({p: hashlib.sha256(d).hexdigest() for p, d in sorted(files.items())}).encode())
        repo = FakeRepo(dict(files), token, digest.hexdigest())
        self.repos[repo_id] = repo
        return repo.commit

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- request handling ------------------------------------------------------------------
    def _record(self, handler: BaseHTTPRequestHandler, sent: int) -> None:
        handler.logged.sent = sent  # the entry was logged before any reply byte left (no race with the client)

    def _error(self, handler: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", message)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
        self._record(handler, 0)

    def _repo(self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str) -> FakeRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(handler, 404, "RepoNotFound", f"Repository Not Found for url: {handler.path}.")
            return None
        if revision not in ("main", repo.commit):
            self._error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo

    def _serve(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        handler.logged = Logged(handler.command, urlparse(handler.path).path, handler.headers.get("Range"), 0)
        with self._lock:
            self.log.append(handler.logged)
        parts = unquote(urlparse(handler.path).path).strip("/").split("/")
        if parts[:2] == ["api", "datasets"] and len(parts) >= 6 and parts[4] == "revision":
            self._info(handler, f"{parts[2]}/{parts[3]}", parts[5])
        elif parts[0] == "datasets" and len(parts) >= 6 and parts[3] == "resolve":
            self._resolve(handler, f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:]), head)
        elif parts[0] == "cdn" and len(parts) == 2:
            self._cdn(handler, parts[1], head)
        elif parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
            self._info(handler, f"{parts[2]}/{parts[3]}", parts[5])
        elif parts[0] == "api" and len(parts) >= 6 and parts[4] == "tree":
            self._tree(handler, f"{parts[2]}/{parts[3]}", parts[5], "/".join(parts[6:]))
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(handler, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
        else:
            self._error(handler, 404, "EntryNotFound", f"no route {handler.path}")

    def _info(self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str) -> None:
        repo = self._repo(handler, repo_id, revision)
        if repo is None:
            return
        siblings = []
        for path, data in sorted(repo.files.items()):
            entry = {"rfilename": path, "size": len(data), "blobId": git_sha1(data)}
            if len(data) > LFS_THRESHOLD:
                entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            siblings.append(entry)
        self._json_reply(handler, {"id": repo_id, "sha": repo.commit, "private": False,
                                   "gated": "auto" if repo.token else False, "siblings": siblings})

    def _tree(self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str, under: str) -> None:
        """``list_repo_tree(recursive=True)``: every file (and folder) under ``under``, one page."""
        repo = self._repo(handler, repo_id, revision)
        if repo is None:
            return
        entries, folders = [], set()
        for path, data in sorted(repo.files.items()):
            if under and not path.startswith(under.rstrip("/") + "/"):
                continue
            folders.update("/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1))
            entry = {"type": "file", "oid": git_sha1(data), "size": len(data), "path": path}
            if len(data) > LFS_THRESHOLD:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "oid": git_sha1(f.encode()), "size": 0, "path": f} for f in sorted(folders)]
        self._json_reply(handler, entries)

    def _resolve(self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self._repo(handler, repo_id, revision)
        if repo is None:
            return
        if repo.token and handler.headers.get("Authorization") != f"Bearer {repo.token}":
            self._error(handler, 401, "GatedRepo",
                        f"Access to dataset {repo_id} is restricted. You must have access to it and be authenticated.")
            return
        if path not in repo.files:
            self._error(handler, 404, "EntryNotFound", f"{path} does not exist on \"{revision}\"")
            return
        data = repo.files[path]
        etag = repo.etag(path)
        if len(data) > LFS_THRESHOLD:
            handler.send_response(302)
            handler.send_header("Location", f"{self.endpoint}/cdn/{etag}")
            handler.send_header("X-Repo-Commit", repo.commit)
            handler.send_header("X-Linked-Etag", f'"{etag}"')
            handler.send_header("X-Linked-Size", str(len(data)))
            handler.send_header("ETag", f'"{git_sha1(data)}"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            self._record(handler, 0)
            return
        self._body(handler, data, head, {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"'})

    def _cdn(self, handler: BaseHTTPRequestHandler, sha: str, head: bool) -> None:
        for repo in self.repos.values():
            for path, data in repo.files.items():
                if len(data) > LFS_THRESHOLD and repo.etag(path) == sha:
                    # huggingface_hub follows a redirect to the same host (this one) and reads the
                    # commit from the final response: give it, as the real Hub's first hop does.
                    self._body(handler, data, head, {"ETag": f'"{sha}"', "X-Repo-Commit": repo.commit})
                    return
        self._error(handler, 404, "EntryNotFound", f"no blob {sha}")

    def _body(self, handler: BaseHTTPRequestHandler, data: bytes, head: bool, headers: dict[str, str]) -> None:
        start = 0
        requested = handler.headers.get("Range")
        if requested and requested.startswith("bytes=") and not head:
            start = int(requested[len("bytes="):].split("-")[0] or 0)
        status = 206 if start else 200
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(len(data) - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        sent = 0
        try:
            if not head:
                for offset in range(start, len(data), CHUNK):
                    handler.wfile.write(data[offset:offset + CHUNK])
                    handler.wfile.flush()
                    sent += len(data[offset:offset + CHUNK])
                    if self.stall_after is not None and sent >= self.stall_after:
                        self.resume.wait(timeout=300)  # hold the connection open, mid-file
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a killed download): log what was sent
        self._record(handler, sent)

    # ---- writes (create_repo, upload_folder) ---------------------------------------------------
    def _json_reply(self, handler: BaseHTTPRequestHandler, payload: dict | list, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        self._record(handler, len(body))

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        handler.logged = Logged("POST", urlparse(handler.path).path, None, 0)
        with self._lock:
            self.log.append(handler.logged)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if handler.headers.get("Authorization") != f"Bearer {self.write_token}":
            self._error(handler, 401, "Unauthorized", "Invalid credentials in Authorization header")
            return
        parts = unquote(urlparse(handler.path).path).strip("/").split("/")
        if parts == ["api", "repos", "create"]:
            request = json.loads(body)
            repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
            if repo_id in self.repos:
                self._error(handler, 409, "RepoExists", "You already created this model repo")
                return
            self.add(repo_id, {})
            self._json_reply(handler, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id})
        elif parts == ["api", "validate-yaml"]:
            self._json_reply(handler, {"errors": [], "warnings": []})
        elif parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("preupload", "commit"):
            repo = self._repo(handler, f"{parts[2]}/{parts[3]}", parts[5])
            if repo is None:
                return
            if parts[4] == "preupload":
                files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                         for f in json.loads(body)["files"]]
                self._json_reply(handler, {"files": files, "commitOid": repo.commit})
                return
            files = dict(repo.files)
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
            repo_id = f"{parts[2]}/{parts[3]}"
            commit = self.add(repo_id, files, repo.token)
            self._json_reply(handler, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{commit}", "commitOid": commit,
                                       "pullRequestUrl": None})
        else:
            self._error(handler, 404, "EntryNotFound", f"no route POST {handler.path}")
