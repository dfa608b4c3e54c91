"""The local review page: the gallery, enrollment, the unknown faces, recent events, corrections.

Opt-in (``web.enabled``), served by the daemon on ``web.host:web.port`` with the standard
library's HTTP server (no dependency, a few MB; HTTPS with ``web.tls_cert``/``web.tls_key``).

- **Who.** Every page but the login needs a session: the login form takes the token
  (``web.token``; compared in constant time, 5 tries a minute from one address and 30 from
  all of them), and sets an HttpOnly, SameSite=Strict session cookie (Secure over HTTPS)
  that lasts ``web.session_hours``.
- **CSRF.** Every form carries the session's own random token, checked on each POST, and a
  POST whose ``Origin`` is not this page is refused. No GET changes anything.
- **Threads.** Requests are served in their own threads (at most 32 connections and 8
  requests at once, 10 s socket timeout, bodies up to 8 MB), but everything that reads or
  changes the gallery, the review file or the encoder runs in the frame loop, between
  frames (``run_jobs``), as MQTT commands do: the page waits for it (up to 15 s).
- **Forms.** Parsing a form is pure Python and holds the interpreter the frame loop runs
  in, so only a session's forms are parsed (and the login's, up to 64 KB), and a form of
  more than 16 fields is refused before it is parsed.
- **Faces.** Thumbnails are served only to a session, with ``Cache-Control: no-store``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import html
import http.server
import io
import logging
import queue
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Protocol

from facegate.commands import EVENT_ID
from facegate.config import Config
from facegate.enroll import Enroller, RefusedError, add_samples, one_usable_face
from facegate.errors import FacegateError
from facegate.fleet.store import refuse_if_fleet_owned
from facegate.gallery import Gallery, Sample, printable_display_name
from facegate.images import MEDIA_TYPES, load_rgb
from facegate.livegallery import LiveGallery
from facegate.ratelimit import Bucket, LogLimiter
from facegate.review import ReviewStore, correct

log = logging.getLogger(__name__)

MAX_BODY = 8 << 20
MAX_DRAINED = 64 << 20  # a photo up to this is read and dropped, to say it was too large
MAX_LOGIN_BODY = 64 << 10  # the login form is one token (of any length a config holds)
MAX_FORM_FIELDS = 16  # the largest form of the page has 5
GROUP_ID = re.compile(r"[1-9][0-9]{0,14}")  # a review group, as the page writes it (ASCII digits only)
MAX_CLIENTS = 8  # requests served at once
MAX_CONNECTIONS = 32  # connections open at once (each a thread)
MAX_SESSIONS = 16
LOGINS_PER_MINUTE = 5  # tries from one address
LOGINS_PER_MINUTE_ALL = 30  # from every address together
MAX_LOGIN_ADDRESSES = 256  # addresses whose tries are remembered
JOB_TIMEOUT_S = 15.0
COOKIE = "facegate_session"


class UnavailableError(FacegateError):
    """The frame loop could not take or finish a page's job: 503, try again later."""


class Host(Protocol):
    """What the page needs of the daemon (``facegate.daemon.Daemon``)."""

    config: Config
    live: LiveGallery
    enroller: Enroller
    review: ReviewStore | None
    op: Any

    @property
    def gallery(self) -> Gallery: ...

    def recent_events(self) -> list[dict[str, Any]]: ...

    def camera_faces(self) -> list[Any]: ...


@dataclasses.dataclass
class Job:
    run: Callable[[], Any]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: Any = None
    error: str | None = None


@dataclasses.dataclass
class Session:
    expires: float
    csrf: str
    flash: str = ""


