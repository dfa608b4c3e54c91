"""Fleet sync: the authority's messages applied by devices (unit), then real daemons on a real
mosquitto, and through two brokers joined by a bridge."""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

pytest.importorskip("cryptography", reason="the fleet extra (cryptography) is not installed")

from facegate import fleet
from facegate.config import validate
from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.enroll import Enroller, fingerprint
from facegate.gallery import Gallery, ModelFingerprint, Sample
from facegate.perception import Perception
from tests.conftest import INT8_MODEL, ROBUSTNESS, ROOT
from tests.mqtt_support import Broker, Subscriber

MODEL = ModelFingerprint("a" * 64, "test-model", 8)
PREFIX = "facegate/fleet/test"
Keys = tuple[pathlib.Path, pathlib.Path]


def _vec(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def keys(tmp_path: pathlib.Path) -> Keys:
    return fleet.keygen(tmp_path / "keys")


@pytest.fixture
def authority(tmp_path: pathlib.Path, keys: Keys) -> Iterator[fleet.Authority]:
    gallery = Gallery.open(tmp_path / "authority.db", MODEL)
    gallery.add("alice", [Sample(_vec(1), "a1"), Sample(_vec(2), "a2")], display_name="Alice")
    gallery.add("bob", [Sample(_vec(3), "b")])
    yield fleet.Authority(gallery, fleet.Ed25519Signer(keys[0]), PREFIX, tmp_path / "authority.fleet.json")
    gallery.close()


def _device(tmp: pathlib.Path, keys: Keys, name: str = "dev", model: ModelFingerprint = MODEL) -> Any:
    store = fleet.GalleryStore(Gallery.open(tmp / f"{name}.db", model))
    return fleet.FleetSync(store, fleet.Ed25519Verifier.from_file(keys[1]), model.sha256, 8, PREFIX)


def _apply(device: fleet.FleetSync, messages: list[tuple[str, bytes]]) -> list[str]:
    return [device.handle(topic, payload) for topic, payload in messages]


def test_entries_apply_once_and_the_device_converges(
    tmp_path: pathlib.Path, authority: fleet.Authority, keys: Keys
) -> None:
    messages = authority.plan()
    authority.published()
    assert [t.rsplit("/", 1)[-1] for t, _ in messages] == ["alice", "bob", "manifest"]
    device = _device(tmp_path, keys)
    assert _apply(device, messages) == ["applied"] * 3
    assert _apply(device, messages) == ["unchanged"] * 3  # retained copies again: idempotent
    status = device.status()
    assert status["converged"] and status["people"] == 2
    assert status["hash"] == fleet.manifest_hash(authority.manifest_people())
    gallery = device.store.gallery  # type: ignore[attr-defined]
    np.testing.assert_array_equal(gallery.embeddings("alice"), authority.gallery.embeddings("alice"))
    assert gallery.person("alice").display_name == "Alice"
    assert authority.plan() == []  # nothing changed, nothing to publish

    authority.gallery.add("alice", [Sample(_vec(4), "a3")])  # a third photo: a new version
    change = authority.plan()
    authority.published()
    assert [t.rsplit("/", 1)[-1] for t, _ in change] == ["alice", "manifest"]
    assert _apply(device, change) == ["applied", "applied"]
    assert gallery.embeddings("alice").shape == (3, 8) and device.status()["converged"]


def test_a_person_the_fleet_sends_under_a_local_name_becomes_the_fleets(
    tmp_path: pathlib.Path, authority: fleet.Authority, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """FLEET.md: the device's own alice is replaced by the fleet's alice, and the log says so;
    the device's other people are left alone."""
    device = _device(tmp_path, keys)
    gallery = device.store.gallery  # type: ignore[attr-defined]
    gallery.add("alice", [Sample(_vec(7), "enrolled here")])
    gallery.add("carol", [Sample(_vec(8), "enrolled here")])
    with caplog.at_level(logging.WARNING, logger="facegate.fleet.store"):
        assert _apply(device, authority.plan()) == ["applied"] * 3
    assert "fleet: alice was enrolled on this device; the fleet's entry replaces it" in caplog.text
    assert "bob" not in caplog.text  # not enrolled here: nothing to say
    np.testing.assert_array_equal(gallery.embeddings("alice"), authority.gallery.embeddings("alice"))
    np.testing.assert_array_equal(gallery.embeddings("carol")[0], _vec(8))
    assert device.status()["converged"]  # carol is the device's own, not extra to the manifest


def test_forged_moved_and_replayed_entries_are_refused(
    tmp_path: pathlib.Path,
    authority: fleet.Authority,
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = authority.plan()
    authority.published()
    authority.gallery.add("alice", [Sample(_vec(5), "a3")])
    new = authority.plan()
    authority.published()
    device = _device(tmp_path, keys)
    assert _apply(device, old + new) == ["applied"] * 5
    caplog.set_level(logging.WARNING, "facegate.fleet")

    # replayed: the older, validly signed alice entry
    assert device.handle(*old[0]) == "refused: older version"
    # forged: signed by another key
    other = fleet.keygen(tmp_path / "other")
    forger = fleet.Authority(authority.gallery, fleet.Ed25519Signer(other[0]), PREFIX, tmp_path / "f.json")
    forged = next(m for m in forger.plan() if m[0].endswith("/alice"))
    assert device.handle(*forged) == "refused: bad signature"
    # tampered: a valid entry with its embeddings swapped (the version raised, as an attacker would)
    body = json.loads(new[0][1])
    body["version"] += 10
    body["embeddings"] = fleet.encode_vectors(_vec(9)[None])
    assert device.handle(new[0][0], json.dumps(body).encode()) == "refused: bad signature"
    # moved: bob's valid entry replayed on carol's topic
    assert device.handle(f"{PREFIX}/people/carol", old[1][1]) == "refused: bad signature"
    # an older manifest
    assert device.handle(*old[-1]) == "refused: older version"
    for junk in (b"{", b"[]", b'{"sig": "!!"}', b"\xff" * 10):
        assert device.handle(f"{PREFIX}/people/alice", junk).startswith("refused")
    assert device.status()["converged"]  # none of it changed anything
    assert device.status()["refused"] == {"older version": 2, "bad signature": 3, "malformed": 4}
    assert "fleet: refused facegate/fleet/test/people/alice: bad signature" in caplog.text


def test_an_entry_from_another_model_is_refused_with_a_clear_log_line(
    tmp_path: pathlib.Path,
    authority: fleet.Authority,
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = ModelFingerprint("b" * 64, "other-model", 8)
    device = _device(tmp_path, keys, model=other)
    caplog.set_level(logging.WARNING, "facegate.fleet")
    assert _apply(device, authority.plan())[:2] == ["refused: other model"] * 2
    assert "alice v1 was made by model aaaaaaaaaaaa, this device runs bbbbbbbbbbbb" in caplog.text
    assert not device.status()["converged"] and device.status()["people"] == 0


def test_a_device_that_missed_the_tombstone_drops_the_person(
    tmp_path: pathlib.Path, authority: fleet.Authority, keys: Keys
) -> None:
    online, offline = _device(tmp_path, keys, "online"), _device(tmp_path, keys, "offline")
    first = authority.plan()
    authority.published()
    _apply(online, first)
    _apply(offline, first)
    authority.gallery.remove("bob")
    removal = authority.plan()
    authority.published()
    assert [t.rsplit("/", 1)[-1] for t, _ in removal] == ["bob", "manifest"]
    assert _apply(online, removal) == ["applied", "applied"]
    assert "bob" not in online.store.gallery  # type: ignore[attr-defined]
    # every reporting device has the removal: its retained tombstone is cleared
    cleared = authority.collect({"online": online.status()["seq"]}, ttl_s=7 * 86400)
    authority.published()
    assert cleared[0] == (f"{PREFIX}/people/bob", b"") and cleared[-1][0].endswith("/manifest")
    # the offline device comes back: only the retained manifest tells it bob is gone
    assert offline.handle(*cleared[-1]) == "applied"
    assert "bob" not in offline.store.gallery  # type: ignore[attr-defined]
    assert offline.status()["converged"] and offline.status()["hash"] == online.status()["hash"]
    # and a late replay of bob's old entry is refused
    assert offline.handle(*first[1]) == "refused: older version"


def test_tombstones_expire_after_the_stated_time(authority: fleet.Authority, tmp_path: pathlib.Path) -> None:
    authority.plan()
    authority.gallery.remove("bob")
    authority.plan(now=1000.0)
    assert authority.collect({}, ttl_s=100, now=1050.0) == []  # no device reports; not yet expired
    assert authority.collect({}, ttl_s=100, now=1101.0)[0] == (f"{PREFIX}/people/bob", b"")


def test_an_unfinished_publish_is_repeated_whole(authority: fleet.Authority) -> None:
    assert len(authority.plan()) == 3  # ... and the broker went away before acknowledging
    assert len(authority.plan()) == 3  # the same entries again, at the same versions
    authority.published()
    assert authority.plan() == []
    assert len(authority.plan(full=True)) == 3


def test_hmac_fleet(tmp_path: pathlib.Path) -> None:
    key = fleet.HmacKey(b"a-long-enough-fleet-key")
    gallery = Gallery.open(tmp_path / "a.db", MODEL)
    gallery.add("alice", [Sample(_vec(1), "a")])
    messages = fleet.Authority(gallery, key, PREFIX, tmp_path / "a.json").plan()
    store = fleet.GalleryStore(Gallery.open(tmp_path / "d.db", MODEL))
    device = fleet.FleetSync(store, key, MODEL.sha256, 8, PREFIX)
    assert _apply(device, messages) == ["applied", "applied"]
    other_key = fleet.HmacKey(b"another-fleet-key-16")
    wrong = fleet.FleetSync(fleet.MemoryStore(), other_key, MODEL.sha256, 8, PREFIX)
    assert _apply(wrong, messages) == ["refused: bad signature"] * 2


def test_fleet_config_checks(tmp_path: pathlib.Path) -> None:
    from facegate.config import ConfigError

    with pytest.raises(ConfigError, match=r"mqtt\.tls"):
        validate({"mqtt": {"host": "broker.example"}, "fleet": {"enabled": True, "public_key_file": "k"}})
    with pytest.raises(ConfigError, match=r"fleet\.public_key_file"):
        validate({"fleet": {"enabled": True}})
    with pytest.raises(ConfigError, match="at least 16"):
        validate({"fleet": {"enabled": True, "signature": "hmac", "hmac_key": "short"}})
    fleet.keygen(tmp_path)
    with pytest.raises(fleet.FleetError, match="not overwritten"):
        fleet.keygen(tmp_path)
    assert (tmp_path / "fleet.key").stat().st_mode & 0o777 == 0o600


# --- real daemons on a real mosquitto ------------------------------------------------------


@pytest.fixture(scope="module")
def samples() -> dict[str, Sample]:
    enroller = Enroller(Perception(), Encoder(INT8_MODEL))
    return {n: enroller.sample(PHOTOS / f"{n}.jpg") for n in ("obama", "biden")}


def _authority_config(tmp: pathlib.Path, port: int, keys: Keys) -> Any:
    return validate(
        {
            "gallery": {"path": str(tmp / "authority.db")},
            "mqtt": {"host": "127.0.0.1", "port": port},
            "fleet": {"enabled": True, "prefix": PREFIX, "private_key_file": str(keys[0])},
        }
    )


def test_publish_and_status_say_why_the_broker_cannot_be_used(tmp_path: pathlib.Path, keys: Keys) -> None:
    """Nothing listening, or a wrong login: one error naming it, and no publish counted as
    sent (a refused login used to look connected)."""
    from tests.mqtt_support import free_port, locked_broker

    with Gallery.open(tmp_path / "authority.db", fingerprint(Encoder(INT8_MODEL))) as gallery:
        gallery.add("alice", [Sample(np.eye(128, dtype=np.float32)[0], "a")])
    nobody = _authority_config(tmp_path, free_port(), keys)
    for run in (fleet.status, fleet.publish):
        with pytest.raises(fleet.FleetError, match="cannot reach the MQTT broker"):
            run(nobody, wait_s=0.1)
    locked = locked_broker(tmp_path / "locked")
    try:
        config = _authority_config(tmp_path, locked.port, keys)
        config = dataclasses.replace(
            config, mqtt=dataclasses.replace(config.mqtt, username="door", password="wrong")
        )
        for run in (fleet.status, fleet.publish):
            with pytest.raises(fleet.FleetError, match="refused the connection"):
                run(config, wait_s=0.1)
    finally:
        locked.stop()
    assert not (tmp_path / "authority.db.fleet.json").exists()  # nothing recorded as published


def _start_device(tmp: pathlib.Path, name: str, port: int, keys: Keys) -> subprocess.Popen[bytes]:
    folder = tmp / "frames"
    if not folder.exists():
        folder.mkdir()
        Image.fromarray(np.full((480, 640, 3), 96, np.uint8)).save(folder / "blank.png")
    config = tmp / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device": {"id": name},
                "camera": {"source": "folder", "path": str(folder), "loop": True, "max_fps": 5},
                "gallery": {"path": str(tmp / f"{name}.db")},
                "mqtt": {"host": "127.0.0.1", "port": port, "outbox": str(tmp / f"{name}-outbox")},
                "fleet": {"enabled": True, "prefix": PREFIX, "public_key_file": str(keys[1])},
            }
        )
    )
    return subprocess.Popen(
        [sys.executable, "-m", "facegate", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"{name}.log", "a"),
    )


def _converged(sub: Subscriber, device: str, manifest_hash: str, timeout: float = 60) -> dict[str, Any]:
    topic = f"{PREFIX}/devices/{device}"
    found = sub.wait(
        lambda t, p: t == topic and isinstance(p, dict) and p["converged"] and p["hash"] == manifest_hash,
        timeout=timeout,
    )
    return dict(found[-1][1])


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        child.wait(30)


def test_two_daemons_converge_and_an_offline_one_drops_a_removed_person(
    tmp_path: pathlib.Path, keys: Keys, samples: dict[str, Sample]
) -> None:
    broker = Broker(tmp_path)
    config = _authority_config(tmp_path, broker.port, keys)
    model = fingerprint(Encoder(INT8_MODEL))
    with Gallery.open(tmp_path / "authority.db", model) as gallery:
        gallery.add("obama", [samples["obama"]], display_name="Barack Obama")
        gallery.add("biden", [samples["biden"]])
    sub = Subscriber(broker.port, [f"{PREFIX}/#", "facegate/+/state"])
    devices = {name: _start_device(tmp_path, name, broker.port, keys) for name in ("door1", "door2")}
    try:
        started = time.monotonic()
        first = fleet.publish(config, wait_s=0.5)
        assert first["people"] == 2
        for name in devices:
            assert _converged(sub, name, first["manifest_hash"])["people"] == 2
        converged_s = time.monotonic() - started
        state = sub.wait(lambda t, p: t == "facegate/door1/state" and p.get("fleet", {}).get("converged"))
        assert state[-1][1]["fleet"]["hash"] == first["manifest_hash"]  # in the device's own state too

        _stop(devices["door2"])  # offline while biden is removed
        with Gallery.open(tmp_path / "authority.db", model) as gallery:
            gallery.remove("biden")
        second = fleet.publish(config, wait_s=0.5)
        assert second["people"] == 1 and second["tombstones"] == 1  # door2 has not acknowledged
        _converged(sub, "door1", second["manifest_hash"])
        devices["door2"] = _start_device(tmp_path, "door2", broker.port, keys)
        assert _converged(sub, "door2", second["manifest_hash"])["people"] == 1
        for name in devices:
            with Gallery.open(tmp_path / f"{name}.db", model) as gallery:
                assert [p.name for p in gallery.people()] == ["obama"]
                np.testing.assert_array_equal(gallery.embeddings("obama")[0], samples["obama"].vector)

        # both have acknowledged: the next publish clears biden's retained tombstone
        third = fleet.publish(config, wait_s=0.5)
        assert third["tombstones"] == 0
        sub.wait(lambda t, p: t == f"{PREFIX}/people/biden" and p == b"")

        # an entry from another model, and a replay of an older one, reach the running devices
        with Gallery.open(tmp_path / "other.db", ModelFingerprint("c" * 64, "other", 128)) as other:
            other.add("mallory", [Sample(samples["obama"].vector, "x")])
            foreign = fleet.Authority(
                other, fleet.Ed25519Signer(keys[0]), PREFIX, tmp_path / "other.fleet.json"
            ).plan()
        sub.publish(foreign[0][0], json.loads(foreign[0][1]), retain=False)
        biden_v1 = next(p for t, p, *_ in sub.messages if t.endswith("/people/biden") and p)
        sub.publish(f"{PREFIX}/people/biden", biden_v1, retain=False)  # replayed after the removal
        for name in devices:
            sub.wait(
                lambda t, p, n=name: (
                    t.endswith(f"/devices/{n}") and p["refused"] == {"other model": 1, "older version": 1}
                )
            )
            log = (tmp_path / f"{name}.log").read_text()
            assert "people/mallory: other model (mallory v1 was made by model cccccccccccc, this" in log
            assert "people/biden: older version (v1, this device holds v3 (a replay?))" in log
            with Gallery.open(tmp_path / f"{name}.db", model) as gallery:
                assert [p.name for p in gallery.people()] == ["obama"]
        ROBUSTNESS.append(f"fleet: 2 daemons converged on 2 people {converged_s:.1f} s after publishing")
    finally:
        for child in devices.values():
            _stop(child)
        sub.close()
        broker.stop()


def test_the_cli_beside_a_running_daemon_loses_nothing(
    tmp_path: pathlib.Path, keys: Keys, samples: dict[str, Sample]
) -> None:
    """The daemon holds the gallery through several connections (the matcher's, the fleet's).
    Opening one of them used to drop the locks of the others (a descriptor of the file opened
    and closed by Python), so a `facegate` command run beside the service thought itself the
    file's last user and deleted the WAL under the daemon: a person enrolled by the CLI was then
    lost at the fleet's next change (run on the old code)."""
    broker = Broker(tmp_path)
    config = _authority_config(tmp_path, broker.port, keys)
    model = fingerprint(Encoder(INT8_MODEL))
    with Gallery.open(tmp_path / "authority.db", model) as gallery:
        gallery.add("obama", [samples["obama"]])
    sub = Subscriber(broker.port, [f"{PREFIX}/devices/#"])
    device = _start_device(tmp_path, "door", broker.port, keys)
    path = tmp_path / "door.db"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "facegate", *args, "--gallery", str(path)]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)

    try:
        _converged(sub, "door", fleet.publish(config, wait_s=0.5)["manifest_hash"])
        assert cli("enroll", "obama", str(PHOTOS / "obama2.jpg")).returncode != 0  # the fleet's
        assert cli("enroll", "biden", str(PHOTOS / "biden.jpg")).returncode == 0  # the device's own
        assert path.with_name("door.db-wal").exists()  # the daemon still has the file open
        with Gallery.open(tmp_path / "authority.db", model) as gallery:
            gallery.remove("obama")
        _converged(sub, "door", fleet.publish(config, wait_s=0.5)["manifest_hash"])
    finally:
        _stop(device)
        sub.close()
        broker.stop()
    listed = cli("gallery", "list")
    assert "biden: 1 embedding(s)" in listed.stdout and "obama" not in listed.stdout, listed.stdout
    with Gallery.open(path, model) as gallery:
        assert gallery.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


