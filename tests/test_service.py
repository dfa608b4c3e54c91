"""The systemd unit, the installer and `facegate doctor`."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
from typing import Any

import pytest

from facegate.config import load_config
from facegate.doctor import FAIL, OK, WARN, check_broker, check_config, run_doctor
from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "facegate.service"
INSTALL = ROOT / "systemd" / "install.sh"


def _analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (`.ci/run` installs systemd with apt)")
    return exe


def _unit_here(tmp_path: pathlib.Path) -> pathlib.Path:
    """The unit with ExecStart pointing at this checkout's facegate (verify checks that it exists)."""
    unit = tmp_path / "facegate.service"
    facegate = pathlib.Path(sys.executable).parent / "facegate"
    unit.write_text(UNIT.read_text().replace("/opt/facegate/venv/bin/facegate", str(facegate)))
    return unit


def test_unit_verifies(tmp_path: pathlib.Path) -> None:
    result = subprocess.run([_analyze(), "verify", str(_unit_here(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "facegate.service" not in result.stderr, result.stderr  # no warnings about our unit


def test_unit_security_score(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [_analyze(), "security", "--offline=true", str(_unit_here(tmp_path))], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for facegate.service: ([0-9.]+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    score = float(match.group(1))
    print(f"systemd-analyze security: {score} {match.group(2)}")
    assert score < 3.0 and match.group(2) == "OK"


def test_unit_has_the_promised_settings() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=30",
        "Restart=always",
        "StartLimitIntervalSec=0",
        "User=facegate",
        "SupplementaryGroups=video",
        "StateDirectory=facegate",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line


def _unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), value.strip())
    return settings


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_systemd_never_gives_up_on_a_crash_loop() -> None:
    """systemd's rule (systemd.unit(5), StartLimitIntervalSec=/StartLimitBurst=): a unit started
    more than Burst times within Interval is refused further starts and stays failed; an
    interval of 0 turns the limit off. Replayed here on the unit's own settings for a day of a
    daemon that dies 1 s after each start (a poison message re-delivered at every start, say):
    the door must still be restarted at the end of the day. With the old settings (5 starts in
    300 s, RestartSec=5) it stayed down for good after 30 s."""

    def gives_up_after(settings: dict[str, str], horizon: float = 86400.0) -> float | None:
        interval = _seconds(settings.get("StartLimitIntervalSec", "10"))
        burst = int(settings.get("StartLimitBurst", "5"))
        restart_sec = _seconds(settings.get("RestartSec", "0.1"))
        assert settings.get("Restart") in ("always", "on-failure", "on-abnormal", "on-abort", "on-watchdog")
        starts: list[float] = []
        now = 0.0
        while now < horizon:
            starts = [t for t in starts if now - t < interval]
            if interval > 0 and len(starts) >= burst:
                return now  # start request refused: the unit is failed
            starts.append(now)
            now += 1.0 + restart_sec  # runs 1 s, crashes, waits RestartSec
        return None

    settings = _unit_settings()
    assert settings["Restart"] == "always"  # a watchdog kill or a clean exit restarts too
    assert _seconds(settings["RestartSec"]) >= 1  # a crash loop stays a slow loop
    assert gives_up_after(settings) is None
    old = {**settings, "StartLimitIntervalSec": "300", "StartLimitBurst": "5"}
    assert gives_up_after(old) == 30.0  # what the unit did before: down for good after 30 s


def test_installer_in_destdir_mode(tmp_path: pathlib.Path) -> None:
    stage = tmp_path / "stage"
    env = {**os.environ, "DESTDIR": str(stage)}
    for _ in range(2):  # idempotent: a second run gives the same result
        result = subprocess.run(["bash", str(INSTALL), "--no-start"], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    manifest = {
        line.split()[0]: tuple(line.split()[1:])
        for line in (stage / ".facegate-manifest").read_text().splitlines()
    }
    assert manifest["/var/lib/facegate"] == ("0700", "facegate:facegate")
    assert manifest["/etc/facegate/config.yaml"] == ("0640", "root:facegate")
    assert manifest["/etc/systemd/system/facegate.service"] == ("0644", "root:root")
    for path, (mode, _owner) in manifest.items():
        assert stat.S_IMODE((stage / path.lstrip("/")).stat().st_mode) == int(mode, 8), path
    # the models come inside the package (the venv): nothing copied beside it, no path to set
    assert not (stage / "opt/facegate/models").exists()
    unit = (stage / "etc/systemd/system/facegate.service").read_text()
    assert "FACEGATE_MODELS" not in unit
    config = load_config(stage / "etc/facegate/config.yaml")  # the installed config is valid
    assert config.models.encoder.endswith("dlib_resnet_v1_int8.tflite")
    assert "staged, skipped: systemctl daemon-reload" in result.stdout  # the system itself is not touched
    # `facegate` on sudo's PATH, as the docs use it: a link to the venv's command
    assert os.readlink(stage / "usr/local/bin/facegate") == "/opt/facegate/venv/bin/facegate"


def test_installer_keeps_the_config_and_uninstall_keeps_the_gallery(tmp_path: pathlib.Path) -> None:
    stage = tmp_path / "stage"
    env = {**os.environ, "DESTDIR": str(stage)}
    subprocess.run(["bash", str(INSTALL), "--no-start"], check=True, capture_output=True, env=env)
    config = stage / "etc/facegate/config.yaml"
    config.write_text(config.read_text() + "# edited by the user\n")
    (stage / "var/lib/facegate/gallery.db").write_bytes(b"people")
    subprocess.run(["bash", str(INSTALL), "--no-start"], check=True, capture_output=True, env=env)
    assert config.read_text().endswith("# edited by the user\n")
    subprocess.run(["bash", str(INSTALL), "--uninstall"], check=True, capture_output=True, env=env)
    assert (
        not (stage / "opt/facegate").exists() and not (stage / "etc/systemd/system/facegate.service").exists()
    )
    assert not (stage / "usr/local/bin/facegate").is_symlink()
    # a facegate command installed some other way is neither replaced nor removed
    (stage / "usr/local/bin/facegate").write_text("#!/bin/sh\n")
    done = subprocess.run(["bash", str(INSTALL), "--no-start"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "keeping /usr/local/bin/facegate" in done.stdout, done.stdout
    subprocess.run(["bash", str(INSTALL), "--uninstall"], check=True, capture_output=True, env=env)
    assert (stage / "usr/local/bin/facegate").read_text() == "#!/bin/sh\n"
    assert (stage / "var/lib/facegate/gallery.db").exists() and config.exists()
    subprocess.run(["bash", str(INSTALL), "--uninstall", "--purge"], check=True, capture_output=True, env=env)
    assert not (stage / "var/lib/facegate").exists()


def test_installer_dry_run_changes_nothing(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "DESTDIR": str(tmp_path / "stage")}
    result = subprocess.run(["bash", str(INSTALL), "--dry-run"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "would run: install -m 0644" in result.stdout
    assert not (tmp_path / "stage" / "opt").exists()


def test_doctor_reports_and_fails_on_a_dead_broker(tmp_path: pathlib.Path) -> None:
    from tests.mqtt_support import free_port

    (tmp_path / "frames").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(
        f"camera: {{source: folder, path: {tmp_path / 'frames'}}}\n"
        f"gallery: {{path: {tmp_path / 'g.db'}}}\n"
        f"mqtt: {{port: {free_port()}, outbox: {tmp_path / 'outbox'}}}\n"
    )
    lines: list[str] = []
    assert run_doctor(path, lines.append) == 1
    text = "\n".join(lines)
    assert re.search(r"^OK\s+models", text, re.M) and re.search(r"^OK\s+camera", text, re.M)
    assert re.search(r"^WARN\s+gallery .*nobody is enrolled", text, re.M)
    assert re.search(r"^FAIL\s+broker .*cannot reach", text, re.M) and "fix: start the broker" in text
    first, config = check_config(path)
    assert first.level == OK and config is not None
    assert check_broker(config, timeout=1).level == FAIL


def test_doctor_passes_with_a_broker_and_a_gallery(tmp_path: pathlib.Path) -> None:
    from facegate.demo import PHOTOS
    from facegate.encoder import Encoder
    from facegate.enroll import Enroller, fingerprint
    from facegate.gallery import Gallery
    from facegate.perception import Perception
    from tests.conftest import INT8_MODEL
    from tests.mqtt_support import Broker

    broker = Broker(tmp_path)
    try:
        enroller = Enroller(Perception(), Encoder(INT8_MODEL))
        with Gallery.open(tmp_path / "g.db", fingerprint(enroller.encoder)) as gallery:
            enroller.enroll(gallery, "obama", [PHOTOS / "obama.jpg"])
        path = tmp_path / "config.yaml"
        path.write_text(
            f"camera: {{source: folder, path: {PHOTOS}}}\n"
            f"gallery: {{path: {tmp_path / 'g.db'}}}\n"
            f"mqtt: {{port: {broker.port}, outbox: {tmp_path / 'outbox'}}}\n"
        )
        lines: list[str] = []
        code = run_doctor(path, lines.append)
        text = "\n".join(lines)
        assert code == 0, text
        assert re.search(r"^OK\s+gallery .*1 people, mode 600", text, re.M)
        assert re.search(r"^OK\s+broker .*accepts this device's login", text, re.M)
    finally:
        broker.stop()


def test_doctor_checks_the_camera_the_config_names(
    tmp_path: pathlib.Path, fake_picamera2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Pi camera as libcamera lists it (none: the ribbon cable), and each other source's
    own needs: PyAV for a video or stream, OpenCV for a V4L2 index, a folder that exists."""
    from facegate.config import validate
    from facegate.doctor import check_camera

    pi = validate({"camera": {"source": "picamera2"}})
    found = check_camera(pi)
    assert found.level == OK and "1 camera(s): imx708" in found.detail
    # a large frame hides the faces of people farther off from the short-range detector
    large = validate({"camera": {"source": "picamera2", "width": 1920, "height": 1080}})
    hidden = check_camera(large)
    assert (
        hidden.level == WARN and "finds a face from about 1/8 of their longer side (240 px" in hidden.detail
    )
    assert "models.detector: full" in hidden.fix
    full = validate(
        {"camera": {"source": "picamera2", "width": 1920, "height": 1080}, "models": {"detector": "full"}}
    )
    assert check_camera(full).level == OK
    monkeypatch.setattr(fake_picamera2.Picamera2, "attached", [])
    none = check_camera(pi)
    assert none.level == FAIL and "libcamera sees no camera" in none.detail and "ribbon" in none.fix
    monkeypatch.setitem(sys.modules, "picamera2", None)  # not importable: python3-picamera2 missing
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)  # the OS's own Python
    assert "apt install python3-picamera2" in check_camera(pi).fix
    # the usual trap: installed with apt, and a venv that cannot see the OS's packages
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    monkeypatch.setattr(sys, "prefix", str(venv))
    sealed = check_camera(pi)
    assert sealed.level == FAIL and f"{venv} is a venv made without --system-site-packages" in sealed.detail
    assert f"python3 -m venv --system-site-packages {venv}" in sealed.fix
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\n")
    assert check_camera(pi).detail == "picamera2 is not installed"
    # the venv's numpy 2 shadowing the OS's: simplejpeg raises a ValueError as picamera2 imports
    shadowed = tmp_path / "shadowed" / "picamera2"
    shadowed.mkdir(parents=True)
    (shadowed / "__init__.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility. "
        "Expected 96 from C header, got 88 from PyObject')\n"
    )
    monkeypatch.syspath_prepend(str(shadowed.parent))
    monkeypatch.delitem(sys.modules, "picamera2")
    check = check_camera(pi)
    assert check.level == FAIL and "ValueError: numpy.dtype size changed" in check.detail
    assert "hold numpy at the OS's version" in check.fix

    clip = tmp_path / "door.mp4"
    clip.write_bytes(b"")
    video = validate({"camera": {"source": "video", "path": str(clip)}})
    stream = validate({"camera": {"source": "video", "path": "rtsp://192.0.2.7/stream1"}})
    usb = validate({"camera": {"source": "opencv", "path": "0"}})
    missing = validate({"camera": {"source": "folder", "path": str(tmp_path / "nowhere")}})
    assert check_camera(missing).level == FAIL and "does not exist" in check_camera(missing).detail
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "cv2", None)
    for config, why in ((video, "PyAV"), (stream, "PyAV"), (usb, "OpenCV")):
        check = check_camera(config)
        assert check.level == FAIL and f"{why} is not installed" in check.detail, check
    # opencv-python (not -headless) on a Pi without a display: there, but it does not import
    headless = tmp_path / "no-display" / "cv2"
    headless.mkdir(parents=True)
    (headless / "__init__.py").write_text(
        "raise ImportError('libGL.so.1: cannot open shared object file: No such file or directory')\n"
    )
    monkeypatch.syspath_prepend(str(headless.parent))
    monkeypatch.delitem(sys.modules, "cv2")
    check = check_camera(usb)
    assert "OpenCV is installed but does not import (ImportError: libGL.so.1" in check.detail, check
    assert "not opencv-python" in check.fix


def test_doctor_reads_a_frame_from_a_stream_and_hides_its_login(tmp_path: pathlib.Path) -> None:
    """A stream URL passed as long as PyAV was installed, camera or not ("video rtsp:/..."
    with one slash, and the password shown). Now the doctor reads its first frame, as the
    daemon would, and says why there is none; the URL's login is never shown."""
    import socket

    from facegate.config import validate
    from facegate.doctor import check_camera
    from tests.test_sources import _clip

    reachable = validate({"camera": {"source": "video", "path": _clip(tmp_path).as_uri()}})
    found = check_camera(reachable)
    assert found.level == OK and "first frame 128x96" in found.detail, found
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    url = f"rtsp://admin:pa55word@127.0.0.1:{port}/stream1"
    down = check_camera(validate({"camera": {"source": "video", "path": url}}))
    assert down.level == FAIL and f"rtsp://***@127.0.0.1:{port}/stream1" in down.detail, down
    assert "pa55word" not in down.detail + down.fix and "reachable" in down.fix, down


def test_doctor_tells_a_wrong_broker_login_from_a_right_one(tmp_path: pathlib.Path) -> None:
    from facegate.config import validate
    from tests.mqtt_support import locked_broker

    broker = locked_broker(tmp_path / "broker", user="door", password="right")
    try:
        tries = (("wrong", FAIL, "refused"), ("right", OK, "accepts this device's login"))
        for password, level, said in tries:
            config = validate({"mqtt": {"port": broker.port, "username": "door", "password": password}})
            check = check_broker(config, timeout=5)
            assert check.level == level and said in check.detail, check
    finally:
        broker.stop()


def test_doctor_reads_a_pis_power_and_heat() -> None:
    """A Pi on a weak supply slows itself down and wears its SD card, and nothing said so. The
    firmware's `vcgencmd get_throttled` bits, decoded (off a Pi: no line at all)."""
    from facegate.doctor import check_power, throttled

    assert check_power(None) is None
    assert check_power(0).level == OK
    now = check_power(0x50005)  # under-voltage and throttled now, and both since boot
    assert now.level == FAIL and now.detail == "under-voltage now (get_throttled 0x50005)"
    assert "5.1 V" in now.fix
    before = check_power(0x50000)
    assert before.level == WARN and before.detail.startswith("since boot: under-voltage, throttling")
    hot = check_power(0x80008)
    assert hot.level == WARN and "now: soft temperature limit" in hot.detail and "cool the Pi" in hot.fix
    if shutil.which("vcgencmd") is None:
        assert throttled() is None  # this machine is not a Pi: doctor prints no power line
