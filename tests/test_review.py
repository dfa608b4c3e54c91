"""The review store: unknown faces grouped, assigned, ignored, deleted; bounds, purge, privacy."""

from __future__ import annotations

import contextlib
import json
import math
import pathlib
import sqlite3
import stat
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from facegate.decide import OperatingPoint
from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.enroll import fingerprint
from facegate.errors import FacegateError
from facegate.fleet.store import GalleryStore
from facegate.gallery import Gallery, ModelFingerprint, Sample
from facegate.homeassistant import object_id
from facegate.images import load_rgb
from facegate.perception import Perception
from facegate.review import ASSIGN_BEST, Limits, Recorder, ReviewError, ReviewStore, jpeg, path_beside
from tests.conftest import INT8_MODEL

MODEL = ModelFingerprint("a" * 64, "test", 128)
DAY = 86400.0


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(128)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _near(v: np.ndarray, distance: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(v.shape)
    ortho = noise - (noise @ v) * v
    ortho /= np.linalg.norm(ortho)
    cos = 1 - distance**2 / 2
    return (cos * v + math.sqrt(1 - cos**2) * ortho).astype(np.float32)


def _store(path: pathlib.Path, **limits: float) -> ReviewStore:
    return ReviewStore.open(path, MODEL, threshold=0.4, limits=Limits(**limits))  # type: ignore[arg-type]


def test_file_is_private_and_refuses_foreign_sqlite(tmp_path: pathlib.Path) -> None:
    path = path_beside(tmp_path / "state" / "gallery.db")
    assert path.name == "gallery.db.review"
    with _store(path) as store:
        store.add_unknown(_unit(0), 10.0, b"\xff\xd8crop", now=1000.0)
        for p in path.parent.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)
    _store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    foreign = tmp_path / "other.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE x (y)")
    db.close()
    before = foreign.read_bytes()
    with pytest.raises(ReviewError, match="not a facegate review file"):
        _store(foreign)
    assert foreign.read_bytes() == before


def test_faces_of_one_stranger_group_and_the_best_crop_is_kept(tmp_path: pathlib.Path) -> None:
    with _store(tmp_path / "r") as store:
        a = _unit(1)
        first = store.add_unknown(a, 10.0, b"crop-a1", "e1", now=100.0)
        again = store.add_unknown(_near(a, 0.25, 2), 30.0, b"crop-a2", "e2", now=200.0)
        other = store.add_unknown(_unit(3), 5.0, b"crop-b", "e3", now=300.0)
        assert first.group == again.group != other.group and not first.ignored
        groups = {g.id: g for g in store.groups()}
        assert groups[first.group].faces == 2 and groups[other.group].faces == 1
        assert store.crop(first.group) == b"crop-a2"  # the better face
        assert store.latest_open() is not None and store.latest_open().id == other.group  # type: ignore[union-attr]
        with pytest.raises(ReviewError, match="no unknown-face group 99"):
            store.crop(99)


def test_ignored_stranger_is_not_kept_again(tmp_path: pathlib.Path) -> None:
    with _store(tmp_path / "r") as store:
        a = _unit(4)
        group = store.add_unknown(a, 10.0, b"crop", now=100.0).group
        store.ignore(group)
        later = store.add_unknown(_near(a, 0.2, 5), 10.0, b"crop2", now=200.0)
        assert later.group == group and later.ignored
        g = store.group(group)
        assert g.status == "ignored" and g.faces == 0 and g.seen == 2
        with pytest.raises(ReviewError, match="no face crop"):
            store.crop(group)
        assert not store.add_unknown(_unit(6), 10.0, now=300.0).ignored  # someone else still is