REPORT = {"schema": 1, "device": "door1", "seq": 3, "hash": "b" * 64, "people": 2, "converged": True}
HOSTILE_REPORTS: dict[str, bytes] = {
    "seq-text": json.dumps({**REPORT, "device": "seq-text", "seq": "many"}).encode(),
    "seq-huge": json.dumps({**REPORT, "device": "seq-huge", "seq": 10**400}).encode(),
    "seq-inf": b'{"schema": 1, "device": "seq-inf", "seq": 1e999}',
    "seq-object": json.dumps({**REPORT, "device": "seq-object", "seq": {"a": 1}}).encode(),
    "seq-negative": json.dumps({**REPORT, "device": "seq-negative", "seq": -4}).encode(),
    "seq-true": json.dumps({**REPORT, "device": "seq-true", "seq": True}).encode(),
    "hash-number": json.dumps({**REPORT, "device": "hash-number", "hash": 7}).encode(),
    "people-text": json.dumps({**REPORT, "device": "people-text", "people": "all"}).encode(),
    "converged-text": json.dumps({**REPORT, "device": "converged-text", "converged": "yes"}).encode(),
    "refused-list": json.dumps({**REPORT, "device": "refused-list", "refused": [1]}).encode(),
    "poser": json.dumps({**REPORT, "device": "door1", "seq": 10**6}).encode(),  # door1's name, not topic
    "list": b"[1, 2, 3]",
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "binary": b"\xff\xfe\x00",
}


