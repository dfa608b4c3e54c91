"""``facegate doctor``: check what the daemon needs, and say how to fix what is wrong.

Each check returns OK, WARN or FAIL with a hint; the command exits 1 if any
check fails. Nothing is changed.
"""

from __future__ import annotations

import dataclasses
import datetime
import grp
import importlib
import os
import pathlib
import shutil
import socket
import stat
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from facegate.config import Config, load_config
from facegate.detect import reach_warning
from facegate.errors import FacegateError, not_importable
from facegate.files import read_only_fs
from facegate.sources import CameraLostError, VideoSource, picamera2_missing, without_login

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    level: str
    detail: str
    fix: str = ""


def check_config(path: pathlib.Path) -> tuple[Check, Config | None]:
    try:
        config = load_config(path)
    except FacegateError as exc:
        if not path.exists():
            fix = (
                f"write one: `facegate check-config --example | sudo tee {path} > /dev/null`, edit it, "
                f"then `facegate check-config {path}`"
            )
        elif not os.access(path, os.R_OK):
            fix = f"run doctor as the service's user (`sudo -u facegate facegate doctor --config {path}`)"
        else:
            fix = f"edit {path}; `facegate check-config {path}` re-checks it"
        return Check("config", FAIL, str(exc), fix), None
    mode = stat.S_IMODE(path.stat().st_mode)
    secrets = config.mqtt.password or config.commands.secret
    if secrets and mode & 0o004:
        return Check(
            "config", WARN, f"{path} holds secrets and is world-readable", f"chmod o-r {path}"
        ), config
    if config.warnings:
        fix = "set mqtt.ca_file to the CA that signed the broker's certificate and tls_insecure: false"
        return Check("config", WARN, "; ".join(config.warnings), fix), config
    return Check("config", OK, f"{path} is valid"), config


def check_models(config: Config) -> Check:
    from facegate.decide import OperatingPoint
    from facegate.encoder import Encoder
    from facegate.perception import Perception

    try:
        encoder = Encoder(config.models.encoder)
        OperatingPoint.from_card(encoder.card, config.decision.far)
        Perception.from_config(config, encoder.card)
    except FacegateError as exc:
        return Check("models", FAIL, str(exc), "reinstall (systemd/install.sh) or set $FACEGATE_MODELS")
    return Check("models", OK, f"{encoder.card.name} ({encoder.card.sha256[:12]}), detector, landmarks")