class Console:
    """The page's server and its queue of jobs for the frame loop."""

    def __init__(self, daemon: Host) -> None:
        self.daemon = daemon
        self.config = daemon.config.web
        self.token = (daemon.config.web_token or "").encode()
        self.jobs: queue.Queue[Job] = queue.Queue(32)
        self.sessions: dict[str, Session] = {}
        # Guessing is limited per address, so one guesser does not lock the owner out, and
        # for all addresses together, so many addresses do not guess faster.
        self.logins: dict[str, Bucket] = {}
        self.all_logins = Bucket(LOGINS_PER_MINUTE_ALL / 60, LOGINS_PER_MINUTE_ALL)
        self.login_lock = threading.Lock()
        self.login_log = LogLimiter(log, 1.0, 10)  # a flood of guesses does not fill the journal
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def tls(self) -> bool:
        return bool(self.config.tls_cert)

    def start(self) -> None:
        server = _Server((self.config.host, self.config.port), _Handler)
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.config.tls_cert), str(self.config.tls_key))
            # The handshake happens in the request's thread, not in the accepting one, so a
            # client that never finishes it holds only its own thread (until the timeout).
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        server.console = self  # type: ignore[attr-defined]
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name="facegate-web", daemon=True)
        self.thread.start()
        scheme = "https" if self.tls else "http"
        log.info("review page on %s://%s:%d/", scheme, self.config.host, server.server_address[1])

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        while True:  # nobody will run them now
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            job.error = "the daemon is stopping"
            job.done.set()

    # --- the frame loop's side ----------------------------------------------------------

    def run_jobs(self) -> None:
        """Run what the page asked for; called by the frame loop between frames."""
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            try:
                job.result = job.run()
            except (FacegateError, RefusedError) as exc:
                job.error = str(exc)
            except Exception as exc:  # a bug in one request must not end the door
                log.exception("review page job failed")
                job.error = f"internal error: {type(exc).__name__}"
            job.done.set()

    def call(self, run: Callable[[], Any]) -> Any:
        """Run ``run`` in the frame loop and return its result; FacegateError if it failed."""
        job = Job(run)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise UnavailableError("the device is busy; try again in a moment") from None
        if not job.done.wait(JOB_TIMEOUT_S):
            raise UnavailableError("the device did not answer in time (is the camera running?)")
        if job.error is not None:
            raise FacegateError(job.error)
        return job.result

    # --- sessions -------------------------------------------------------------------------

    def _may_try(self, address: str) -> bool:
        with self.login_lock:
            bucket = self.logins.pop(address, None)
            if bucket is None:
                bucket = Bucket(LOGINS_PER_MINUTE / 60, LOGINS_PER_MINUTE)
                if len(self.logins) >= MAX_LOGIN_ADDRESSES:  # forget the longest unseen
                    del self.logins[next(iter(self.logins))]
            self.logins[address] = bucket  # last in the dict: the most recently seen
            return bucket.take() and self.all_logins.take()

    def login(self, token: str, address: str) -> str | None:
        if not self._may_try(address):
            return None
        if not hmac.compare_digest(token.encode(), self.token):
            return None
        now = time.monotonic()
        sid = secrets.token_urlsafe(32)
        with self.login_lock:  # requests run in threads: one login changes the sessions at a time
            sessions = {k: v for k, v in self.sessions.items() if v.expires > now}
            while len(sessions) >= MAX_SESSIONS:
                del sessions[min(sessions, key=lambda k: sessions[k].expires)]
            sessions[sid] = Session(now + self.config.session_hours * 3600, secrets.token_urlsafe(24))
            self.sessions = sessions
        return sid

    def logout(self, sid: str | None) -> None:
        with self.login_lock:
            self.sessions.pop(sid or "", None)

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        found = self.sessions.get(sid)
        if found is None or found.expires < time.monotonic():
            with self.login_lock:  # not while a login copies the table: it would fail half way
                self.sessions.pop(sid, None)
            return None
        return found

    # --- what the page shows and does (run in the frame loop) --------------------------------

    def snapshot(self) -> dict[str, Any]:
        d = self.daemon
        review = d.review
        people = d.gallery.people()
        return {
            "people": people,
            "groups": review.groups() if review is not None else None,
            "events": d.recent_events(),
            "corrections": {p.name: len(d.gallery.negatives(p.name)) for p in people},
        }

    def enroll(self, name: str, display: str | None, photo: bytes | None) -> str:
        d = self.daemon
        refuse_if_fleet_owned(d.gallery, name, "enroll")  # before any work
        if photo is not None:
            rgb = load_rgb(io.BytesIO(photo), "the uploaded photo")
            sample = d.enroller.sample_from_rgb(rgb, "review page upload")
        else:
            face = one_usable_face(d.camera_faces(), "camera frame", "stand alone in front of the camera")
            vector = d.enroller.encoder.embed(face.chip)[0]
            sample = Sample(
                vector, "review page, from the camera", {k: round(v, 4) for k, v in face.quality.items()}
            )
        d.live.writable()
        person, alike = add_samples(d.gallery, name, [sample], d.op, display)
        said = f"{person.name} enrolled ({person.embeddings} embedding(s))"
        return "; ".join([said, *(f"warning: {a}" for a in alike)])

    def remove(self, name: str) -> str:
        d = self.daemon
        d.live.writable()
        refuse_if_fleet_owned(d.gallery, name)
        d.gallery.remove(name)
        return f"{name} removed"

    def review(self, action: str, group: int, name: str | None, display: str | None) -> str:
        d = self.daemon
        if d.review is None:
            raise FacegateError("review is off on this device (review.enabled)")
        if action == "assign":
            d.live.writable()
            person, alike = d.review.assign(group, str(name), d.gallery, display, d.op)
            return "; ".join([f"group {group} enrolled as {person.name}", *(f"warning: {a}" for a in alike)])
        if action == "ignore":
            d.review.ignore(group)
            return f"group {group} ignored: this stranger is no longer reported"
        d.review.delete(group)
        return f"group {group} deleted"

    def correct(self, event_id: str, name: str) -> str:
        d = self.daemon
        if d.review is None:
            raise FacegateError("review is off on this device (review.enabled)")
        d.live.writable()
        done = correct(d.review, d.gallery, event_id, d.op, name)
        return f"recorded: that face was not {done['not']} ({done['corrections']} correction(s) now)"

    def crop(self, group: int) -> bytes:
        if self.daemon.review is None:
            raise FacegateError("review is off")
        return self.daemon.review.crop(group)