def test_the_authority_reads_device_reports_as_untrusted(tmp_path: pathlib.Path, keys: Keys) -> None:
    """A device's report is retained on a topic anyone on the broker can write. Reports that
    do not hold what a device publishes, or that name another device than their topic, are
    left out of ``fleet publish`` and ``fleet status`` (and counted), never a traceback, and
    never taken as a device's acknowledgement of a removal."""
    broker = Broker(tmp_path)
    config = _authority_config(tmp_path, broker.port, keys)
    with Gallery.open(tmp_path / "authority.db", fingerprint(Encoder(INT8_MODEL))) as gallery:
        gallery.add("alice", [Sample(np.eye(128, dtype=np.float32)[0], "a")])
    sub = Subscriber(broker.port, [f"{PREFIX}/#"])
    try:
        sub.publish(f"{PREFIX}/devices/door1", {**REPORT, "seq": 0, "converged": False}, retain=True)
        for device, payload in HOSTILE_REPORTS.items():
            sub.client.publish(f"{PREFIX}/devices/{device}", payload, qos=1, retain=True).wait_for_publish(5)
        for run in (fleet.publish, fleet.status):
            result = run(config, wait_s=0.5)
            assert list(result["devices"]) == ["door1"], result
            assert result["devices"]["door1"]["seq"] == 0, result  # not the poser's 10**6
            assert result["ignored_reports"] == len(HOSTILE_REPORTS), result
        with Gallery.open(tmp_path / "authority.db", fingerprint(Encoder(INT8_MODEL))) as gallery:
            gallery.remove("alice")
        published = fleet.publish(config, wait_s=0.5)
        assert published["tombstones"] == 1  # door1 (seq 0) has not acknowledged
        shown_status = fleet.status(config, wait_s=0.5)
        assert shown_status["manifest_refused"] is None
        assert (shown_status["seq"], shown_status["people"]) == (published["seq"], 0)
        forged = fleet.sign_message(
            fleet.Ed25519Signer(fleet.keygen(tmp_path / "other")[0]),
            f"{PREFIX}/manifest",
            {"kind": "manifest", "seq": 99, "people": {"mallory": 1}},
        )
        sub.client.publish(f"{PREFIX}/manifest", forged, qos=1, retain=True).wait_for_publish(5)
        shown_status = fleet.status(config, wait_s=0.5)
        assert shown_status["seq"] is None and shown_status["people"] is None, shown_status
        assert str(shown_status["manifest_refused"]).startswith("bad signature"), shown_status
        raw = {
            "gallery": {"path": str(tmp_path / "authority.db")},
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
            "fleet": {"enabled": True, "prefix": PREFIX, "private_key_file": str(keys[0])},
        }
        (tmp_path / "authority.yaml").write_text(yaml.safe_dump(raw))

        def status_cli() -> subprocess.CompletedProcess[str]:
            command = ["fleet", "status", "--config", str(tmp_path / "authority.yaml")]
            return subprocess.run(
                [sys.executable, "-m", "facegate", *command], cwd=ROOT, capture_output=True, text=True
            )

        shown = status_cli()
        assert shown.returncode == 0, shown.stderr
        assert "door1: manifest 0" in shown.stdout, shown.stdout
        assert f"{len(HOSTILE_REPORTS)} report(s) ignored" in shown.stdout, shown.stdout
        assert "the retained manifest is not this fleet's (bad signature" in shown.stdout, shown.stdout
        osc52 = "\x1b]52;c;ZWNobw==\x07"  # a terminal that printed this would set the clipboard
        junk = {"schema": osc52, "sig": "AAAA", "kind": "manifest"}
        sub.client.publish(f"{PREFIX}/manifest", json.dumps(junk), qos=1, retain=True).wait_for_publish(5)
        shown = status_cli()
        assert "not this fleet's (schema: schema '\\x1b]52;c;ZWNobw==\\x07'" in shown.stdout, shown.stdout
        assert "\x1b" not in shown.stdout + shown.stderr
    finally:
        sub.close()
        broker.stop()