def test_assign_enrolls_the_best_faces_and_forgets_the_group(tmp_path: pathlib.Path) -> None:
    encoder = Encoder(INT8_MODEL)
    perception = Perception.for_encoder(encoder.card)
    faces = [
        perception.faces(load_rgb(PHOTOS / photo), "RGB")[0]
        for photo in ("obama.jpg", "obama2.jpg", "obama3.jpg")
    ]
    vectors = encoder.embed(np.stack([f.chip for f in faces]))
    path = tmp_path / "g.db"
    crop = jpeg(faces[0].chip)
    with (
        ReviewStore.open(path_beside(path), fingerprint(encoder), threshold=0.45) as store,
        Gallery.open(path, fingerprint(encoder)) as gallery,
    ):
        groups = {
            store.add_unknown(v, f.quality["eye_distance"], crop, now=100.0 + i).group
            for i, (v, f) in enumerate(zip(vectors, faces))
        }
        assert len(groups) == 1  # three photos of one man: one stranger
        group = groups.pop()
        fleet = GalleryStore(Gallery.open(path, fingerprint(encoder)))
        fleet.put("michelle", "Michelle", 1, vectors[:1])  # a person the fleet gave
        with pytest.raises(FacegateError, match="came from the fleet; enroll it on the fleet authority"):
            store.assign(group, "michelle", gallery)  # its next entry would drop these faces
        assert gallery.embeddings("michelle").shape == (1, 128) and len(store.groups()) == 1
        fleet.gallery.close()
        op = OperatingPoint.from_card(encoder.card, 1e-3)
        person, alike = store.assign(group, "barack", gallery, display_name="Barack", op=op)
        assert person.embeddings == min(3, ASSIGN_BEST) and person.display_name == "Barack"
        # "michelle" holds his face: the door may take one for the other, as any enroll says
        assert alike and all("looks like michelle" in a for a in alike), alike
        assert store.groups() == []
        with pytest.raises(ReviewError):
            store.assign(group, "barack", gallery)
    assert crop not in path_beside(path).read_bytes()  # deleted from the file, not only the table


def test_bounds_by_count_and_age_and_decisions_expire(tmp_path: pathlib.Path) -> None:
    with _store(tmp_path / "r", max_faces=3, max_age_days=1.0, events_keep_hours=2.0) as store:
        ids = [store.add_unknown(_unit(10 + i), 1.0, b"c", now=1000.0 + i).group for i in range(5)]
        kept = {g.id for g in store.groups()}
        assert kept == set(ids[2:])  # the oldest two went, with their groups
        store.remember("e1", "alice", _unit(20), now=1000.0)
        assert store.decision("e1")[0] == "alice"
        assert store.purge(now=1000.0 + 3 * 3600) == 1  # the decision is older than 2 h
        with pytest.raises(ReviewError, match="last 2 h"):
            store.decision("e1")
        assert store.purge(now=1000.0 + 2 * DAY) == 6  # 3 faces and their 3 groups, a day old
        assert store.groups() == []


def test_another_model_empties_the_store(tmp_path: pathlib.Path) -> None:
    with _store(tmp_path / "r") as store:
        store.add_unknown(_unit(1), 1.0, b"c", now=1.0)
        store.remember("e1", "alice", _unit(2), now=1.0)
    other = ModelFingerprint("b" * 64, "other", 128)
    with ReviewStore.open(tmp_path / "r", other) as store:
        assert store.groups() == []
        with pytest.raises(ReviewError):
            store.decision("e1")
    with pytest.raises(ReviewError, match="128 finite"):
        _store(tmp_path / "r").add_unknown(np.zeros(128), 1.0)


# --- the daemon, over a real mosquitto -----------------------------------------------------

SECRET = "a-long-enough-test-secret"
REVIEW_COMMANDS = ["verify", "review", "review_assign", "review_ignore", "review_delete", "correct"]