class _Server(http.server.ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_CONNECTIONS`` at once: more are closed at once
    (idle ones end after the handler's timeout), so a flood of connections costs bounded threads."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.connections = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.connections.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "facegate"
    sys_version = ""
    timeout = 10
    protocol_version = "HTTP/1.1"

    @property
    def console(self) -> Console:
        return self.server.console  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s: " + format, self.client_address[0], *args)

    def handle_one_request(self) -> None:
        if not self.console.slots.acquire(blocking=False):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            super().handle_one_request()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            self.console.slots.release()

    # --- plumbing ---------------------------------------------------------------------------

    def _sid(self) -> str | None:
        for part in self.headers.get("Cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == COOKIE:
                return value
        return None

    def _send(
        self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", **headers: str
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" on the
        # page's own POSTs, and the origin check below could not tell them from another site's.
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'",
        )
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, where: str, **headers: str) -> None:
        self._send(303, b"", Location=where, **headers)

    def _body(self, limit: int) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(411, b"length required")
            return None
        if not 0 <= length <= limit:
            self.close_connection = True
            self._send(413, b"too large")
            return None
        return self.rfile.read(length)

    def _photo_too_large(self) -> bool:
        """A photo over ``MAX_BODY`` sent by a logged-in page (a phone's 48 MP JPEG): read and
        dropped, so that the page says why instead of the browser's "connection reset" (the
        connection closed under an upload still being sent), up to ``MAX_DRAINED``."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return False
        session = self.console.session(self._sid())
        if not MAX_BODY < length <= MAX_DRAINED or session is None or not self._same_origin():
            return False
        left = length
        while left > 0:
            try:
                chunk = self.rfile.read(min(left, 1 << 16))
            except OSError:  # the socket's timeout: a client that said more than it sends
                chunk = b""
            if not chunk:
                self.close_connection = True
                return True
            left -= len(chunk)
        session.flash = (
            f"Refused: the photo is {length / (1 << 20):.0f} MB, more than the {MAX_BODY >> 20} MB "
            "this page takes; send a smaller copy (a phone's 12 megapixel JPEG is 2-5 MB)"
        )
        self._redirect("/")
        return True

    def _form(self, body: bytes) -> dict[str, Any] | None:
        """The form's fields, or None (and a 400 sent) for a form no page of ours makes: more
        than ``MAX_FORM_FIELDS`` fields, or multipart without a boundary. Counted before any
        parsing, which is pure Python and holds the interpreter the frame loop runs in."""
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            header = Message()
            header["Content-Type"] = ctype
            boundary = header.get_param("boundary")
            if not isinstance(boundary, str) or not boundary or not boundary.isascii():
                self._send(400, b"multipart form without a boundary")
                return None
            if body.count(b"--" + boundary.encode()) > MAX_FORM_FIELDS + 1:
                self._send(400, b"too many form fields")
                return None
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body
            )
            fields: dict[str, Any] = {}
            for part in message.iter_parts():
                key = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                fields[str(key)] = data if part.get_filename() else data.decode("utf-8", "replace")
            return fields
        text = body.decode("utf-8", "replace")
        try:
            parsed = urllib.parse.parse_qs(text, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:  # more fields than that
            self._send(400, b"too many form fields")
            return None
        return {k: v[0] for k, v in parsed.items()}

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        if origin is None:
            return True  # no Origin: not a browser's cross-site POST (browsers send it on those)
        # "null" (a sandboxed frame, a data: page) is refused with any other site
        return urllib.parse.urlsplit(origin).netloc == self.headers.get("Host", "")

    # --- routes ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/login":
            self._send(200, _login_page(""))
            return
        session = self.console.session(self._sid())
        if session is None:
            self._redirect("/login")
            return
        try:
            if path == "/":
                data = self.console.call(self.console.snapshot)
                flash, session.flash = session.flash, ""
                self._send(200, _main_page(data, session.csrf, flash, self.console.daemon.review is not None))
            elif path.startswith("/face/") and path.endswith(".jpg") and GROUP_ID.fullmatch(path[6:-4]):
                group = int(path[6:-4])
                self._send(200, self.console.call(lambda: self.console.crop(group)), "image/jpeg")
            else:
                self._send(404, b"not found")
        except FacegateError as exc:
            self._send(503 if isinstance(exc, UnavailableError) else 404, html.escape(str(exc)).encode())

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/enroll" and self._photo_too_large():
            return
        body = self._body(MAX_LOGIN_BODY if path == "/login" else MAX_BODY)
        if body is None:
            return
        session = None if path == "/login" else self.console.session(self._sid())
        if path != "/login" and session is None:
            # refused before its body is parsed: without a session only the login's is
            self._send(403, b"not logged in, or the form is stale: reload the page")
            return
        if not self._same_origin():
            self._send(403, b"cross-site request refused")
            return
        form = self._form(body)
        if form is None:
            return
        if path == "/login":
            sid = self.console.login(str(form.get("token", "")), self.client_address[0])
            if sid is None:
                self.console.login_log.warning("review page: failed login from %s", self.client_address[0])
                self._send(403, _login_page("Wrong token (or too many tries: wait a minute)."))
                return
            secure = "; Secure" if self.console.tls else ""
            cookie = f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/{secure}"
            self._redirect("/", Set_Cookie=cookie)
            return
        csrf = str(form.get("csrf", ""))
        if session is None or not hmac.compare_digest(csrf.encode(), session.csrf.encode()):
            self._send(403, b"not logged in, or the form is stale: reload the page")
            return
        if path == "/logout":
            self.console.logout(self._sid())
            self._redirect("/login", Set_Cookie=f"{COOKIE}=; Max-Age=0; Path=/")
            return
        try:
            action = self._action(path, form)
            session.flash = self.console.call(action) if action is not None else "unknown action"
        except FacegateError as exc:
            session.flash = f"Refused: {exc}"
        self._redirect("/")

    def _action(self, path: str, form: dict[str, Any]) -> Callable[[], str] | None:
        """The change a form asks for, its fields checked here (the network's boundary)."""
        c = self.console
        name = str(form.get("name", "")).strip()
        display = str(form.get("display_name", "")).strip() or None
        if display is not None and not printable_display_name(display):
            raise FacegateError("a display name is 1-128 printable characters")
        if path == "/enroll":
            photo = form.get("photo")
            photo = photo if isinstance(photo, bytes) and photo else None
            if photo is None and form.get("from_camera") != "1":
                raise FacegateError("choose a photo, or enroll from the camera")
            return lambda: c.enroll(name, display, photo)
        if path == "/remove":
            return lambda: c.remove(name)
        if path in ("/review/assign", "/review/ignore", "/review/delete"):
            group = str(form.get("group", ""))
            if GROUP_ID.fullmatch(group) is None:
                raise FacegateError("no such group")
            action = path.rsplit("/", 1)[1]
            return lambda: c.review(action, int(group), name or None, display)
        if path == "/correct":
            event_id = str(form.get("event_id", ""))
            if EVENT_ID.fullmatch(event_id) is None:
                raise FacegateError("no such event")
            return lambda: c.correct(event_id, name)
        return None


# --- the pages ----------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:60em;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%}
td,th{padding:.3em .5em;text-align:left;border-bottom:1px solid #eee}
form.inline{display:inline}.flash{background:#eef6ee;border:1px solid #9c9;padding:.5em}
.refused{background:#fbeeee;border-color:#c99}img.face{width:96px;height:96px;border-radius:6px}
.group{display:inline-block;border:1px solid #ddd;border-radius:8px;padding:.5em;margin:.3em;
vertical-align:top}
input[type=text]{width:9em}button{margin:.1em}
"""


def _page(title: str, body: str) -> bytes:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<meta name=viewport content='width=device-width'><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    ).encode()


def _login_page(message: str) -> bytes:
    note = f"<p class='flash refused'>{html.escape(message)}</p>" if message else ""
    return _page(
        "facegate: log in",
        f"<h1>facegate</h1>{note}<form method=post action=/login>"
        "<label>Token <input type=password name=token id=token autocomplete=current-password></label> "
        "<button type=submit id=login>Log in</button></form>",
    )


def _form(action: str, csrf: str, inner: str, multipart: bool = False) -> str:
    enc = " enctype=multipart/form-data" if multipart else ""
    return (
        f"<form class=inline method=post action={action}{enc}>"
        f"<input type=hidden name=csrf value='{html.escape(csrf)}'>{inner}</form>"
    )


def _main_page(data: dict[str, Any], csrf: str, flash: str, review: bool) -> bytes:
    e = html.escape
    parts = ["<h1>facegate</h1>"]
    if flash:
        kind = "flash refused" if flash.startswith("Refused") else "flash"
        parts.append(f"<p class='{kind}' id=flash>{e(flash)}</p>")
    parts.append(_form("/logout", csrf, "<button id=logout>Log out</button>"))
    rows = "".join(
        f"<tr><td>{e(p.name)}</td><td>{e(p.display_name)}</td><td>{p.embeddings}</td>"
        f"<td>{data['corrections'].get(p.name, 0)}</td><td>"
        + _form(
            "/remove",
            csrf,
            f"<input type=hidden name=name value='{e(p.name)}'>"
            f"<button id='remove-{e(p.name)}'>Remove</button>",
        )
        + "</td></tr>"
        for p in data["people"]
    )
    parts.append(
        "<h2>Enrolled</h2><table id=people><tr><th>name</th><th>shown as</th><th>embeddings</th>"
        f"<th>corrections</th><th></th></tr>{rows}</table>"
    )
    parts.append(
        "<h2>Enroll</h2>"
        + _form(
            "/enroll",
            csrf,
            "<input type=text name=name id=enroll-name placeholder=name required> "
            "<input type=text name=display_name placeholder='shown as'> "
            f"<input type=file name=photo id=enroll-photo accept={','.join(MEDIA_TYPES)}> "
            "<button id=enroll-upload>Enroll from photo</button> "
            "<button name=from_camera value=1 id=enroll-camera>Enroll from camera</button>",
            multipart=True,
        )
    )
    parts.append("<h2>Unknown faces</h2>")
    if not review:
        parts.append("<p>Review is off (<code>review.enabled</code>).</p>")
    elif not data["groups"]:
        parts.append("<p id=no-unknowns>None kept.</p>")
    else:
        for g in data["groups"]:
            face = f"<img class=face alt='group {g.id}' src=/face/{g.id}.jpg>" if g.has_crop else ""
            hidden = f"<input type=hidden name=group value={g.id}>"
            actions = (
                _form(
                    "/review/assign",
                    csrf,
                    f"{hidden}<input type=text name=name placeholder=name required id=assign-{g.id}> "
                    f"<button id=assign-button-{g.id}>Enroll</button>",
                )
                + "<br>"
                + _form("/review/ignore", csrf, f"{hidden}<button id=ignore-{g.id}>Ignore</button>")
                + _form("/review/delete", csrf, f"{hidden}<button id=delete-{g.id}>Delete</button>")
                if g.status == "open"
                else "ignored "
                + _form("/review/delete", csrf, f"{hidden}<button id=delete-{g.id}>Forget</button>")
            )
            parts.append(
                f"<div class=group id=group-{g.id}>{face}<div>group {g.id}: {g.faces} face(s), "
                f"seen {g.seen}x, last {e(g.last_seen)}</div>{actions}</div>"
            )
    rows = ""
    for event in data["events"]:
        fix = ""
        if review and event.get("accepted") and event.get("event_id"):
            fix = _form(
                "/correct",
                csrf,
                f"<input type=hidden name=event_id value='{e(str(event['event_id']))}'>"
                f"<input type=hidden name=name value='{e(str(event['identity']))}'>"
                f"<button id=correct-{e(str(event['event_id']))}>Not {e(str(event['identity']))}</button>",
            )
        distance = event.get("distance")
        rows += (
            f"<tr><td>{e(str(event.get('time', '')))}</td><td>{e(str(event.get('event_type', '')))}</td>"
            f"<td>{e(str(event.get('identity', '')))}</td>"
            f"<td>{'' if distance is None else f'{distance:.3f}'}</td><td>{fix}</td></tr>"
        )
    parts.append(
        "<h2>Recent events</h2><table id=events><tr><th>time</th><th>event</th><th>who</th>"
        f"<th>distance</th><th></th></tr>{rows}</table>"
    )
    return _page("facegate", "".join(parts))