def test_a_manifest_larger_than_the_devices_take_is_not_published(tmp_path: pathlib.Path, keys: Keys) -> None:
    """Devices refuse a fleet message over ``mqtt.max_payload`` (and an MQTT 5 broker does not
    deliver it), so a fleet that outgrew the limit went out of step without a word. Now
    ``fleet publish`` refuses before sending anything, saying what to raise; raised, the
    same publish goes out whole."""
    broker = Broker(tmp_path)
    with Gallery.open(tmp_path / "authority.db", fingerprint(Encoder(INT8_MODEL))) as gallery:
        for i in range(200):  # ~30 bytes each in the manifest: ~6 KB
            gallery.add(f"person_with_a_long_name_{i:03d}", [Sample(_vec(i, 128), "x")])
    sub = Subscriber(broker.port, [f"{PREFIX}/#"])
    try:
        small = _authority_config(tmp_path, broker.port, keys)
        small = dataclasses.replace(small, mqtt=dataclasses.replace(small.mqtt, max_payload=4096))
        with pytest.raises(fleet.FleetError, match=r"manifest would be \d+ bytes, over mqtt.max_payload"):
            fleet.publish(small, wait_s=0.3)
        time.sleep(0.5)
        assert not [t for t, *_ in sub.messages if t.startswith(f"{PREFIX}/people/")]  # nothing sent
        done = fleet.publish(_authority_config(tmp_path, broker.port, keys), wait_s=0.3)
        assert done["people"] == 200 and done["published"] == 201
    finally:
        sub.close()
        broker.stop()