def _review_daemon(tmp: pathlib.Path, port: int, obama_sample: Any, feed: Any) -> Any:
    from facegate.config import validate
    from facegate.daemon import Daemon

    config = validate(
        {
            "device": {"id": "door1"},
            "camera": {"source": "folder", "path": str(tmp), "max_fps": 50},
            "gallery": {"path": str(tmp / "gallery.db")},
            "mqtt": {"port": port, "outbox": str(tmp / "outbox")},
            "decision": {"votes_to_decide": 3, "window": 5, "max_missing": 2},
            "review": {"enabled": True},
            "commands": {"enabled": REVIEW_COMMANDS, "secret": SECRET},
        }
    )
    with Gallery.open(tmp / "gallery.db", fingerprint(Encoder(INT8_MODEL))) as gallery:
        gallery.add("obama", [obama_sample])
    return Daemon(config, feed)


class Client:
    """Sends (signed or not) commands to door1 and waits for each reply, feeding blank frames
    meanwhile: the daemon handles commands between frames, and a test camera only gives the
    frames it is handed."""

    def __init__(self, sub: Any, feed: Any, blank: np.ndarray) -> None:
        self.sub, self.feed, self.blank, self.n = sub, feed, blank, 0

    def __call__(self, name: str, args: dict[str, Any] | None = None, signed: bool = True) -> dict[str, Any]:
        from facegate.commands import sign

        self.n += 1
        rid = f"r{self.n}"
        topic = f"facegate/door1/command/{name}"
        request = {"id": rid, "args": args or {}, "reply_to": "facegate/door1/reply/t"}
        self.sub.publish(topic, sign(SECRET, "door1", topic, request) if signed else request)
        for _ in range(100):
            self.feed.put(self.blank)
            try:
                found = self.sub.wait(lambda t, p: t.endswith("/reply/t") and p.get("id") == rid, 1, 0.2)
            except AssertionError:
                continue
            return dict(found[0][1])
        raise AssertionError(f"no reply to {name}")


def _next_event(sub: Any, seen: int, timeout: float = 30.0) -> dict[str, Any]:
    found = sub.wait(lambda t, p: t.endswith("/event"), seen + 1, timeout)
    return dict(found[seen][1])


@contextlib.contextmanager
def _stranger_at_the_door(
    broker: Any, tmp: pathlib.Path, frames: dict[str, np.ndarray], obama_sample: Any
) -> Iterator[tuple[Any, Any, Any, Client]]:
    """A review-enabled daemon (obama enrolled) that has just decided a stranger (biden):
    (daemon, subscriber, camera feed, command client)."""
    from tests.mqtt_support import FeedSource, Subscriber
    from tests.test_daemon import running

    sub = Subscriber(broker.port, ["facegate/door1/#"])
    feed = FeedSource()
    try:
        with running(_review_daemon(tmp, broker.port, obama_sample, feed)) as daemon:
            sub.wait(lambda t, p: t.endswith("/availability") and p["state"] == "online")
            feed.put(frames["biden"], 8)
            feed.put(frames["blank"], 6)
            assert _next_event(sub, 0)["identity"] == "unknown"
            yield daemon, sub, feed, Client(sub, feed, frames["blank"])
    finally:
        sub.close()


