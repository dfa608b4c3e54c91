"""The ``facegate`` command as a newcomer meets it: each message says what is wrong, in words."""

from __future__ import annotations

import json
import pathlib
import queue
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import yaml
from PIL import Image

from facegate.cli import main
from facegate.demo import PHOTOS
from tests.conftest import FLOAT_MODEL, INT8_MODEL, ROOT


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    gallery = tmp_path_factory.mktemp("cli") / "gallery.db"
    assert main(["--gallery", str(gallery), "enroll", "obama", str(PHOTOS / "obama.jpg")]) == 0
    return gallery


def test_gallery_option_before_or_after_the_command(
    enrolled: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["--gallery", str(enrolled), "gallery", "list"],
        ["gallery", "list", "--gallery", str(enrolled)],
    ):
        capsys.readouterr()
        assert main(argv) == 0
        assert "obama" in capsys.readouterr().out


def test_enrolling_the_same_photo_again_says_so(
    enrolled: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["--gallery", str(enrolled), "enroll", "obama", str(PHOTOS / "obama.jpg")]) == 0
    out = capsys.readouterr().out
    assert out == "obama: +0 embedding(s), 1 in all; 1 photo(s) already enrolled, not added again\n"


def test_a_photo_of_someone_already_enrolled_under_another_name_is_said(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A photo of obama enrolled as "barack" (a mix-up in a folder of photos) made two names
    for one face without a word: the door names either. It is enrolled, and said; a photo
    of someone else, or more of the same person, says nothing."""
    gallery = ["--gallery", str(tmp_path / "g.db")]
    for name, photo in (("obama", "obama.jpg"), ("obama", "obama3.jpg"), ("biden", "biden.jpg")):
        assert main([*gallery, "enroll", name, str(PHOTOS / photo)]) == 0
        assert "warning" not in capsys.readouterr().err
    assert main([*gallery, "enroll", "barack", str(PHOTOS / "obama2.jpg")]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "obama2.jpg looks like obama (distance 0." in err
    assert "the door may take one for the other" in err
    # the same photo again adds nothing, and is not warned of again (a re-run of enroll --dir
    # repeated every warning of every earlier run)
    assert main([*gallery, "enroll", "barack", str(PHOTOS / "obama2.jpg")]) == 0
    again = capsys.readouterr()
    assert "already enrolled" in again.out and "warning" not in again.err


def test_export_then_import_on_a_new_device(
    enrolled: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Import is how a new device gets its people: it makes the gallery (it said "no gallery
    here (enroll someone first)"). A file that is not an export, or holds one bad entry, is
    one line naming the entry, and imports no one (it was a traceback after the people
    before the bad one were written)."""
    export = tmp_path / "people.json"
    assert main(["--gallery", str(enrolled), "gallery", "export", str(export)]) == 0
    fresh = tmp_path / "new-device" / "gallery.db"
    assert main(["--gallery", str(fresh), "gallery", "import", str(export)]) == 0
    assert main(["--gallery", str(fresh), "identify", str(PHOTOS / "obama2.jpg")]) == 0
    capsys.readouterr()
    doc = json.loads(export.read_text())
    good = {**doc["people"][0], "name": "first"}
    vector = good["embeddings"][0]
    bad_entries: list[Any] = [
        7,
        {**good, "name": "../x"},
        {**good, "embeddings": []},
        {**good, "embeddings": [{**vector, "vector": "abc"}]},
        {**good, "embeddings": [{**vector, "quality": "x"}]},
        {**good, "embeddings": [{**vector, "image": "zz"}]},
        {**good, "display_name": "\x1b[2J"},
        {k: v for k, v in good.items() if k != "name"},
    ]
    for entry in bad_entries:
        broken = tmp_path / "broken.json"
        broken.write_text(json.dumps({**doc, "people": [good, entry]}))
        assert main(["--gallery", str(fresh), "gallery", "import", str(broken)]) == 2, entry
        err = capsys.readouterr().err
        assert "broken.json: person 2: " in err and "Traceback" not in err, err
        assert main(["--gallery", str(fresh), "gallery", "list"]) == 0
        assert "first" not in capsys.readouterr().out  # the good entry before it was not written
    (tmp_path / "list.json").write_text(json.dumps({**doc, "people": 5}))
    assert main(["--gallery", str(fresh), "gallery", "import", str(tmp_path / "list.json")]) == 2
    assert "not a facegate gallery export" in capsys.readouterr().err


def test_identify_with_one_person_prints_strict_json(
    enrolled: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["--gallery", str(enrolled), "identify", str(PHOTOS / "obama2.jpg")]) == 0
    out = capsys.readouterr().out
    result = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert result["name"] == "obama" and result["margin"] is None and "Infinity" not in out


def test_refusals_name_the_problem(
    enrolled: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["--gallery", str(enrolled), "enroll", "x", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.jpg: cannot decode image" in err and "BytesIO" not in err and "object at" not in err
    a, b = Image.open(PHOTOS / "obama.jpg"), Image.open(PHOTOS / "biden.jpg")
    two = Image.new("RGB", (a.width + b.width, max(a.height, b.height)))
    two.paste(a, (0, 0))
    two.paste(b, (a.width, 0))
    two.save(tmp_path / "two.jpg")
    assert main(["--gallery", str(enrolled), "identify", str(tmp_path / "two.jpg")]) == 2
    err = capsys.readouterr().err
    assert "2 faces found" in err and "enroll" not in err  # advice for identify, not for enrolling
    assert main(["--gallery", str(enrolled), "enroll"]) == 2
    assert "or --dir DIR (one sub-folder per person), one of them" in capsys.readouterr().err
    assert main(["--gallery", str(enrolled), "enroll", "x", str(bad), "--dir", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "option", "wants"),
    [
        (["verify", "x.jpg", "--claim", "a", "--far", "2"], "--far", "a rate between 0 and 1"),
        (["identify", "x.jpg", "--far", "nan"], "--far", "a rate between 0 and 1"),
        (["enroll", "a", "x.jpg", "--threads", "0"], "--threads", "a whole number >= 1"),
        (["watch", "--port", "70000"], "--port", "a port from 1 to 65535"),
        (["review", "ignore", "-3"], "group", "a whole number >= 1"),
        (["bench", "latency", "--present-s", "-1"], "--present-s", "a number > 0"),
        (["bench", "latency", "--camera-fps", "inf"], "--camera-fps", "a number > 0"),
        (["bench", "encoder", "--runs", "-1"], "--runs", "a whole number >= 1"),
        (["bench", "match", "--sizes", "9" * 400], "--sizes", "a whole number >= 1"),
        (["bench", "summary", "--rounds", "0"], "--rounds", "a whole number >= 1"),
        (["bench", "standing", "--seconds", "ten"], "--seconds", "a number > 0"),
        (["calibrate", "--root", "r", "--pairs", "p", "--far", "1"], "--far", "a rate between 0 and 1"),
        (["train", "--root", "r", "--pairs", "p", "--out", "o", "--lr", "-1"], "--lr", "a number > 0"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(
    argv: list[str], option: str, wants: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A count of 0, a negative time or a FAR of 2 is refused before anything runs, naming the
    option. Before, some ended in a traceback, some in a run that measured nothing, and a FAR
    of 2 in the advice to calibrate for it."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected {wants}" in err and "Traceback" not in err


def test_a_config_to_start_from_comes_with_the_package(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pip user has no checkout, so no docs/config.example.yaml: the example ships in the
    package, `check-config --example` prints it, and a missing config says so."""
    assert main(["check-config", "--example"]) == 0
    printed = capsys.readouterr().out
    assert printed == (ROOT / "edge" / "config.example.yaml").read_text()
    (tmp_path / "config.yaml").write_text(printed)
    assert main(["check-config", str(tmp_path / "config.yaml")]) == 0
    capsys.readouterr()
    assert main(["run", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "missing.yaml: no such config file; `facegate check-config --example > missing.yaml`" in err
    assert main(["check-config"]) == 2 and "give the config FILE to check" in capsys.readouterr().err


def test_config_mistakes_name_the_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("camera: [oops\n")
    assert main(["check-config", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"in {broken}, line 1" in err and "<unicode string>" not in err
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    assert main(["check-config", str(empty)]) == 2
    assert "the config is empty" in capsys.readouterr().err


def test_run_without_a_camera_creates_nothing(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"camera: {{source: video, path: {tmp_path}/missing.mp4}}\n"
        f"gallery: {{path: {state}/gallery.db}}\nmqtt: {{outbox: {state}/outbox}}\n"
    )
    pytest.importorskip("av", reason="the video source needs PyAV (the video extra)")
    assert main(["run", "--config", str(config)]) == 2
    assert "missing.mp4: no such video file" in capsys.readouterr().err
    assert not state.exists()


def test_doctor_advice_names_the_configs_gallery(tmp_path: pathlib.Path) -> None:
    from facegate.config import validate
    from facegate.doctor import check_gallery

    config = validate({"gallery": {"path": str(tmp_path / "g.db")}})
    check = check_gallery(config)
    assert f"--gallery {tmp_path / 'g.db'}" in check.fix


def test_doctor_says_how_to_write_a_missing_config(tmp_path: pathlib.Path) -> None:
    """Its fix for a config that is not there was "edit /etc/facegate/config.yaml": a file
    that does not exist. A config that is there but wrong is still to be edited."""
    from facegate.doctor import FAIL, check_config

    missing = tmp_path / "config.yaml"
    check, config = check_config(missing)
    assert check.level == FAIL and config is None
    assert check.fix.startswith(f"write one: `facegate check-config --example | sudo tee {missing}")
    missing.write_text("mqtt: {port: 0}\n")
    check, _ = check_config(missing)
    assert check.level == FAIL and check.fix.startswith(f"edit {missing}")


def _lines(stream: Any) -> queue.Queue[str]:
    """A child's output, line by line, read in a thread of its own."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def _next(lines: queue.Queue[str], match: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if match in line:
            return line
    raise AssertionError(f"no line with {match!r} in {timeout} s")


def _stop_watching(child: subprocess.Popen[str], sender: Any, broker: Any) -> None:
    child.terminate()
    child.wait(10)
    if sender is not None:
        sender.close()
    broker.stop()


def test_watch_shows_what_others_wrote_harmlessly_and_says_what_the_device_signed(
    tmp_path: pathlib.Path,
) -> None:
    """Anyone on the broker can publish under the device's topics. ``watch`` escapes what a
    terminal would act on (an OSC 52 sequence sets the clipboard, ESC [2J clears the screen,
    a newline forges a line, U+202E reverses text), and with the command secret in its config
    marks each event and reply as published by the device or not."""
    from facegate.commands import sign_published
    from tests.mqtt_support import Broker, Subscriber

    broker = Broker(tmp_path)
    secret = "watch-test-command-secret-0123"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"device": {"id": "door9"}, "mqtt": {"port": broker.port}, "commands": {"secret": secret}}
        )
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "facegate", "watch", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    sender = None
    try:
        out, err = _lines(child.stdout), _lines(child.stderr)
        _next(err, "watching facegate/door9/#")
        sender = Subscriber(broker.port, ["facegate/nothing"])
        genuine = sign_published(secret.encode(), "door9", "facegate/door9/event", b'{"identity":"alice"}')
        hostile = '{"identity":"\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\u202eeve"}\nfacegate/door9/event {"x":1}'
        for topic, payload in [
            ("facegate/door9/event", genuine),
            ("facegate/door9/event", hostile.encode()),
            ("facegate/door9/reply/app", b'{"ok":true}'),
            ("facegate/door9/\u202estate", b"{}"),  # mosquitto refuses control characters in topics
        ]:
            sender.client.publish(topic, payload, qos=1).wait_for_publish(5)
        lines = [_next(out, "facegate/door9/") for _ in range(4)]
        assert lines[0] == f"facegate/door9/event {genuine.decode()}  [hmac ok]\n"
        assert lines[1] == (
            'facegate/door9/event {"identity":"\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J\\u202eeve"}\\n'
            'facegate/door9/event {"x":1}  [NOT FROM door9: hmac missing or wrong]\n'
        )
        assert lines[2].endswith("  [NOT FROM door9: hmac missing or wrong]\n")
        assert lines[3] == "facegate/door9/\\u202estate {}\n"  # not an event or reply: no mark
        assert not any("\x1b" in line or "\u202e" in line for line in lines)
        assert out.empty()
    finally:
        _stop_watching(child, sender, broker)


def test_watch_prints_what_the_device_publishes_across_a_broker_restart(tmp_path: pathlib.Path) -> None:
    """``facegate watch``: each message on one line; the broker restarted under it, it
    subscribes again and goes on; a broker that is not there, or refuses the login, is one
    line saying so, not a traceback."""
    from tests.mqtt_support import Broker, Subscriber, locked_broker

    broker = Broker(tmp_path)
    command = [sys.executable, "-m", "facegate", "watch", "--host", "127.0.0.1", "--port", str(broker.port)]
    child = subprocess.Popen(
        [*command, "--device", "door9"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    sender = None
    try:
        out, err = _lines(child.stdout), _lines(child.stderr)
        _next(err, "watching facegate/door9/#")
        sender = Subscriber(broker.port, ["facegate/nothing"])
        sender.client.publish("facegate/door9/event", '{"identity": "alice"}', qos=1).wait_for_publish(5)
        sender.client.publish("facegate/door8/event", '{"identity": "bob"}', qos=1).wait_for_publish(5)
        assert _next(out, "facegate/door9/event") == 'facegate/door9/event {"identity": "alice"}\n'
        sender.close()
        broker.kill()
        broker.start()
        _next(err, "watching facegate/door9/#", timeout=30)  # back, and subscribed again
        sender = Subscriber(broker.port, ["facegate/nothing"])
        sender.client.publish("facegate/door9/state", '{"camera": "ok"}', qos=1).wait_for_publish(5)
        assert "door9/state" in _next(out, "door9/state")
        assert out.empty()  # door8 was never shown
    finally:
        _stop_watching(child, sender, broker)
    nobody = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert nobody.returncode == 2 and "cannot reach the MQTT broker" in nobody.stderr
    assert "Traceback" not in nobody.stderr
    locked = locked_broker(tmp_path / "locked")
    try:
        config = tmp_path / "config.yaml"
        config.write_text(f"mqtt: {{port: {locked.port}, username: door, password: wrong}}\n")
        wrong = subprocess.run(
            [sys.executable, "-m", "facegate", "watch", "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert wrong.returncode == 2 and "refused the connection" in wrong.stderr, wrong.stderr
    finally:
        locked.stop()


def test_the_services_gallery_and_encoder_from_its_config(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Enrolling for the service took `--gallery /var/lib/facegate/gallery.db` and, for a
    service with another encoder, `--model` too (else: refused, another model). `--config`
    after the command takes both from the service's config; --gallery and --model still win."""
    service = tmp_path / "etc" / "config.yaml"
    service.parent.mkdir()
    service.write_text(f"gallery: {{path: ../state/gallery.db}}\nmodels: {{encoder: {FLOAT_MODEL}}}\n")
    assert main(["enroll", "obama", str(PHOTOS / "obama.jpg"), "--config", str(service)]) == 0
    assert (tmp_path / "state" / "gallery.db").exists()
    capsys.readouterr()
    assert main(["gallery", "list", "--json", "--config", str(service)]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)] == ["obama"]
    assert main(["identify", str(PHOTOS / "obama2.jpg"), "--config", str(service)]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "obama"  # with the float32 encoder
    photo = str(PHOTOS / "obama2.jpg")
    assert main(["identify", photo, "--config", str(service), "--model", str(INT8_MODEL)]) == 2
    assert "made by model dlib_resnet_v1_float32" in capsys.readouterr().err
    other = tmp_path / "other.db"
    assert (
        main(["enroll", "x", str(PHOTOS / "biden.jpg"), "--config", str(service), "--gallery", str(other)])
        == 0
    )
    assert other.exists()
    assert main(["gallery", "list", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such config file" in capsys.readouterr().err


def test_a_file_that_cannot_be_written_is_one_line(
    enrolled: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gallery export` into a folder that is not there ended in a traceback."""
    out = tmp_path / "missing" / "people.json"
    assert main(["--gallery", str(enrolled), "gallery", "export", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"facegate: error: {out}: cannot write the export there (No such file or directory)\n"
    # `facegate calibrate` writes the card beside a model that pip put where the user cannot write
    from facegate.errors import ModelFileError
    from facegate.modelcard import write_card

    with pytest.raises(ModelFileError, match=r"cannot write the model card .* give that model"):
        write_card(tmp_path / "missing" / "model.json", {})


def test_the_services_operating_point_from_its_config(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify, identify, review and enroll's look-alike warning decided at FAR 1e-3 whatever
    the service's decision.far. With --config they take it (this card has no threshold for
    1e-2, so the error shows which was taken); --far still wins."""
    service = tmp_path / "config.yaml"
    service.write_text("gallery: {path: gallery.db}\ndecision: {far: 1.0e-2}\n")
    photo = str(PHOTOS / "obama2.jpg")
    assert (
        main(["enroll", "obama", str(PHOTOS / "obama.jpg"), "--gallery", str(tmp_path / "gallery.db")]) == 0
    )
    capsys.readouterr()
    for command in (
        ["identify", photo],
        ["verify", photo, "--claim", "obama"],
        ["review", "corrections", "obama"],
    ):
        assert main([*command, "--config", str(service)]) == 2
        assert "no threshold calibrated for FAR 0.01" in capsys.readouterr().err, command
    assert main(["enroll", "obama", str(PHOTOS / "obama3.jpg"), "--config", str(service)]) == 2
    assert "no threshold calibrated for FAR 0.01" in capsys.readouterr().err
    assert main(["identify", photo, "--config", str(service), "--far", "1e-3"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "obama"
