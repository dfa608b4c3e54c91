"""The review page, served by a real `facegate run` loop on a real mosquitto, driven in headless
Chromium (Debian's chromium and chromium-driver, through Selenium): enroll by upload and from
the camera, the unknown-face queue, a correction; and what an unauthenticated or cross-site
request gets. Screenshots go to $FACEGATE_SCREENSHOTS when it is set (docs/screenshots/)."""

from __future__ import annotations

import http.client
import os
import pathlib
import shutil
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from facegate.config import validate
from facegate.daemon import Daemon
from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.enroll import fingerprint
from facegate.fleet.store import GalleryStore
from facegate.gallery import Gallery
from tests.conftest import INT8_MODEL
from tests.mqtt_support import Stage
from tests.test_daemon import running
from tests.test_gallery import NOT_PRINTABLE

TOKEN = "a-long-enough-page-token"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _daemon(tmp: pathlib.Path, port: int, stage: Stage, review: bool = True, **web: Any) -> Daemon:
    config = validate(
        {
            "device": {"id": "door_web"},
            "camera": {"source": "folder", "path": str(tmp), "max_fps": 30},
            "gallery": {"path": str(tmp / "gallery.db")},
            "mqtt": {"port": port, "outbox": str(tmp / "outbox")},
            "decision": {"votes_to_decide": 3, "window": 5, "max_missing": 2},
            "review": {"enabled": review},
            "web": {"enabled": True, "port": 0, "token": TOKEN, **web},
        }
    )
    return Daemon(config, stage)


def _post(
    port: int, path: str, body: str | bytes, source: str = "127.0.0.1", **headers: str
) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    conn.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded", **headers})
    response = conn.getresponse()
    status, cookie = response.status, response.getheader("Set-Cookie") or ""  # the session, at login
    response.read()
    conn.close()
    return status, cookie