def check_gallery(config: Config) -> Check:
    from facegate.encoder import Encoder
    from facegate.enroll import fingerprint
    from facegate.gallery import Gallery

    path = pathlib.Path(config.gallery.path)
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), path.parent)
        if not os.access(parent, os.W_OK):
            return Check(
                "gallery", FAIL, f"{path} does not exist and {parent} is not writable", "check the path"
            )
        return Check(
            "gallery",
            WARN,
            f"{path} does not exist yet: nobody is enrolled",
            f"facegate --gallery {path} enroll NAME PHOTO",
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    try:
        with Gallery.open(path, fingerprint(Encoder(config.models.encoder)), create=False) as gallery:
            people = len(gallery)
    except FacegateError as exc:
        return Check(
            "gallery", FAIL, str(exc), "see the message; `facegate gallery rebuild` after a model change"
        )
    if mode & 0o077:
        return Check(
            "gallery", WARN, f"{path} is mode {mode:o}", f"chmod 600 {path} (it holds biometric data)"
        )
    if people == 0:
        return Check(
            "gallery", WARN, f"{path}: nobody enrolled", f"facegate --gallery {path} enroll NAME PHOTO"
        )
    return Check("gallery", OK, f"{path}: {people} people, mode {mode:o}")


SMALLER_FRAMES = (
    "models.detector: full, or 640x480 frames (camera.width and height, or the camera's 640x480 stream)"
)


def _too_large(config: Config, width: int, height: int, what: str) -> Check | None:
    """A WARN where the detector cannot see a face far off in frames this large."""
    said = reach_warning(width, height, f"face_detection_{config.models.detector}_range.tflite")
    return None if said is None else Check("camera", WARN, f"{what}{said}", SMALLER_FRAMES)


def check_camera(config: Config) -> Check:
    cam = config.camera
    if cam.source == "picamera2":
        try:
            picamera2 = importlib.import_module("picamera2")
        except Exception as exc:  # ImportError, or a compiled part that does not match (ValueError)
            return Check("camera", FAIL, *picamera2_missing(exc))
        cameras = picamera2.Picamera2.global_camera_info()
        if not cameras:
            return Check(
                "camera",
                FAIL,
                "libcamera sees no camera",
                "check the ribbon cable; `rpicam-hello --list-cameras`",
            )
        large = _too_large(config, cam.width, cam.height, "")
        if large is not None:
            return large
        return Check("camera", OK, f"{len(cameras)} camera(s): {cameras[0].get('Model', '?')}")
    if cam.source == "video":
        try:
            importlib.import_module("av")
        except Exception as exc:
            return Check(
                "camera",
                FAIL,
                f"camera.source video but PyAV {not_importable(exc, 'av')}",
                "pip install 'facegate[video]'",
            )
        if "://" in str(cam.path):
            return _check_stream(str(cam.path), config)
    if cam.source in ("video", "folder"):
        path = pathlib.Path(str(cam.path))
        if not path.exists():
            return Check("camera", FAIL, f"{path} does not exist", "fix camera.path")
        return Check("camera", OK, f"{cam.source} {path}")
    try:
        importlib.import_module("cv2")
    except Exception as exc:
        return Check(
            "camera",
            FAIL,
            f"camera.source opencv but OpenCV {not_importable(exc, 'cv2')}",
            "pip install opencv-python-headless (without a display: not opencv-python)",
        )
    shown = without_login(str(cam.path))
    large = _too_large(config, cam.width, cam.height, f"opencv {shown}: ")
    if large is not None:
        return large
    return Check("camera", OK, f"opencv {shown}")


def _check_stream(url: str, config: Config) -> Check:
    """A stream URL (an IP camera): its first frame, or why there is none, within the time the
    daemon gives a stream. The URL is shown without its login."""
    shown = without_login(url)
    source = VideoSource(url)
    try:
        frame = next(source.frames())
    except (CameraLostError, FacegateError) as exc:
        return Check(
            "camera",
            FAIL,
            f"no frame: {exc}",  # what VideoSource raises already hides the URL's login
            "check camera.path, that the camera is on and reachable from here, and its login",
        )
    except StopIteration:
        return Check("camera", FAIL, f"{shown} ended before its first frame", "check camera.path")
    finally:
        source.close()  # the stream's connection, now
    height, width = frame.image.shape[:2]
    large = _too_large(config, width, height, f"video {shown}: ")
    if large is not None:
        return large
    return Check("camera", OK, f"video {shown}: first frame {width}x{height}")


def check_permissions(config: Config) -> Check:
    if config.camera.source not in ("picamera2", "opencv"):
        return Check("permissions", OK, "no camera device needed")
    try:
        video = grp.getgrnam("video").gr_gid
    except KeyError:
        return Check("permissions", WARN, "no 'video' group on this system")
    if os.getuid() != 0 and video not in os.getgroups():
        return Check(
            "permissions", FAIL, "this user is not in the 'video' group", "sudo usermod -aG video $USER"
        )
    devices = sorted(pathlib.Path("/dev").glob("video*"))
    blocked = [str(d) for d in devices if not os.access(d, os.R_OK | os.W_OK)]
    if blocked:
        return Check(
            "permissions", FAIL, f"cannot open {', '.join(blocked)}", "add the user to the 'video' group"
        )
    return Check("permissions", OK, f"{len(devices)} video device(s) accessible")


def check_broker(config: Config, timeout: float = 5.0) -> Check:
    import paho.mqtt.client as mqtt

    from facegate.mqtt import client_for

    m = config.mqtt
    where = f"{m.host}:{m.port}"
    try:
        socket.create_connection((m.host, m.port), timeout=timeout).close()
    except OSError as exc:
        return Check(
            "broker",
            FAIL,
            f"cannot reach {where}: {exc}",
            "start the broker (sudo apt install mosquitto) or fix mqtt.host/port",
        )
    result: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        result["reason"] = reason
        done.set()

    client = client_for(config)
    client.on_connect = on_connect
    try:
        client.connect(m.host, m.port, keepalive=10)
    except (OSError, ValueError) as exc:
        return Check("broker", FAIL, f"{where}: {exc}", "check mqtt.tls and the certificates")
    client.loop_start()
    done.wait(timeout)
    client.loop_stop()
    client.disconnect()
    reason = result.get("reason")
    if reason is None:
        return Check(
            "broker",
            FAIL,
            f"{where} accepted TCP but no MQTT answer",
            "is it an MQTT port? TLS on both sides?",
        )
    if reason.is_failure:
        return Check("broker", FAIL, f"{where} refused: {reason}", "check mqtt.username/password")
    return Check("broker", OK, f"{where} accepts this device's login")


def check_clock() -> Check:
    now = datetime.datetime.now(datetime.timezone.utc)
    if now.year < 2025:
        return Check(
            "clock",
            FAIL,
            f"the clock says {now:%Y-%m-%d}",
            "enable NTP (timedatectl set-ntp true): events carry the time",
        )
    synced = pathlib.Path("/run/systemd/timesync/synchronized").exists()
    if shutil.which("timedatectl") and not synced:
        return Check(
            "clock", WARN, f"{now:%Y-%m-%d %H:%M} UTC, NTP sync not confirmed", "timedatectl set-ntp true"
        )
    return Check("clock", OK, f"{now:%Y-%m-%d %H:%M} UTC")


def check_resources(config: Config) -> Check:
    folder = pathlib.Path(config.gallery.path).parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), pathlib.Path("/"))
    free_mb = shutil.disk_usage(existing).free / 1e6
    available_mb = float("nan")
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                available_mb = int(line.split()[1]) / 1024
    detail = f"{free_mb:.0f} MB free disk at {existing}, {available_mb:.0f} MB memory available"
    if read_only_fs(existing):
        return Check(
            "resources",
            FAIL,
            f"{existing} is on a read-only file system: the daemon decides with the gallery as it "
            "is, but nothing can be enrolled or removed, and events wait in memory only",
            "an SD card the kernel remounted after errors: `dmesg | grep -i ext4`, then fsck "
            "or a new card (`facegate gallery restore` from a backup)",
        )
    if free_mb < 100:
        return Check("resources", FAIL, detail, "free disk space: the gallery and outbox need room")
    if available_mb < 200:
        return Check("resources", WARN, detail, "the daemon needs ~150-250 MB; close other programs")
    return Check("resources", OK, detail)


