"""Config validation: every mistake names the key and the file."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest

from facegate.config import DEFAULTS, ConfigError, load_config, validate
from facegate.mqtt import Link, Request


def _write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_are_valid() -> None:
    config = validate({})
    assert config.as_dict() == DEFAULTS
    assert config.decision.far == 1e-3 and config.commands.enabled == ["verify"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("camera:\n  sourse: video\n", "camera.sourse: unknown key"),
        ("kamera: {}\n", "kamera: unknown section"),
        ("camera:\n  width: wide\n", "camera.width: expected int, got 'wide'"),
        ("camera:\n  source: webcam\n", "camera.source: 'webcam' is not one of picamera2"),
        ("camera:\n  source: video\n", "camera.path: the video source needs a path"),
        ("decision:\n  far: 2.0\n", "decision.far: 2.0 is not a false accept rate"),
        ("decision:\n  votes_to_decide: 6\n", "decision.votes_to_decide: must not exceed decision.window"),
        ("decision:\n  aggregate: median\n", "decision.aggregate: 'median' is not one of votes"),
        ("mqtt:\n  port: 70000\n", "mqtt.port: 70000 is not a TCP port"),
        ("mqtt:\n  tls: yes\n  tls_insecure: maybe\n", "mqtt.tls_insecure: expected bool"),
        ("mqtt:\n  prefix: a/+/b\n", "mqtt.prefix"),
        ("models:\n  refine: sometimes\n", "models.refine: expected bool"),
        ("device:\n  id: front door\n", "device.id"),
        ("commands:\n  enabled: [verify, enroll]\n", "enroll must be signed"),
        ("commands:\n  enabled: [verify, unlock]\n", "commands.enabled"),
        ("commands:\n  enabled: [enroll]\n  secret: short\n", "at least 16 characters"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("camera: [1, 2\n", "not valid YAML"),
    ],
)
def test_mistakes_name_the_key_and_the_file(tmp_path: pathlib.Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_secrets_from_the_environment(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "commands:\n  enabled: [verify, enroll]\n")
    monkeypatch.setenv("FACEGATE_COMMAND_SECRET", "from-the-environment-123")
    monkeypatch.setenv("FACEGATE_MQTT_PASSWORD", "pw")
    config = load_config(path)
    assert config.command_secret == b"from-the-environment-123" and config.mqtt_password == "pw"


def test_secret_file(tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-secret-from-a-file-0123\n")
    config = load_config(_write(tmp_path, f"commands:\n  enabled: [remove]\n  secret_file: {secret}\n"))
    assert config.command_secret == b"a-secret-from-a-file-0123"
    with pytest.raises(ConfigError, match="secret_file: cannot read"):
        load_config(_write(tmp_path, "commands:\n  enabled: [remove]\n  secret_file: /nonexistent/x\n"))


def test_integers_where_floats_are_meant() -> None:
    assert validate({"camera": {"max_fps": 5}}).camera.max_fps == 5.0


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"config.yaml: no such config file; `facegate check-config --exa"):
        load_config("/nonexistent/config.yaml")


def test_a_config_this_user_may_not_read_says_as_whom_to_run(tmp_path: pathlib.Path) -> None:
    """The installed config is 0640 root:facegate, and docs/RASPBERRY_PI.md had the login user
    run `facegate watch --config /etc/facegate/config.yaml`: a bare "Permission denied". Read
    here by another user (as root, the test takes the euid of `nobody` for the read)."""
    config = tmp_path / "config.yaml"
    config.write_text("device: {id: door1}\n")
    config.chmod(0o600)
    as_root = os.geteuid() == 0
    if not as_root:
        config.chmod(0)
    try:
        if as_root:
            os.seteuid(65534)
        with pytest.raises(ConfigError, match=r"Permission denied; run as the service's user \(`sudo -u"):
            load_config(config)
    finally:
        if as_root:
            os.seteuid(0)


def test_replies_stay_in_the_device_tree(tmp_path: pathlib.Path) -> None:
    link = Link(validate({"device": {"id": "d"}, "mqtt": {"outbox": str(tmp_path / "o")}}), lambda r: True)
    topic = "facegate/d/command/verify"
    inside = Request(topic, b"{}", False, "facegate/d/reply/app1", b"x")
    assert link.reply_topic(inside) == "facegate/d/reply/app1"
    for bad in ("frontdoor/lock/set", "facegate/d/reply/#", "facegate/d/reply/+/x", "facegate/d/replyx", 7):
        assert link.reply_topic(Request(topic, b"{}", False, bad, b"x")) == "facegate/d/reply", bad
    assert link.reply_topic(Request(topic, b"{}"), "zigbee2mqtt/lock/set") == "facegate/d/reply"


def test_the_client_id_is_unguessable_unless_one_is_set(tmp_path: pathlib.Path) -> None:
    """Two starts of one device connect under two ids that its topics do not give away
    (tests/test_adversarial.py shows why); mqtt.client_id, when set, is used as it is, and
    kept when the link falls back to MQTT 3.1.1 and makes a new client."""
    raw = {"device": {"id": "door1"}, "mqtt": {"outbox": str(tmp_path / "o")}}
    ids = [Link(validate(raw), lambda r: True).client._client_id.decode() for _ in range(2)]
    assert ids[0] != ids[1]
    assert all(i.startswith("facegate-door1-") and len(i) == len("facegate-door1-") + 16 for i in ids), ids
    fixed = Link(validate({**raw, "mqtt": {**raw["mqtt"], "client_id": "acl-door1"}}), lambda r: True)
    assert fixed.client._client_id == b"acl-door1"
    fixed.client = fixed._make_client()
    assert fixed.client._client_id == b"acl-door1"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"device": {"id": "door1\n"}}, "device.id"),
        ({"mqtt": {"prefix": "a/+/b"}}, "mqtt.prefix"),
        ({"mqtt": {"prefix": "a//b"}}, "mqtt.prefix"),
        ({"mqtt": {"max_payload": 10}}, "mqtt.max_payload"),
        ({"commands": {"max_skew_s": 1e9}}, "commands.max_skew_s"),
        ({"commands": {"enabled": ["verify", "list"]}}, "list must be signed"),
    ],
)
def test_values_that_would_weaken_the_network_boundary(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(raw)


@pytest.mark.parametrize(
    "raw",
    [
        {"mqtt": {"password": 48151623}},  # YAML reads unquoted digits as a number
        {"mqtt": {"password": 4815.1623}},
        {"commands": {"secret": 4815162342481516}},
        {"web": {"token": ["4815162342-token"]}},
        {"fleet": {"hmac_key": {"4815162342": "key"}}},
    ],
)
def test_a_mistyped_secret_is_not_shown_in_the_error(raw: dict[str, Any]) -> None:
    """The error names the key and the type, never the value: it goes to the journal, where
    the adm group reads it (it printed `got 48151623`)."""
    with pytest.raises(ConfigError) as caught:
        validate(raw)
    text = str(caught.value)
    assert "not shown: a secret" in text and "4815" not in text, text
    (section,) = raw.values()
    (value,) = section.values()
    assert ("put it in quotes" in text) is isinstance(value, float | int)


def test_the_documented_example_is_valid_and_complete() -> None:
    import re

    import yaml

    from facegate.config import SCHEMA
    from tests.conftest import ROOT

    path = ROOT / "edge" / "config.example.yaml"
    config = load_config(path)
    assert config.device.id == "frontdoor"
    text = path.read_text()
    for section, keys in SCHEMA.items():
        assert re.search(rf"^{section}:", text, re.M), section
        for key in keys:
            assert re.search(rf"^  #? ?{key}:", text, re.M), f"{section}.{key} is not documented"
    documented = yaml.safe_load(text)
    for section, values in documented.items():
        for key, value in values.items():
            if section not in ("device", "camera") and key != "encoder":
                assert value == DEFAULTS[section][key], f"{section}.{key}: example says {value!r}"


def test_refinement_setting_reaches_the_pipeline() -> None:
    import numpy as np

    from facegate.detect import Detection
    from facegate.encoder import Encoder
    from tests.conftest import INT8_MODEL

    card = Encoder(INT8_MODEL).card
    from facegate.perception import Perception

    on = Perception.from_config(validate({}), card)
    off = Perception.from_config(validate({"models": {"refine": False}}), card)
    assert on.refine is True and off.refine is False
    # each starts the landmark cascade from the box map fitted on its kind of detection
    det = Detection(
        (100.0, 100.0, 200.0, 200.0),
        0.9,
        np.array([[130, 130], [170, 130], [150, 150], [150, 175], [105, 140], [195, 140]], float),
    )
    assert (
        on.landmark_box(det)[2] - on.landmark_box(det)[0]
        > off.landmark_box(det)[2] - off.landmark_box(det)[0]
    )


def test_relative_paths_are_taken_from_the_configs_folder(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service starts in /, `facegate doctor --config` wherever its user stands: a relative
    gallery path or key file was looked for in each one's own folder, so the two disagreed on
    which gallery they meant. Both now read it from the config file's folder; URLs, absolute
    paths, an OpenCV camera index and names not given stay as they are."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "secret").write_text("a-secret-from-a-file-0123\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config(
        _write(
            etc,
            "gallery: {path: state/gallery.db}\n"
            "camera: {source: video, path: clips/door.mp4}\n"
            "commands: {enabled: [remove], secret_file: secret}\n"
            "mqtt: {outbox: ../outbox, ca_file: /etc/ssl/ca.pem}\n",
        )
    )
    assert config.gallery.path == str(etc / "state/gallery.db")
    assert config.camera.path == str(etc / "clips/door.mp4")
    assert config.command_secret == b"a-secret-from-a-file-0123"  # read from etc/, not from the CWD
    assert pathlib.Path(config.mqtt.outbox).resolve() == tmp_path / "outbox"
    assert config.mqtt.ca_file == "/etc/ssl/ca.pem"
    assert config.review_path == etc / "state/gallery.db.review"
    assert config.review.path is None and config.web.tls_cert is None
    for camera, path in (("video", "rtsp://192.0.2.7/stream1"), ("video", "file:///x.mp4"), ("opencv", "0")):
        config = load_config(_write(etc, f"camera: {{source: {camera}, path: '{path}'}}\n"))
        assert config.camera.path == path
    # a config given by a relative name: its folder is taken from the CWD, once, at load
    monkeypatch.chdir(tmp_path)
    assert load_config(pathlib.Path("etc/config.yaml")).camera.path == "0"
    relative = load_config(_write(etc, "gallery: {path: g.db}\n").relative_to(tmp_path))
    assert relative.gallery.path == str(etc / "g.db")