def _get(port: int, path: str, **headers: str) -> tuple[int, bytes, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    out = response.status, response.read(), response.headers
    conn.close()
    return out


@pytest.mark.pi
def test_nothing_without_the_token_nor_from_another_site(
    broker: Any, tmp_path: pathlib.Path, frames: dict[str, np.ndarray], obama_sample: Any
) -> None:
    model = fingerprint(Encoder(INT8_MODEL))
    with Gallery.open(tmp_path / "gallery.db", model) as gallery:
        gallery.add("obama", [obama_sample])
        GalleryStore(gallery).put("michelle", "Michelle", 1, obama_sample.vector[None])  # the fleet's
    stage = Stage(frames["blank"])
    with running(_daemon(tmp_path, broker.port, stage)) as daemon:
        assert daemon.console is not None
        deadline = time.monotonic() + 10
        while daemon.console.server is None and time.monotonic() < deadline:
            time.sleep(0.05)
        port = daemon.console.port
        status, _, _ = _get(port, "/")
        assert status == 303  # to the login page
        assert _get(port, "/face/1.jpg")[0] == 303
        assert _post(port, "/remove", "name=obama")[0] == 403  # no session
        assert _post(port, "/login", "token=wrong-token-wrong-token")[0] == 403
        status, cookie = _post(port, "/login", f"token={TOKEN}")
        assert status == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        sid = cookie.split(";")[0]
        page = _get(port, "/", Cookie=sid)
        assert page[0] == 200 and b"obama" in page[1]
        assert "frame-ancestors 'none'" in page[2]["Content-Security-Policy"]
        assert page[2]["Cache-Control"] == "no-store"
        csrf = page[1].split(b"name=csrf value='")[1].split(b"'")[0].decode()
        # a valid session but no (or another) CSRF token, or another site's Origin: refused
        assert _post(port, "/remove", "name=obama", Cookie=sid)[0] == 403
        stale = ("y" if csrf[0] == "x" else "x") + csrf[1:]  # one character off (never the same)
        assert _post(port, "/remove", f"name=obama&csrf={urllib.parse.quote(stale)}", Cookie=sid)[0] == 403
        body = f"name=obama&csrf={urllib.parse.quote(csrf)}"
        assert _post(port, "/remove", body, Cookie=sid, Origin="http://evil.example")[0] == 403
        assert _post(port, "/remove", body, Cookie=sid, Origin="null")[0] == 403
        # digits that str.isdigit() takes and int() does not ("²", sent as the one Latin-1 byte
        # http.server decodes it from): a 404 and a flash, not an exception in a handler or the loop
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET /face/\xb2.jpg HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n\r\n" % sid.encode())
            assert raw.recv(64).startswith(b"HTTP/1.1 404")
        for group in ("%C2%B2", "0", "1" * 16, "-1", "+1", "%D9%A3"):
            form = f"group={group}&name=obama&csrf={urllib.parse.quote(csrf)}"
            assert _post(port, "/review/assign", form, Cookie=sid)[0] == 303
            assert b"no such group" in _get(port, "/", Cookie=sid)[1], group
        form = f"name=michelle&from_camera=1&csrf={urllib.parse.quote(csrf)}"
        assert _post(port, "/enroll", form, Cookie=sid)[0] == 303
        assert b"came from the fleet; enroll it on the fleet authority" in _get(port, "/", Cookie=sid)[1]
        for display in NOT_PRINTABLE[1:]:  # (an empty display name on the form means "none")
            form = f"name=eve&display_name={urllib.parse.quote(display)}&from_camera=1"
            form += f"&csrf={urllib.parse.quote(csrf)}"
            assert _post(port, "/enroll", form, Cookie=sid)[0] == 303
            assert b"Refused: a display name is 1-128 printable characters" in _get(port, "/", Cookie=sid)[1]
        # forms no page makes are refused before they are parsed (parsing is pure Python and holds
        # the interpreter the frame loop needs): without a session nothing is parsed, the login
        # takes 64 KB, and no form more than 16 fields
        many = b"".join(
            b'--B\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % i for i in range(100_000)
        )
        multipart = {"Content-Type": "multipart/form-data; boundary=B"}
        started = time.monotonic()
        assert _post(port, "/enroll", many + b"--B--\r\n", **multipart)[0] == 403
        assert _post(port, "/enroll", many + b"--B--\r\n", Cookie=sid, **multipart)[0] == 400
        assert _post(port, "/login", b"token=" + b"x" * (64 << 10))[0] == 413
        assert time.monotonic() - started < 8.0  # parsed, they took over 10 s (the client gave up)
        assert _post(port, "/login", "&".join(f"f{i}=1" for i in range(17)))[0] == 400
        assert _post(port, "/enroll", "x", Cookie=sid, **{"Content-Type": "multipart/form-data"})[0] == 400
        # a phone's 48 MP photo: read and dropped, and the page says why (the connection closed
        # under an upload still being sent showed the browser's "connection reset"); more than
        # 64 MB, or without a session, is a 413 at once
        assert _post(port, "/enroll", b"x" * (9 << 20), Cookie=sid)[0] == 303
        assert b"Refused: the photo is 9 MB, more than the 8 MB" in _get(port, "/", Cookie=sid)[1]
        too_big = _post(port, "/enroll", "x", Cookie=sid, **{"Content-Length": str(65 << 20)})
        assert too_big[0] == 413
        assert _post(port, "/enroll", "x", **{"Content-Length": str(9 << 20)})[0] == 413
        for _ in range(5):  # the login is rate-limited: guessing stops
            _post(port, "/login", "token=guess-guess-guess-guess")
        assert _post(port, "/login", f"token={TOKEN}")[0] == 403
        # for that address: the owner, elsewhere, still logs in (loopback is all of 127/8)
        assert _post(port, "/login", f"token={TOKEN}", source="127.0.0.2")[0] == 303
        # and many addresses together guess no faster than 30 a minute
        for i in range(30):  # 10 addresses, 3 tries each: none is over its own 5
            _post(port, "/login", "token=guess-guess-guess-guess", source=f"127.0.1.{i % 10 + 1}")
        assert _post(port, "/login", f"token={TOKEN}", source="127.0.0.3")[0] == 403
    with Gallery.open(tmp_path / "gallery.db", model) as gallery:
        assert [p.name for p in gallery.people()] == ["michelle", "obama"]  # nothing was removed
        assert gallery.person("michelle").embeddings == 1  # nor added to the fleet's person


@pytest.fixture
def browser(tmp_path: pathlib.Path) -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (apt install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,800",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    folder = os.environ.get("FACEGATE_SCREENSHOTS")
    if folder:
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(pathlib.Path(folder) / f"{name}.png"))


def _context(predicate: Any) -> str:
    """The page the browser shows, for the failure message."""
    for cell in getattr(predicate, "__closure__", None) or ():
        driver = cell.cell_contents
        if hasattr(driver, "page_source"):
            return f"; at {driver.current_url}: {driver.page_source[:600]}"
    return ""


def _wait(predicate: Any, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _flashed(flash: Any, expected: str, what: str) -> None:
    """Wait for the page after a POST to say ``expected``: until it has loaded, the page before
    it (and its own flash, when it had one) is still the one read."""
    last = ""

    def said() -> bool:
        nonlocal last
        last = flash()
        return expected in last

    try:
        _wait(said, what=what)
    except AssertionError:
        raise AssertionError(f"timed out waiting for {what}: the page says {last!r}") from None


def test_enroll_review_and_correct_in_a_real_browser(
    broker: Any, tmp_path: pathlib.Path, frames: dict[str, np.ndarray], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    stage = Stage(frames["blank"])
    with running(_daemon(tmp_path, broker.port, stage)) as daemon:
        assert daemon.console is not None
        _wait(lambda: daemon.console.server, what="the page")  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{daemon.console.port}"
        browser.get(base + "/")
        assert browser.current_url.endswith("/login")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        _shot(browser, "login")
        browser.find_element(By.ID, "login").click()
        _wait(lambda: browser.find_elements(By.ID, "people"), what="the main page")

        def flash() -> str:  # "" while the page after a POST is still loading
            from selenium.common.exceptions import StaleElementReferenceException

            found = browser.find_elements(By.ID, "flash")
            try:
                return str(found[0].text) if found else ""
            except StaleElementReferenceException:  # the page changed under it
                return ""

        # enroll by upload
        browser.find_element(By.ID, "enroll-name").send_keys("obama")
        browser.find_element(By.ID, "enroll-photo").send_keys(str(PHOTOS / "obama.jpg"))
        browser.find_element(By.ID, "enroll-upload").click()
        _flashed(flash, "obama enrolled", "the enrollment")
        assert "obama" in browser.find_element(By.ID, "people").text

        # a stranger at the door: queued; enrolled from the queue
        stage.image = frames["biden"]
        _wait(lambda: daemon.counts["events"] >= 1, what="the stranger's event")
        stage.image = frames["blank"]
        browser.get(base + "/")
        group = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "div.group"), what="the queue")[0]
        thumb = group.find_element(By.TAG_NAME, "img")
        assert browser.execute_script("return arguments[0].naturalWidth", thumb) == 150
        _shot(browser, "unknown-queue")
        gid = group.get_attribute("id").split("-")[1]
        browser.find_element(By.ID, f"assign-{gid}").send_keys("biden")
        browser.find_element(By.ID, f"assign-button-{gid}").click()
        _flashed(flash, f"group {gid} enrolled as biden", "the assignment")
        assert "biden" in browser.find_element(By.ID, "people").text
        assert browser.find_elements(By.ID, "no-unknowns")

        # a known face: its event can be corrected; on obama's own face the guard refuses
        stage.image = frames["obama"]
        _wait(lambda: daemon.counts["events"] >= 2, what="obama's event")
        stage.image = frames["blank"]
        browser.get(base + "/")
        fix = _wait(
            lambda: browser.find_elements(By.CSS_SELECTOR, "button[id^=correct-]"), what="a correction"
        )
        assert fix[0].text == "Not obama"
        _shot(browser, "events")
        fix[0].click()
        _flashed(flash, "correction refused", "the correction's answer")

        # enroll from the camera: the face in front of it now (on a fresh page: the flash of the
        # correction above would otherwise be read before the enrollment's page has loaded)
        stage.image = frames["obama3"]
        browser.get(base + "/")
        time.sleep(0.3)
        browser.find_element(By.ID, "enroll-name").send_keys("barack")
        browser.find_element(By.ID, "enroll-camera").click()
        _flashed(flash, "barack enrolled", "the camera enrollment")
        assert "warning: review page, from the camera looks like obama (distance 0." in flash()
        stage.image = frames["blank"]
        _shot(browser, "gallery")

        # removed, biden is a stranger again; ignored, no longer reported; then forgotten
        browser.find_element(By.ID, "remove-biden").click()
        _flashed(flash, "biden removed", "the removal")
        assert "biden" not in browser.find_element(By.ID, "people").text
        events = daemon.counts["events"]
        stage.image = frames["biden"]
        _wait(lambda: daemon.counts["events"] > events, what="the stranger's event")
        stage.image = frames["blank"]
        browser.get(base + "/")
        group = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "div.group"), what="the queue")[0]
        gid = group.get_attribute("id").split("-")[1]
        browser.find_element(By.ID, f"ignore-{gid}").click()
        _flashed(flash, f"group {gid} ignored", "the ignore")
        events = daemon.counts["events"]
        stage.image = frames["biden"]
        _wait(lambda: daemon.counts["ignored_strangers"] >= 1, what="the ignored stranger")
        stage.image = frames["blank"]
        assert daemon.counts["events"] == events  # seen, and not reported
        browser.get(base + "/")
        forget = browser.find_element(By.ID, f"delete-{gid}")
        assert forget.text == "Forget"
        forget.click()
        _flashed(flash, f"group {gid} deleted", "the deletion")
        assert not browser.find_elements(By.CSS_SELECTOR, "div.group")
        browser.find_element(By.ID, "logout").click()
        _wait(lambda: browser.current_url.endswith("/login"), what="the logout")
        browser.get(base + "/")
        assert browser.current_url.endswith("/login")
    with Gallery.open(tmp_path / "gallery.db", fingerprint(Encoder(INT8_MODEL))) as gallery:
        assert sorted(p.name for p in gallery.people()) == ["barack", "obama"]
        assert gallery.negatives("obama") == []