# `vcgencmd get_throttled` bits (Raspberry Pi firmware): now, and since boot
_NOW = {0x1: "under-voltage", 0x2: "ARM frequency capped", 0x4: "throttled", 0x8: "soft temperature limit"}
_SINCE_BOOT = {0x10000: "under-voltage", 0x20000: "frequency capping", 0x40000: "throttling", 0x80000: "heat"}
_SUPPLY = (
    "a supply that holds 5.1 V at 3 A (Pi 4) or 5 A (Pi 5) on a short, thick cable: under-voltage "
    "slows the Pi and corrupts SD cards"
)


def throttled() -> int | None:
    """The firmware's throttled state (``vcgencmd get_throttled``), None off a Raspberry Pi or
    where it cannot be read (``vcgencmd`` wants the ``video`` group, as the camera does)."""
    if shutil.which("vcgencmd") is None:
        return None
    try:
        done = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5)
        return int(done.stdout.strip().partition("=")[2], 16) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def check_power(state: int | None) -> Check | None:
    """A Pi's power and heat from its throttled ``state``: a door whose supply sags slows down
    and wears its SD card, and nothing else says so. None: not a Pi."""
    if state is None:
        return None
    now = [what for bit, what in _NOW.items() if state & bit]
    since = [what for bit, what in _SINCE_BOOT.items() if state & bit]
    said = f"get_throttled 0x{state:x}"
    if state & 0x1:
        return Check("power", FAIL, f"under-voltage now ({said})", _SUPPLY)
    if now or since:
        parts = [f"{when}: {', '.join(what)}" for when, what in (("now", now), ("since boot", since)) if what]
        detail = "; ".join(parts)
        fix = _SUPPLY if state & 0x10000 else "cool the Pi (a heatsink or fan; out of the sun)"
        return Check("power", WARN, f"{detail} ({said})", fix)
    return Check("power", OK, "no under-voltage or throttling since boot")


def run_doctor(path: pathlib.Path, out: Callable[[str], None] = print) -> int:
    first, config = check_config(path)
    checks = [first]
    if config is not None:
        for check in (check_models, check_gallery, check_camera, check_permissions, check_broker):
            checks.append(check(config))
        checks.append(check_resources(config))
    power = check_power(throttled())
    checks.extend([power] if power is not None else [])
    checks.append(check_clock())
    for c in checks:
        out(
            f"{c.level:<4}  {c.name:<11} {c.detail}"
            + (f"\n      fix: {c.fix}" if c.fix and c.level != OK else "")
        )
    failed = sum(c.level == FAIL for c in checks)
    out(f"{failed} problem(s)" if failed else "all checks passed")
    return 1 if failed else 0