def test_through_two_brokers_joined_by_a_bridge(
    tmp_path: pathlib.Path, keys: Keys, samples: dict[str, Sample]
) -> None:
    """The authority publishes to the site broker A; a device on broker B, bridged to A (as in
    docs/FLEET.md), converges, and a removal crosses the bridge too."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Broker(tmp_path / "a")
    b = Broker(
        tmp_path / "b",
        extra=f"connection site-a\naddress 127.0.0.1:{a.port}\ntopic {PREFIX}/# both 1\n"
        "cleansession false\nrestart_timeout 1\n",
    )
    config = _authority_config(tmp_path, a.port, keys)
    model = fingerprint(Encoder(INT8_MODEL))
    with Gallery.open(tmp_path / "authority.db", model) as gallery:
        gallery.add("obama", [samples["obama"]])
        gallery.add("biden", [samples["biden"]])
    sub_a = Subscriber(a.port, [f"{PREFIX}/devices/#"])
    device = _start_device(tmp_path, "gate", b.port, keys)
    try:
        first = fleet.publish(config, wait_s=0.5)
        _converged(sub_a, "gate", first["manifest_hash"])  # the report crossed back to A
        with Gallery.open(tmp_path / "authority.db", model) as gallery:
            gallery.remove("obama")
        second = fleet.publish(config, wait_s=0.5)
        assert _converged(sub_a, "gate", second["manifest_hash"])["people"] == 1
    finally:
        _stop(device)
        sub_a.close()
        b.stop()
        a.stop()
    with Gallery.open(tmp_path / "gate.db", model) as gallery:
        assert [p.name for p in gallery.people()] == ["biden"]


def test_refused_signature_is_reported_by_a_running_daemon(
    tmp_path: pathlib.Path, keys: Keys, samples: dict[str, Sample]
) -> None:
    broker = Broker(tmp_path)
    model = fingerprint(Encoder(INT8_MODEL))
    other = fleet.keygen(tmp_path / "forger")
    with Gallery.open(tmp_path / "forged.db", model) as forged:
        forged.add("mallory", [samples["obama"]])
        message = fleet.Authority(
            forged, fleet.Ed25519Signer(other[0]), PREFIX, tmp_path / "forged.fleet.json"
        ).plan()[0]
    sub = Subscriber(broker.port, [f"{PREFIX}/devices/#"])
    device = _start_device(tmp_path, "door", broker.port, keys)
    try:
        sub.wait(lambda t, p: t.endswith("/devices/door"), timeout=60)
        sub.publish(message[0], json.loads(message[1]), retain=True)
        sub.wait(lambda t, p: t.endswith("/devices/door") and p["refused"].get("bad signature") == 1)
    finally:
        _stop(device)
        sub.close()
        broker.stop()
    with Gallery.open(tmp_path / "door.db", model) as gallery:
        assert "mallory" not in gallery
    assert "refused facegate/fleet/test/people/mallory: bad signature" in (tmp_path / "door.log").read_text()


class _Client:
    """Records what a FleetMember asks of its MQTT client."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []
        self.subscribed: list[Any] = []

    def publish(self, topic: str, payload: Any, **kw: Any) -> None:
        self.published.append((topic, json.loads(payload)))

    def subscribe(self, topics: Any) -> None:
        self.subscribed.append(topics)