@pytest.mark.pi
def test_a_flood_of_idle_connections_does_not_stop_the_page(
    broker: Any, tmp_path: pathlib.Path, frames: dict[str, np.ndarray]
) -> None:
    import socket

    stage = Stage(frames["blank"])
    with running(_daemon(tmp_path, broker.port, stage, review=False)) as daemon:
        assert daemon.console is not None
        _wait(lambda: daemon.console.server, what="the page")  # type: ignore[union-attr]
        port = daemon.console.port
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]  # never speak
        try:
            assert daemon.counts["frames"] > 0
            frames_before = daemon.counts["frames"]
            time.sleep(11)  # the handler's timeout: idle connections are dropped
            assert _get(port, "/login")[0] == 200
            assert daemon.counts["frames"] > frames_before  # the door kept working meanwhile
        finally:
            for s in idle:
                s.close()


def test_logins_at_the_same_moment_each_keep_their_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Logins run in the page's request threads, and each rebuilds the session table (expired
    and surplus sessions out). The rebuild is done under the console's lock: without it, logins
    at the same moment each copy the table, add their own session and put their copy back,
    and all but the last are logged out at once. A slow ``Session`` makes that overlap certain."""
    from facegate import web

    host = SimpleNamespace(config=SimpleNamespace(web=SimpleNamespace(session_hours=1.0), web_token=TOKEN))
    console = web.Console(host)  # type: ignore[arg-type]
    made = web.Session

    def slow_session(*args: Any) -> web.Session:
        time.sleep(0.02)
        return made(*args)

    monkeypatch.setattr(web, "Session", slow_session)

    def burst(count: int, first: int) -> list[str | None]:
        start = threading.Barrier(count)
        sids: list[str | None] = [None] * count

        def login(i: int) -> None:
            start.wait()
            sids[i] = console.login(TOKEN, f"192.0.2.{first + i}")  # one address each: no limit

        threads = [threading.Thread(target=login, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sids

    sids = burst(8, 0)
    assert all(sids) and len(set(sids)) == 8
    assert all(console.session(sid) is not None for sid in sids)
    # more at once than the table holds: it stays at its size, with a session for each newest login
    more = burst(web.MAX_SESSIONS, 8)
    assert all(more) and len(console.sessions) == web.MAX_SESSIONS
    assert all(console.session(sid) is not None for sid in more)


@pytest.mark.pi
def test_the_page_over_https_and_linked_from_home_assistant(
    broker: Any, tmp_path: pathlib.Path, frames: dict[str, np.ndarray]
) -> None:
    import ssl
    import subprocess

    from tests.mqtt_support import Subscriber

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    key, crt = tmp_path / "page.key", tmp_path / "page.crt"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=door"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)),
        ],
        check=True,
        capture_output=True,
    )
    sub = Subscriber(broker.port, ["homeassistant/+/door_web/#"])
    url = "https://door.local:8080/"
    daemon = _daemon(
        tmp_path, broker.port, Stage(frames["blank"]), tls_cert=str(crt), tls_key=str(key), url=url
    )
    try:
        with running(daemon):
            assert daemon.console is not None
            _wait(lambda: daemon.console.server, what="the page")  # type: ignore[union-attr]
            context = ssl.create_default_context(cafile=str(crt))
            conn = http.client.HTTPSConnection("127.0.0.1", daemon.console.port, timeout=10, context=context)
            conn.request(
                "POST", "/login", f"token={TOKEN}", {"Content-Type": "application/x-www-form-urlencoded"}
            )
            response = conn.getresponse()
            response.read()
            assert response.status == 303 and "; Secure" in (response.getheader("Set-Cookie") or "")
            conn.close()
            plain = http.client.HTTPConnection("127.0.0.1", daemon.console.port, timeout=10)
            with pytest.raises((http.client.HTTPException, OSError)):  # no plain HTTP on that port
                plain.request("GET", "/login")
                plain.getresponse().read()
            # earlier tests' retained configs for this device may come first: wait for this one's
            linked = sub.wait(
                lambda t, p: (
                    t.endswith("/event/door_web/recognition/config")
                    and isinstance(p, dict)
                    and "configuration_url" in p["device"]
                )
            )
            assert linked[0][1]["device"]["configuration_url"] == url
    finally:
        for topic in {m[0] for m in sub.messages}:  # leave no retained entity for other tests
            sub.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        sub.close()


def test_a_busy_frame_loop_answers_503_not_404(
    broker: Any, tmp_path: pathlib.Path, frames: dict[str, np.ndarray]
) -> None:
    """The page's jobs run in the frame loop; when its queue is full the page says so (503, try
    again), where a missing face crop says 404. Here the loop never runs: the queue stays full."""
    from facegate.web import Job

    daemon = _daemon(tmp_path, broker.port, Stage(frames["blank"]))
    console = daemon.console
    assert console is not None
    console.start()
    try:
        while not console.jobs.full():
            console.jobs.put_nowait(Job(lambda: None))
        status, cookie = _post(console.port, "/login", f"token={TOKEN}")
        assert status == 303
        sid = cookie.split(";")[0]
        status, body, _ = _get(console.port, "/", Cookie=sid)
        assert status == 503 and b"busy" in body
    finally:
        console.stop()
        if daemon.review is not None:
            daemon.review.close()
