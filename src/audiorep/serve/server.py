"""A small threaded HTTP server for the web tool: static page, JSON API, Server-Sent Events.

Standard library only (:class:`http.server.ThreadingHTTPServer`). Routes:

====== =========================== ==================================================
GET    ``/``, ``/static/<file>``   the page (``static/index.html``, ``app.js``, ``style.css``)
GET    ``/api/info``               models, codec, vocoder, judge, limits
GET    ``/api/model?name=N``       load a transformer (lazily; may download) -> its kind, classes
POST   ``/api/upload?name=F``      the request body is the file -> ``{"id", "kind", ...}``
POST   ``/api/codec``              ``{"upload": id}`` -> the codec round trip's report and files
POST   ``/api/sample``             sampling settings -> ``{"job": id}``
GET    ``/api/jobs/<id>``          the job's status and result
GET    ``/api/jobs/<id>/events``   ``text/event-stream``: status, progress, spectrogram, done /
                                   failed / cancelled (:mod:`audiorep.serve.jobs`)
POST   ``/api/jobs/<id>/cancel``   stop a job
GET    ``/files/<id>/<name>``      result files (wav / npz / png / codes; ``?download=1``
                                   to save; byte ranges for seeking)
====== =========================== ==================================================

It is meant for one user on their own machine: it binds 127.0.0.1 by default, answers only
requests whose ``Host`` is a loopback name when bound there (no DNS rebinding), and every
POST must carry the header ``X-Audiorep: 1``, which a cross-site form cannot send.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from audiorep.serve.app import App
from audiorep.serve.backend import BackendError
from audiorep.serve.jobs import TERMINAL

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
STATIC_FILES = ("index.html", "app.js", "style.css")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".wav": "audio/wav",
    ".json": "application/json",
}
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'"
)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
KEEPALIVE_S = 15.0
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServeServer(ThreadingHTTPServer):
    """The HTTP server; ``app`` is the :class:`App` its handlers call."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.bound_host = address[0]
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://[{host}]:{port}/" if ":" in str(host) else f"http://{host}:{port}/"


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Handler(BaseHTTPRequestHandler):
    server: ServeServer
    server_version = "audiorep-serve"

    # ------------------------------------------------------------------ plumbing

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        logger.debug("%s " + format, self.address_string(), *args)

    @property
    def app(self) -> App:
        return self.server.app

    def _host_ok(self) -> bool:
        if not is_loopback(self.server.bound_host):
            return True  # the user chose to serve beyond this machine (warned at start)
        host = (self.headers.get("Host") or "").strip()
        if host.startswith("["):
            name = host[1:].partition("]")[0]
        else:
            name = host.rpartition(":")[0] if host.count(":") == 1 else host
        return is_loopback(name.lower())

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required") from None
        limit = int(self.app.config.max_upload_mb * 2**20)
        if length < 0 or length > limit:
            raise HttpError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"{length / 2**20:.1f} MB; uploads are limited to "
                f"{self.app.config.max_upload_mb:g} MB (--max-upload-mb)",
            )
        chunks, left = [], length
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                raise HttpError(HTTPStatus.BAD_REQUEST, "the request body ended early")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _json_body(self) -> dict[str, Any]:
        try:
            obj = json.loads(self._body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"the body is not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return obj

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            if not self._host_ok():
                raise HttpError(HTTPStatus.FORBIDDEN, "unexpected Host header")
            if method == "POST" and self.headers.get("X-Audiorep") != "1":
                raise HttpError(HTTPStatus.FORBIDDEN, "POST requests need the X-Audiorep header")
            route = getattr(self, f"_{method.lower()}_routes")(url.path, query)
            if route is None:
                raise HttpError(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")
            route()
        except HttpError as exc:
            self._json({"error": str(exc)}, exc.status)
        except (BackendError, ValueError) as exc:  # bad input: the user's answer
            self._json({"error": self.app.scrub(str(exc))}, HTTPStatus.BAD_REQUEST)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser left
        except Exception as exc:  # a bug: answer, log, keep serving
            logger.exception("error serving %s %s", method, self.path)
            try:
                text = self.app.scrub(f"internal error: {type(exc).__name__}: {exc}")
                self._json({"error": text}, 500)
            except OSError:
                pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    # ------------------------------------------------------------------ routes

    def _get_routes(self, path: str, query: dict[str, str]):
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")] if path != "/" else []
        if not parts:
            return lambda: self._static("index.html")
        if parts[0] == "static" and len(parts) == 2:
            return lambda: self._static(parts[1])
        if parts == ["favicon.ico"]:
            return lambda: self._send(204, b"", "image/png")
        if parts == ["api", "info"]:
            return lambda: self._json(self.app.info())
        if parts == ["api", "model"]:
            return lambda: self._json(self.app.model_info(query.get("name", "")))
        if len(parts) == 3 and parts[:2] == ["api", "jobs"]:
            return lambda: self._json(self._job(parts[2]).summary())
        if len(parts) == 4 and parts[:2] == ["api", "jobs"] and parts[3] == "events":
            return lambda: self._events(parts[2])
        if len(parts) == 3 and parts[0] == "files":
            return lambda: self._file(parts[1], parts[2], query.get("download") == "1")
        return None

    def _post_routes(self, path: str, query: dict[str, str]):
        parts = path.strip("/").split("/")
        if parts == ["api", "upload"]:
            return lambda: self._json(self.app.save_upload(query.get("name", ""), self._body()))
        if parts == ["api", "codec"]:
            return lambda: self._json(self.app.codec_round_trip(self._json_body().get("upload")))
        if parts == ["api", "sample"]:
            return lambda: self._json({"job": self.app.start_sampling(self._json_body()).id})
        if len(parts) == 4 and parts[:2] == ["api", "jobs"] and parts[3] == "cancel":
            return lambda: self._json({"cancelled": self.app.jobs.cancel(self._job(parts[2]).id)})
        return None

    def _job(self, job_id: str):
        job = self.app.jobs.get(job_id)
        if job is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such job: {job_id}")
        return job

    def _static(self, name: str) -> None:
        if name not in STATIC_FILES:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such file: {name}")
        body = (STATIC / name).read_bytes()
        self._send(200, body, CONTENT_TYPES[Path(name).suffix])

    def _file(self, rid: str, name: str, download: bool) -> None:
        path = self.app.result_file(rid, name)
        if path is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such result file: {rid}/{name}")
        data = path.read_bytes()
        ctype = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        extra = {"Accept-Ranges": "bytes"}
        if download:
            extra["Content-Disposition"] = f'attachment; filename="{name}"'
        m = _RANGE.match(self.headers.get("Range", "").strip())
        if m and (m.group(1) or m.group(2)):
            n = len(data)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), n - 1) if m.group(2) else n - 1
            else:  # the last N bytes
                start, end = max(0, n - int(m.group(2))), n - 1
            if start >= n or start > end:
                self._send(416, b"", ctype, {**extra, "Content-Range": f"bytes */{n}"})
                return
            extra["Content-Range"] = f"bytes {start}-{end}/{n}"
            self._send(206, data[start : end + 1], ctype, extra)
            return
        self._send(200, data, ctype, extra)

    def _events(self, job_id: str) -> None:
        job = self._job(job_id)
        try:
            seq = int(self.headers.get("Last-Event-ID") or 0)
        except ValueError:
            seq = 0
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(b"retry: 1000\n\n")
        self.wfile.flush()
        closed = self.app.jobs.closed
        while not closed.is_set():
            events = job.events_after(seq, KEEPALIVE_S)
            if not events:
                self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
                continue
            for seq, kind, data in events:
                text = json.dumps(data, separators=(",", ":"))
                self.wfile.write(f"id: {seq}\nevent: {kind}\ndata: {text}\n\n".encode())
            self.wfile.flush()
            if any(kind in TERMINAL for _, kind, _ in events):
                break
        self.close_connection = True


def make_server(app: App, host: str = "127.0.0.1", port: int = 8765) -> ServeServer:
    """A :class:`ServeServer` bound to ``(host, port)`` (port 0: a free one); call
    ``serve_forever()`` on it, and ``shutdown()`` + ``app.close()`` to stop."""
    return ServeServer((host, port), app)


def serve_in_thread(app: App, host: str = "127.0.0.1", port: int = 0) -> ServeServer:
    """Start :func:`make_server` on a daemon thread (tests, notebooks); stop it with
    :func:`stop`."""
    server = make_server(app, host, port)
    threading.Thread(target=server.serve_forever, daemon=True, name="audiorep-serve").start()
    return server


def stop(server: ServeServer) -> None:
    """Stop the server's loop, cancel its jobs, close its socket and remove its files."""
    server.app.jobs.closed.set()
    server.shutdown()
    server.server_close()
    server.app.close()


__all__ = ["Handler", "ServeServer", "is_loopback", "make_server", "serve_in_thread", "stop"]