@pytest.mark.pi
def test_a_stranger_assigned_over_mqtt_is_known_next_time(
    broker: Any, tmp_path: pathlib.Path, frames: dict[str, np.ndarray], obama_sample: Any
) -> None:
    with _stranger_at_the_door(broker, tmp_path, frames, obama_sample) as (daemon, sub, feed, command):
        feed.drained()
        # unsigned: refused, and nothing changes
        refused = command("review_assign", {"group": 1, "name": "mallory"}, signed=False)
        assert refused["ok"] is False and "must be signed" in refused["error"]
        assert command("review", signed=False)["ok"] is False
        listed = command("review")
        assert listed["ok"] is True
        (group,) = listed["result"]["groups"]
        assert group["status"] == "open" and group["faces"] == 1 and group["has_crop"]
        assigned = command("review_assign", {"group": group["id"], "name": "biden", "display_name": "Joe"})
        assert assigned["ok"] is True and assigned["result"]["name"] == "biden"
        assert command("review")["result"]["groups"] == []
        feed.put(frames["biden"], 8)
        feed.put(frames["blank"], 6)
        again = _next_event(sub, 1)
        assert again["identity"] == "biden" and again["accepted"] is True
        # "that was not biden" on biden's own face: the guard refuses it
        refused_correction = command("correct", {"event_id": again["event_id"], "name": "biden"})
        assert refused_correction["ok"] is False and "correction refused" in refused_correction["error"]
        wrong_name = command("correct", {"event_id": again["event_id"], "name": "obama"})
        assert wrong_name["ok"] is False and "not 'obama'" in wrong_name["error"]
        assert command("correct", {"event_id": "0" * 32})["ok"] is False  # no such decision
        bad = command("review_delete", {"group": "1; DROP TABLE groups"})
        assert bad["ok"] is False and "whole number" in bad["error"]
        feed.drained()
        assert daemon.counts["events"] == 2
    with Gallery.open(tmp_path / "gallery.db", fingerprint(Encoder(INT8_MODEL))) as gallery:
        assert [p.name for p in gallery.people()] == ["biden", "obama"]
        assert gallery.negatives("biden") == []
    for p in tmp_path.glob("gallery.db.review*"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


@pytest.mark.pi
def test_an_ignored_stranger_is_not_reported_again(
    broker: Any, tmp_path: pathlib.Path, frames: dict[str, np.ndarray], obama_sample: Any
) -> None:
    with _stranger_at_the_door(broker, tmp_path, frames, obama_sample) as (daemon, sub, feed, command):
        (group,) = command("review")["result"]["groups"]
        assert command("review_ignore", {"group": group["id"]})["ok"] is True
        feed.put(frames["biden"], 8)  # the same stranger again: not reported
        feed.put(frames["blank"], 6)
        feed.put(frames["obama"], 8)  # the door still works
        feed.put(frames["blank"], 6)
        assert _next_event(sub, 1)["identity"] == "obama"
        feed.drained()
        assert daemon.counts["ignored_strangers"] == 1 and daemon.counts["events"] == 2
        (ignored,) = command("review")["result"]["groups"]
        assert ignored["status"] == "ignored" and ignored["faces"] == 0 and ignored["seen"] == 2
        assert command("review_delete", {"group": group["id"]})["ok"] is True
        assert command("review")["result"]["groups"] == []


def test_review_commands_need_review_enabled() -> None:
    from facegate.config import ConfigError, validate

    with pytest.raises(ConfigError, match=r"need review\.enabled"):
        validate({"commands": {"enabled": ["verify", "review"], "secret": SECRET}})


def test_review_from_the_shell(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facegate.cli import main

    encoder = Encoder(INT8_MODEL)
    model = fingerprint(encoder)
    threshold = OperatingPoint.from_card(encoder.card, 1e-3).threshold
    g = tmp_path / "gallery.db"
    alice = _unit(1)
    lookalike = _near(alice, 0.95 * threshold, 2)  # accepted as alice, and not too near to correct
    with Gallery.open(g, model) as gallery, ReviewStore.open(path_beside(g), model, threshold) as store:
        gallery.add("alice", [Sample(alice, "synthetic")])
        store.remember("a" * 32, "alice", lookalike)
        store.add_unknown(_unit(3), 10.0, jpeg(np.full((150, 150, 3), 128, np.uint8)))
    base = ["--gallery", str(g)]
    assert main(["review", "list", "--json", *base]) == 0
    (group,) = json.loads(capsys.readouterr().out)
    out = tmp_path / "face.jpg"
    assert main(["review", "show", str(group["id"]), str(out), *base]) == 0
    assert out.read_bytes()[:2] == b"\xff\xd8" and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "best face" in capsys.readouterr().out
    assert main(["review", "correct", "a" * 32, "--name", "alice", "--json", *base]) == 0
    assert json.loads(capsys.readouterr().out)["not"] == "alice"
    with Gallery.open(g, model) as gallery:
        from facegate.decide import identify

        op = OperatingPoint.from_card(encoder.card, 1e-3)
        assert identify(gallery.templates(), _near(lookalike, 0.05, 4), op).corrected
        assert identify(gallery.templates(), _near(alice, 0.1, 5), op).name == "alice"
    assert main(["review", "corrections", "alice", "--json", *base]) == 0
    assert "correction of event" in capsys.readouterr().out
    assert main(["review", "corrections", "alice", "--clear", *base]) == 0
    assert main(["review", "assign", str(group["id"]), "carol", *base]) == 0
    assert main(["review", "ignore", "99", *base]) == 2  # no such group: a clear error
    assert "no unknown-face group 99" in capsys.readouterr().err
    assert main(["review", "list", "--gallery", str(tmp_path / "none.db")]) == 2


@pytest.mark.pi
def test_home_assistant_person_entities_and_the_last_unknown_face(
    broker: Any, tmp_path: pathlib.Path, frames: dict[str, np.ndarray], obama_sample: Any
) -> None:
    from facegate.config import validate
    from facegate.daemon import Daemon
    from tests.mqtt_support import FeedSource, Subscriber
    from tests.test_daemon import running

    config = validate(
        {
            "device": {"id": "door_ha"},
            "camera": {"source": "folder", "path": str(tmp_path), "max_fps": 50},
            "gallery": {"path": str(tmp_path / "gallery.db")},
            "mqtt": {"port": broker.port, "outbox": str(tmp_path / "outbox")},
            "decision": {"votes_to_decide": 3, "window": 5, "max_missing": 2},
            "review": {"enabled": True},
            "homeassistant": {"person_entities": True, "unknown_face_image": True},
        }
    )
    model = fingerprint(Encoder(INT8_MODEL))
    with Gallery.open(tmp_path / "gallery.db", model) as gallery:
        gallery.add("obama", [obama_sample])
    sub = Subscriber(broker.port, ["homeassistant/+/door_ha/#", "facegate/door_ha/#"])
    feed = FeedSource()
    person = "homeassistant/binary_sensor/door_ha/person_{}/config"
    try:
        with running(Daemon(config, feed)):
            entity = sub.wait(lambda t, p: t == person.format("obama"))[0][1]
            assert entity["state_topic"] == "facegate/door_ha/state" and "'obama'" in entity["value_template"]
            image = sub.wait(lambda t, p: t.endswith("/image/door_ha/unknown_face/config"))[0][1]
            assert image["image_topic"] == "facegate/door_ha/unknown_face"
            feed.put(frames["biden"], 8)
            feed.put(frames["blank"], 6)
            face = sub.wait(lambda t, p: t == "facegate/door_ha/unknown_face")[0]
            assert isinstance(face[1], bytes) and face[1][:2] == b"\xff\xd8"  # a JPEG, not retained
            # what an older facegate left for "ann.b" and "joe.b": one object id for "x.y" and "x_y"
            for legacy in ("ann_b", "joe_b"):
                sub.client.publish(person.format(legacy), b'{"name": "old"}', qos=1, retain=True)
            with Gallery.open(tmp_path / "gallery.db", model) as gallery:  # as `facegate enroll` would
                for name in ("joe.b", "joe_b", "ann.b"):
                    gallery.add(name, [obama_sample])
                gallery.remove("obama")
            feed.put(frames["blank"], 3)
            ids = {name: object_id(name) for name in ("joe.b", "joe_b", "ann.b")}
            assert (
                ids["joe_b"] == "joe_b" and ids["joe.b"].startswith("joe_b_") and len(set(ids.values())) == 3
            )
            for name, id_ in ids.items():  # three people, three entities
                found = sub.wait(
                    lambda t, p, i=id_: t == person.format(i) and isinstance(p, dict) and "unique_id" in p
                )
                entity = found[-1][1]
                assert entity["unique_id"] == f"facegate_door_ha_person_{id_}"
                assert f"'{name}' in value_json.present" in entity["value_template"]
            gone = sub.wait(lambda t, p: t == person.format("obama") and p == b"")  # withdrawn
            assert gone and sub.wait(lambda t, p: t == person.format("ann_b") and p == b"")  # retired
            assert not [m for m in sub.messages if m[0] == person.format("joe_b") and m[1] == b""]  # joe_b's
    finally:
        for name in ("obama", "joe_b", "ann_b", object_id("joe.b"), object_id("ann.b")):  # none left retained
            sub.client.publish(person.format(name), b"", qos=1, retain=True).wait_for_publish(5)
        sub.client.publish(
            "homeassistant/image/door_ha/unknown_face/config", b"", qos=1, retain=True
        ).wait_for_publish(5)
        for kind, name in (
            ("sensor", "last_person"),
            ("binary_sensor", "known_person"),
            ("event", "recognition"),
        ):
            sub.client.publish(f"homeassistant/{kind}/door_ha/{name}/config", b"", qos=1, retain=True)
        sub.close()


def test_corrections_replay_lowers_false_accepts_on_lookalikes() -> None:
    """``facegate evaluate corrections`` on synthetic faces: each stranger has a lookalike among
    the enrolled (0.37 apart, inside the 0.4 threshold) and photos that vary by ~0.1."""
    from facegate.convert.corrections import replay

    op = OperatingPoint(1e-3, 0.4)
    folders: dict[str, list[str]] = {}
    embeddings: dict[str, np.ndarray] = {}
    for i in range(20):
        centre = _unit(100 + i)
        twin = _near(centre, 0.37, 200 + i)  # another identity that looks alike
        for name, c in ((f"p{i}", centre), (f"q{i}", twin)):
            folders[name] = [f"{name}/{k}.jpg" for k in range(6)]
            for k, path in enumerate(folders[name]):
                embeddings[path] = _near(c, 0.08 if k else 0.0, 1000 * i + 10 * k + len(name))
    result = replay(folders, embeddings, op, seed=1)
    after = result["after"]
    none, corrected = after["no corrections"], after["corrections"]
    assert none["false_accepts"] > 0
    assert corrected["false_accepts"] < none["false_accepts"] / 2  # the lookalikes come back
    assert corrected["recorded"] + corrected["refused"] == result["review"]["wrong_names_corrected"]
    assert corrected["right"] == none["right"]  # honest corrections cost nothing here
    careless = after["corrections + 0.1 careless"]
    slips = result["review"]["right_names_wrongly_corrected"]
    assert slips > 0 and careless["refused"] == slips  # "not p3" on p3's own close photo: refused
    assert careless["right"] == none["right"]


@pytest.mark.parametrize(("crops", "keep_last"), [(False, False), (False, True), (True, False)])
def test_recorder_keeps_a_face_picture_only_where_asked(
    tmp_path: pathlib.Path, crops: bool, keep_last: bool
) -> None:
    """review.crops stores the JPEG in the queue; the Home Assistant image wants the last one;
    with neither, no picture of the face is kept anywhere."""
    chip = np.full((150, 150, 3), 128, np.uint8)
    with _store(tmp_path / "r.db") as store:
        recorder = Recorder(store, crops, keep_last)
        recorder.see(7, _unit(3), chip, {"eye_distance": 40.0, "yaw": 0.0})
        assert recorder.unknown(7, "e" * 32) is True
        (group,) = store.groups()
        if crops:
            assert store.crop(group.id).startswith(b"\xff\xd8")
        else:
            with pytest.raises(ReviewError, match="no face crop"):
                store.crop(group.id)
        assert (recorder.last_face is not None) is keep_last