def test_a_device_missing_entries_fetches_them_again(authority: fleet.Authority, keys: Keys) -> None:
    """A broker with a full queue drops an entry: the manifest says it is missing, and after
    a quiet spell the device subscribes again (the broker re-sends the retained entries)."""
    messages = authority.plan()
    verifier = fleet.Ed25519Verifier.from_file(keys[1])
    sync = fleet.FleetSync(fleet.MemoryStore(), verifier, MODEL.sha256, 8, PREFIX)
    member = fleet.FleetMember(sync, "door", report_every_s=0.0, resync_after_s=0.2)
    client = _Client()
    member.handle(client, *messages[0])  # alice
    member.handle(client, *messages[2])  # the manifest; bob's entry was dropped
    assert member.status["missing"] == 1 and not member.status["converged"]
    time.sleep(0.5)
    assert member.resyncs == 1
    assert client.subscribed[-1] == [(f"{PREFIX}/people/+", 1), (f"{PREFIX}/manifest", 1)]
    member.handle(client, *messages[1])  # re-sent
    assert member.status["converged"]
    assert client.published[-1][1]["converged"] and client.published[-1][0] == f"{PREFIX}/devices/door"
    time.sleep(0.4)
    assert member.resyncs == 1  # converged: no more
    member.cancel()


def test_without_a_working_cryptography_ed25519_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    from facegate.fleet.keys import _crypto
    from facegate.fleet.messages import FleetError

    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)  # there, but failing
    with pytest.raises(FleetError, match=r"`cryptography` package, which is installed but does not import"):
        _crypto()
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(FleetError, match=r"`cryptography` package, which is not installed: pip install"):
        _crypto()
