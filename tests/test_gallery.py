"""The gallery file: enrollment, integrity, privacy, refusal of files that are not ours."""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pytest

from facegate import transfer
from facegate.decide import OperatingPoint, identify, verify
from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.enroll import Enroller, RefusedError, fingerprint, rebuild
from facegate.errors import FacegateError
from facegate.gallery import (
    APPLICATION_ID,
    Gallery,
    GalleryError,
    ModelFingerprint,
    ModelMismatchError,
    Sample,
)
from facegate.perception import Perception
from facegate.review import ReviewStore, path_beside
from tests.conftest import FLOAT_MODEL, HEIC_BYTES, INT8_MODEL, ROOT, read_only, shared_path


@pytest.fixture(scope="module")
def enroller() -> Enroller:
    return Enroller(Perception(), Encoder(INT8_MODEL))


@pytest.fixture(scope="module")
def op(enroller: Enroller) -> OperatingPoint:
    return OperatingPoint.from_card(enroller.encoder.card, 1e-3)


# display names a person cannot read as they are: empty, too long, controls (C0, DEL, C1),
# a right-to-left override, a zero-width space, a line separator, a no-break space
NOT_PRINTABLE = (
    *("", "x" * 129, "a\nb", "a\x7fb", "a\x85b"),
    *("alice\u202eecila", "al\u200bice", "a\u2028b", "a\u00a0b"),
)


def _open(path: pathlib.Path, enroller: Enroller, **kw: bool) -> Gallery:
    return Gallery.open(path, fingerprint(enroller.encoder), **kw)


def _sha(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.pi
def test_enroll_verify_identify_and_unknown_on_bundled_photos(
    tmp_path: pathlib.Path, enroller: Enroller, op: OperatingPoint
) -> None:
    with _open(tmp_path / "g.db", enroller) as gallery:
        enroller.enroll(gallery, "obama", [PHOTOS / "obama.jpg"])
        templates = gallery.templates()
        probe = enroller.sample(PHOTOS / "obama2.jpg").vector
        stranger = enroller.sample(PHOTOS / "biden.jpg").vector
        assert verify(templates, probe, "obama", op).accepted
        rejected = verify(templates, stranger, "obama", op)
        assert not rejected.accepted and rejected.distance > op.threshold
        assert identify(templates, probe, op).name == "obama"
        unknown = identify(templates, stranger, op)
        assert unknown.name is None and unknown.nearest == "obama"  # open set: nobody close enough
        enroller.enroll(gallery, "biden", [PHOTOS / "biden.jpg"])
        both = gallery.templates()  # reloaded after the change
        assert both.names == ("biden", "obama")
        found = identify(both, enroller.sample(PHOTOS / "obama3.jpg").vector, op)
        assert found.name == "obama" and found.second == "biden" and found.margin > 0.1


def _png_header(width: int, height: int) -> bytes:
    """A PNG of ``width`` x ``height`` 8-bit grey pixels as its header says, with one row of data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_refused_images_say_why(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg")
    with pytest.raises(RefusedError, match="no face found"):
        enroller.sample(blank)
    with pytest.raises(RefusedError, match="cannot decode"):
        enroller.sample(junk)
    with pytest.raises(RefusedError, match="cannot read"):
        enroller.sample(tmp_path / "missing.jpg")
    # a few bytes that claim 120 and 400 megapixels (a PNG of zeros compresses that far): refused
    # from the header, before a Pi would spend 360 MB or more decoding them
    for width, height in ((12_000, 10_000), (20_000, 20_000)):
        bomb = tmp_path / f"bomb{width}.png"
        bomb.write_bytes(_png_header(width, height))
        with pytest.raises(RefusedError, match="more than the 64 megapixels facegate decodes"):
            enroller.sample(bomb)
    with _open(tmp_path / "g.db", enroller) as gallery:
        outcome = enroller.enroll(gallery, "nobody", [blank, junk])
        assert outcome.person is None and len(outcome.refused) == 2
        assert len(gallery) == 0  # nothing written for a person with no usable image
        outcome = enroller.enroll(gallery, "obama", [blank, PHOTOS / "obama.jpg"])
        assert outcome.added == 1 and outcome.refused == [f"{blank}: no face found"]


def test_a_folder_says_what_it_did_not_read(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    """``enroll --dir``: an iPhone's HEIC is refused with how to export it, another file is
    named as not a photo, a hidden one is left alone (before, all were skipped in silence, and
    a folder of HEIC photos said only "no usable image")."""
    alice = tmp_path / "people" / "alice"
    alice.mkdir(parents=True)
    (alice / "a.jpg").write_bytes((PHOTOS / "obama.jpg").read_bytes())
    (alice / "IMG_0001.HEIC").write_bytes(HEIC_BYTES)
    (alice / "notes.txt").write_text("her good side")
    (alice / ".DS_Store").write_bytes(b"\x00")
    with _open(tmp_path / "g.db", enroller) as gallery:
        (outcome,) = enroller.enroll_dir(gallery, tmp_path / "people")
    assert outcome.added == 1
    assert len(outcome.refused) == 2
    assert "IMG_0001.HEIC: a HEIC/HEIF photo" in outcome.refused[0]
    assert "export it as JPEG" in outcome.refused[0]
    assert outcome.refused[1].endswith(
        "notes.txt: not a photo facegate reads (.bmp, .jpeg, .jpg, .pgm, .png, .webp)"
    )


def test_a_folder_named_as_people_name_folders(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    """``enroll --dir`` stopped at the first folder whose name was not a valid name: "Bob
    Smith", "José" (stored decomposed on a Mac), or the ``__MACOSX`` and hidden folders of a
    zip made on one. Now such a folder is enrolled under its letters and digits, shown as the
    folder's name; folders that would become one name, or none, are refused before anything
    is written."""
    from facegate.enroll import name_of_folder

    people = tmp_path / "people"
    for folder in ("Bob Smith", "Jose\u0301", "alice", "__MACOSX", ".Trashes"):
        (people / folder).mkdir(parents=True)
        (people / folder / "a.jpg").write_bytes((PHOTOS / "obama.jpg").read_bytes())
    with _open(tmp_path / "g.db", enroller) as gallery:
        outcomes = enroller.enroll_dir(gallery, people)
        assert [o.name for o in outcomes] == ["Bob_Smith", "Jose", "alice"]
        shown = {p.name: p.display_name for p in gallery.people()}
        assert shown == {"Bob_Smith": "Bob Smith", "Jose": "Jos\u00e9", "alice": "alice"}
        (people / "Bob_Smith").mkdir()
        with pytest.raises(FacegateError, match="would both be enrolled as 'Bob_Smith'; rename one"):
            enroller.enroll_dir(gallery, people)
    assert name_of_folder(pathlib.Path("Zoë  O'Neil (2024)")) == ("Zoe_O_Neil_2024", "Zoë  O'Neil (2024)")
    for nameless in ("李雷", "unknown", "..."):
        with pytest.raises(FacegateError, match=r"no name can be made|events name a stranger"):
            name_of_folder(pathlib.Path(nameless))


def test_group_photo_is_refused_for_enrollment(enroller: Enroller) -> None:
    scene = shared_path("datasets", "unlabeled_scenes")
    photos = sorted(scene.glob("*"))
    refused = 0
    for photo in photos:
        try:
            enroller.sample(photo)
        except RefusedError as exc:
            refused += "faces found" in str(exc)
    assert refused >= 1  # at least the group photos say "N faces found"


@pytest.mark.pi
def test_same_name_twice_adds_then_replace_swaps(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    with _open(tmp_path / "g.db", enroller) as gallery:
        enroller.enroll(gallery, "obama", [PHOTOS / "obama.jpg"])
        second = enroller.enroll(gallery, "obama", [PHOTOS / "obama2.jpg"])
        assert second.person is not None and second.person.embeddings == 2  # documented: adds
        replaced = enroller.enroll(gallery, "obama", [PHOTOS / "obama3.jpg"], replace=True)
        assert replaced.person is not None and replaced.person.embeddings == 1
        assert len(gallery) == 1


def test_template_is_the_normalised_mean(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    a, b = _vector(1), _vector(2)
    with _open(tmp_path / "g.db", enroller) as gallery:
        gallery.add("x", [Sample(a, "a"), Sample(b, "b")])
        t = gallery.templates().matrix[0]
        expected = (a + b) / np.linalg.norm(a + b)
        np.testing.assert_allclose(t, expected, atol=1e-6)


def test_file_is_private_and_ours(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    path = tmp_path / "sub" / "g.db"
    with _open(path, enroller) as gallery:
        gallery.add("x", [Sample(_vector(0), "synthetic")])
        for p in path.parent.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p  # db, and its -wal/-shm while open
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    os.chmod(path, 0o644)
    _open(path, enroller).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # made private again


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a gallery\n", b"SQLite format 3\x00" + bytes(range(256)) * 20],
    ids=["text", "corrupt-sqlite"],
)
@pytest.mark.pi
def test_corrupt_file_is_refused_and_untouched(
    tmp_path: pathlib.Path, enroller: Enroller, content: bytes
) -> None:
    path = tmp_path / "g.db"
    path.write_bytes(content)
    before = _sha(path)
    with pytest.raises(GalleryError, match=str(path)):
        _open(path, enroller)
    assert _sha(path) == before
    assert not path.with_name("g.db-wal").exists()


@pytest.mark.parametrize("where", ["start", "end"])
def test_damaged_gallery_is_refused_and_untouched(
    tmp_path: pathlib.Path, enroller: Enroller, where: str
) -> None:
    path = tmp_path / "g.db"
    with _open(path, enroller) as gallery:
        for i in range(200):
            gallery.add(f"p{i}", [Sample(_vector(i), "synthetic" * 50)])
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    at = 4096 if where == "start" else len(data) - 4 * 4096
    data[at : at + 2 * 4096] = b"\xff" * 8192  # two pages of garbage
    path.write_bytes(bytes(data))
    before = _sha(path)
    with pytest.raises(GalleryError, match=r"corrupt|not a facegate"):  # at open, or at first read
        _read_everything(path, enroller)
    assert _sha(path) == before


def _read_everything(path: pathlib.Path, enroller: Enroller) -> None:
    with _open(path, enroller) as gallery:
        gallery.templates()
        gallery.people()


def test_opening_the_gallery_again_keeps_the_open_connections_locks(
    tmp_path: pathlib.Path, enroller: Enroller
) -> None:
    """A process holding the gallery open (the daemon: its matcher's connection, the fleet's) must
    keep it locked when it opens it once more: another process's `facegate` command, closing
    its connection, would otherwise take itself for the last user and delete the WAL under the
    open connections. Opening used to read the file's header through Python, and closing that
    descriptor dropped all of this process's locks on the file."""
    path = tmp_path / "g.db"
    first = _open(path, enroller)
    first.add("x", [Sample(_vector(0), "synthetic")])
    second = _open(path, enroller)
    look = "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM people')"
    subprocess.run([sys.executable, "-I", "-c", look, str(path)], check=True)
    assert path.with_name("g.db-wal").exists()
    second.add("y", [Sample(_vector(1), "synthetic")])
    assert [p.name for p in first.people()] == ["x", "y"]
    for gallery in (first, second):
        gallery.close()
    foreign = tmp_path / "notes.txt"
    for content in (b"not a gallery " * 10, b"short"):  # refused by SQLite itself, and untouched
        foreign.write_bytes(content)
        with pytest.raises(GalleryError, match=r"not an SQLite file\); left untouched"):
            _open(foreign, enroller)
        assert foreign.read_bytes() == content and sorted(os.listdir(tmp_path)) == ["g.db", "notes.txt"]


def test_backup_while_the_gallery_is_in_use_then_restore(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    """`gallery backup` copies everything (kept photos, corrections) while another process has
    the gallery open, into one private file; `gallery restore` makes the gallery exactly that
    again, seen by the connection that stayed open, and never writes the backup."""
    from facegate.cli import main

    path = tmp_path / "gallery.db"
    service = _open(path, enroller)  # the daemon's connection, open throughout
    enroller.enroll(service, "alice", [PHOTOS / "obama.jpg"], keep_images=True)
    service.add("bob", [Sample(_vector(1), "synthetic")])
    service.add_negative("bob", _vector(2), "a correction")
    copy = tmp_path / "backups" / "gallery-backup.db"
    copy.parent.mkdir()
    made = subprocess.run(
        [sys.executable, "-m", "facegate", "gallery", "backup", str(copy), "--gallery", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0 and "backed up 2 people" in made.stdout, made.stderr
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and os.listdir(copy.parent) == [copy.name]
    assert copy.read_bytes()[18:20] == b"\x01\x01"  # a rollback-journal file: no WAL to go with it
    before = _sha(copy)
    service.remove("bob")
    service.add("carol", [Sample(_vector(3), "synthetic")])
    assert main(["gallery", "restore", str(copy), "--gallery", str(path)]) == 0
    assert _sha(copy) == before
    with _open(path, enroller) as gallery:  # restored in place, the connection's cache too
        gallery.add("dave", [Sample(_vector(5), "synthetic")])
        assert sorted(gallery.templates().names) == ["alice", "bob", "dave"]
        transfer.restore(gallery, copy)
        assert sorted(gallery.templates().names) == ["alice", "bob"]
    assert [p.name for p in service.people()] == ["alice", "bob"]  # the open connection sees it
    assert service.person("alice").images == 1 and len(service.negatives("bob")) == 1
    assert service.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    service.close()
    fresh = tmp_path / "new-device" / "gallery.db"  # a new device gets its people this way too
    assert main(["gallery", "restore", str(copy), "--gallery", str(fresh)]) == 0
    with _open(fresh, enroller) as gallery:
        assert [p.name for p in gallery.people()] == ["alice", "bob"]
    other = ModelFingerprint("0" * 64, "another_model", 128)
    with Gallery.open(tmp_path / "other.db", other) as gallery:
        gallery.add("x", [Sample(_vector(4), "synthetic")])
    not_a_gallery = tmp_path / "notes.db"
    not_a_gallery.write_bytes(b"not a gallery" * 20)
    with _open(path, enroller) as gallery:
        for source, refusal in (
            (tmp_path / "other.db", r"other\.db: its embeddings were made by model another_model"),
            (not_a_gallery, r"notes\.db: not a facegate gallery"),
            (tmp_path / "missing.db", r"missing\.db: no such backup file"),
            (path, r"gallery\.db: that is the gallery's own file"),
        ):
            with pytest.raises(FacegateError, match=refusal):
                transfer.restore(gallery, source)
        with pytest.raises(FacegateError, match="the gallery's own file"):
            transfer.backup(gallery, path)
        with pytest.raises(FacegateError, match=r"b\.db: cannot write the backup there \(No such file"):
            transfer.backup(gallery, tmp_path / "missing" / "b.db")
        assert [p.name for p in gallery.people()] == ["alice", "bob"]
    assert sorted(os.listdir(tmp_path)) == ["backups", "gallery.db", "new-device", "notes.db", "other.db"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to act as another user")
def test_restore_under_another_process_that_has_the_gallery_open_is_refused(
    tmp_path: pathlib.Path, enroller: Enroller
) -> None:
    """The docs said to stop the service around a restore, and nothing checked: a restore
    under it left its fleet sync holding the versions it had in memory, so the fleet's
    entries newer than the backup were skipped as already held. The restore now names the
    process that has the gallery open and changes nothing; with it gone, it restores."""
    path = tmp_path / "gallery.db"
    with _open(path, enroller, create=True) as gallery:
        gallery.add("alice", [Sample(_vector(1), "synthetic")])
        transfer.backup(gallery, tmp_path / "backup.db")
        gallery.add("bob", [Sample(_vector(2), "synthetic")])
    holder = subprocess.Popen(  # another process with a connection open, as the service has
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute('SELECT * FROM people');"
            " print('open', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        restore = [sys.executable, "-m", "facegate", "gallery", "restore", str(tmp_path / "backup.db")]
        refused = subprocess.run([*restore, "--gallery", str(path)], capture_output=True, text=True, cwd=ROOT)
        assert refused.returncode != 0
        assert f"gallery.db: in use by pid {holder.pid} (python" in refused.stderr, refused.stderr
        assert "stop it first (`sudo systemctl stop facegate`" in refused.stderr
    finally:
        holder.communicate("")
    with _open(path, enroller) as gallery:
        assert [p.name for p in gallery.people()] == ["alice", "bob"]  # nothing restored
    done = subprocess.run([*restore, "--gallery", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    with _open(path, enroller) as gallery:
        assert [p.name for p in gallery.people()] == ["alice"]


def test_a_file_that_is_not_a_photo_is_refused_without_reading_it_whole(tmp_path: pathlib.Path) -> None:
    """`facegate enroll alice clip.mp4` (a video named by mistake) read the whole file into
    memory before the decoder refused it: a few GB on a Pi with 1 GB is the end of the process,
    or of the service beside it. Now its first bytes refuse it; a kept photo is still kept."""
    clip = tmp_path / "clip.mp4"
    with clip.open("wb") as f:
        f.truncate(512 << 20)  # sparse: 512 MB to read, nothing on the disk
    gallery = tmp_path / "g.db"
    code = (  # VmHWM: this process's own peak (ru_maxrss can carry the forking parent's over)
        "import re, sys; from facegate.cli import main; "
        "status = main(sys.argv[1:]); "
        "status_file = open('/proc/self/status').read(); "
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', status_file).group(1)) // 1024, status)"
    )
    argv = [
        "--gallery",
        str(gallery),
        "enroll",
        "obama",
        str(clip),
        str(PHOTOS / "obama.jpg"),
        "--keep-images",
    ]
    run = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT)
    assert "clip.mp4: cannot decode image" in run.stderr, run.stderr
    peak_mb, status = (int(w) for w in run.stdout.split()[-2:])
    assert status == 0 and peak_mb < 300, run.stdout  # the models and one photo; not the file
    with Gallery.open(gallery, fingerprint(Encoder(INT8_MODEL))) as g:
        assert [s[3] for s in g.samples()] == [(PHOTOS / "obama.jpg").read_bytes()]
        with pytest.raises(FacegateError, match=r"clip\.mp4: not a facegate gallery export \(it is not JSON"):
            transfer.import_(g, clip)  # from its first bytes, too


def test_a_gallery_another_user_owns_says_as_whom_to_run(enroller: Enroller, caplog: Any) -> None:
    """`facegate enroll --gallery /var/lib/facegate/gallery.db` run by the login user met the
    service's gallery (0600, in a 0700 folder): a traceback, or "corrupt gallery ... restore a
    backup" for a folder it could not write its WAL in. Each now says why, and as whom to run.
    And root (`sudo facegate enroll`) no longer leaves the service a gallery or review file it
    cannot open. Tried as root taking the euid of `nobody`."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="facegate-owner-"))
    try:
        root.chmod(0o755)
        roots = root / "g.db"
        _open(roots, enroller).close()
        theirs = root / "shared.db"  # nobody's file, in a folder only root may write
        shutil.copy(roots, theirs)
        os.chown(theirs, 65534, 65534)
        service = root / "state"  # the service's folder; root enrolls into it (`sudo facegate enroll`)
        service.mkdir(mode=0o700)
        os.chown(service, 65534, 65534)
        with _open(service / "gallery.db", enroller) as gallery:
            gallery.add("x", [Sample(_vector(0), "synthetic")])
        review = ReviewStore.open(path_beside(service / "gallery.db"), fingerprint(enroller.encoder))
        review.close()
        assert {p.stat().st_uid for p in service.iterdir()} == {65534}  # left to the folder's owner
        open_to_all = service / "open.db"  # root's, readable and writable by anyone
        shutil.copy(roots, open_to_all)
        open_to_all.chmod(0o666)
        os.seteuid(65534)
        try:
            with _open(service / "gallery.db", enroller) as gallery:  # the service opens it
                assert "x" in gallery
            caplog.clear()
            with _open(open_to_all, enroller):  # used; not this user's to make private, and said so
                pass
            assert "not this user's to make private; its owner must (chmod 600)" in caplog.text
            assert stat.S_IMODE(open_to_all.stat().st_mode) == 0o666
            mine = r"run as that user, `sudo facegate \.\.\.`, or give it to nobody: `sudo chown nobody: "
            for path, refusal in (
                (root / "new.db", r"cannot create it: Permission denied \(it belongs to root: " + mine),
                (roots, r"cannot open it: permission denied \(it belongs to root: " + mine),
                (theirs, r"cannot open it \(.+\): SQLite writes its WAL beside the file, so its folder"),
            ):
                with pytest.raises(GalleryError, match=refusal):
                    _open(path, enroller)
        finally:
            os.seteuid(0)
        assert sorted(os.listdir(root)) == ["g.db", "shared.db", "state"]
    finally:
        shutil.rmtree(root)


def test_a_gallery_on_a_read_only_disk_is_read(
    tmp_path: pathlib.Path, enroller: Enroller, caplog: Any
) -> None:
    """Read, never written: with the WAL a power cut left (and its shared-memory file), its
    latest person too; without that file, SQLite cannot read the WAL there, and says so."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with _open(tmp_path / "g.db", enroller) as gallery:
        gallery.add("a", [Sample(_vector(0), "synthetic")])
        gallery.purge()  # a is in the file
        gallery.add("b", [Sample(_vector(1), "synthetic")])  # b only in the WAL
        for end in ("", "-wal", "-shm"):  # the files as a power cut left them
            shutil.copy(tmp_path / f"g.db{end}", disk / f"g.db{end}")
    for without_shm in (False, True):
        if without_shm:
            (disk / "g.db-shm").unlink()
        caplog.clear()
        with read_only(disk), _open(disk / "g.db", enroller) as gallery:
            assert [p.name for p in gallery.people()] == (["a"] if without_shm else ["a", "b"])
            with pytest.raises(GalleryError, match="readonly database"):
                gallery.add("c", [Sample(_vector(2), "synthetic")])
        assert "is on a read-only file system: deciding with the" in caplog.text
        assert ("its latest changes are missed" in caplog.text) == without_shm


def test_foreign_sqlite_is_refused_and_untouched(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.execute("INSERT INTO notes VALUES ('keep me')")
    db.commit()
    db.close()
    before = _sha(path)
    with pytest.raises(GalleryError, match="not a facegate gallery"):
        _open(path, enroller)
    assert _sha(path) == before


def test_other_model_is_refused_with_a_way_out(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    path = tmp_path / "g.db"
    with _open(path, enroller) as gallery:
        gallery.add("x", [Sample(_vector(0), "synthetic")])
    other = ModelFingerprint("0" * 64, "another_model", 128)
    with pytest.raises(ModelMismatchError, match="gallery rebuild"):
        Gallery.open(path, other)


def test_rebuild_needs_kept_images_and_switches_model(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    path = tmp_path / "g.db"
    with _open(path, enroller) as gallery:
        enroller.enroll(gallery, "obama", [PHOTOS / "obama.jpg"], keep_images=True)
        enroller.enroll(gallery, "biden", [PHOTOS / "biden.jpg"])
    float_enroller = Enroller(enroller.perception, Encoder(FLOAT_MODEL))
    with Gallery.open(path, fingerprint(float_enroller.encoder), any_model=True) as gallery:
        with pytest.raises(FacegateError, match="no kept images for biden"):
            rebuild(gallery, float_enroller)
        gallery.remove("biden")
        assert rebuild(gallery, float_enroller) == 1
    with Gallery.open(path, fingerprint(float_enroller.encoder)) as gallery:  # now the float32 model's
        probe = float_enroller.sample(PHOTOS / "obama2.jpg").vector
        op = OperatingPoint(1e-3, 0.38)
        assert identify(gallery.templates(), probe, op).name == "obama"


@pytest.mark.pi
def test_rename_remove_export_import(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    with _open(tmp_path / "a.db", enroller) as gallery:
        gallery.add("x", [Sample(_vector(0), "s0"), Sample(_vector(1), "s1")], display_name="Ex Ample")
        gallery.add("y", [Sample(_vector(2), "s2")])
        gallery.rename("x", "z")
        with pytest.raises(FacegateError, match="already enrolled"):
            gallery.rename("z", "y")
        with pytest.raises(FacegateError, match="invalid name"):
            gallery.rename("z", "has/slash")
        export = tmp_path / "export.json"
        assert transfer.export(gallery, export) == 2
        assert stat.S_IMODE(export.stat().st_mode) == 0o600
        gallery.remove("y")
        with pytest.raises(FacegateError, match="not enrolled"):
            gallery.remove("y")
        original = gallery.embeddings("z")
    with _open(tmp_path / "b.db", enroller) as other:
        other.add("z", [Sample(_vector(9), "already here")])
        imported, skipped = transfer.import_(other, export)
        assert imported == ["y"] and skipped == ["z"]
        transfer.import_(other, export, replace=True)
        np.testing.assert_allclose(other.embeddings("z"), original, atol=1e-6)
        assert other.person("z").display_name == "Ex Ample"


def test_bad_vectors_and_names_are_refused(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    with _open(tmp_path / "g.db", enroller) as gallery:
        with pytest.raises(FacegateError, match="128 finite"):
            gallery.add("x", [Sample(np.full(128, np.nan, np.float32), "nan")])
        with pytest.raises(FacegateError, match="128 finite"):
            gallery.add("x", [Sample(np.zeros(64, np.float32), "short")])
        with pytest.raises(FacegateError, match="invalid name"):
            gallery.add("+/#", [Sample(_vector(0), "s")])
        for word in ("unknown", "Unknown"):  # what an event says of a stranger
            with pytest.raises(FacegateError, match="events name a stranger 'unknown'"):
                gallery.add(word, [Sample(_vector(0), "s")])
        # every path in (CLI, MQTT, the page, the fleet) ends here: a display name is read as shown
        for display in NOT_PRINTABLE:
            with pytest.raises(FacegateError, match="invalid display name"):
                gallery.add("x", [Sample(_vector(0), "s")], display_name=display)
        assert len(gallery) == 0
        gallery.add("x", [Sample(_vector(0), "s")], display_name="Zoë O'Brien-Ngũgĩ 🙂")


def test_missing_gallery_without_create(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    with pytest.raises(GalleryError, match="no gallery here"):
        _open(tmp_path / "none.db", enroller, create=False)


@pytest.mark.pi
def test_kill_9_mid_enrollment_keeps_every_committed_person(tmp_path: pathlib.Path) -> None:
    people = tmp_path / "people"
    photos = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
    for i in range(300):
        folder = people / f"person{i:03d}"
        folder.mkdir(parents=True)
        (folder / "a.jpg").symlink_to(PHOTOS / photos[i % 4])
    gallery_path = tmp_path / "g.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "facegate", "enroll", "--dir", str(people), "--gallery", str(gallery_path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    committed = 0
    deadline = time.monotonic() + 120
    try:
        while committed < 20 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
            if gallery_path.exists() and gallery_path.stat().st_size:
                with sqlite3.connect(gallery_path, timeout=5) as db:
                    try:
                        committed = db.execute("SELECT count(*) FROM people").fetchone()[0]
                    except sqlite3.OperationalError:
                        committed = 0  # tables not created yet
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert 20 <= committed < 300, f"killed at {committed} people: not mid-enrollment"
    db = sqlite3.connect(gallery_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    fp = fingerprint(Encoder(INT8_MODEL))
    with Gallery.open(gallery_path, fp, create=False) as gallery:
        people_now = gallery.people()
        assert len(people_now) >= committed
        names = [p.name for p in people_now]
        assert names == [f"person{i:03d}" for i in range(len(names))]  # a prefix, in order
        assert all(p.embeddings == 1 for p in people_now)  # each one whole
        assert gallery.templates().matrix.shape == (len(names), 128)


def _enroll_folders(
    gallery: Gallery, enroller: Enroller, root: pathlib.Path, pattern: str, per_person: int, leave_out: str
) -> None:
    for person in sorted(p for p in root.iterdir() if p.is_dir() and p.name != leave_out):
        outcome = enroller.enroll(gallery, person.name, sorted(person.glob(pattern))[:per_person])
        assert outcome.person is not None, outcome.refused


def test_five_celebrities_more_photos_make_better_templates(
    tmp_path: pathlib.Path, enroller: Enroller, op: OperatingPoint
) -> None:
    root = shared_path("datasets", "five_celebrity")
    probes = [(p.parent.name, enroller.sample(p).vector) for p in sorted(root.glob("*/val_*"))]
    named = {}
    for per_person in (1, 100):
        with _open(tmp_path / f"g{per_person}.db", enroller) as gallery:
            _enroll_folders(gallery, enroller, root, "train_*", per_person, "madonna")
            answers = [(truth, identify(gallery.templates(), v, op).name) for truth, v in probes]
        known = [(t, n) for t, n in answers if t != "madonna"]
        assert not [a for a in known if a[1] is not None and a[1] != a[0]], "someone was misnamed"
        assert [n for t, n in answers if t == "madonna"] == [None] * 5  # the stranger stays unknown
        named[per_person] = np.mean([t == n for t, n in known])
    print(f"five_celebrity val probes named: one-shot {named[1]:.0%}, all train photos {named[100]:.0%}")
    assert named[100] >= 0.95 and named[100] > named[1]


def test_face_recognition_examples_one_shot(
    tmp_path: pathlib.Path, enroller: Enroller, op: OperatingPoint
) -> None:
    root = shared_path("datasets", "face_recognition_examples")
    with _open(tmp_path / "g.db", enroller) as gallery:
        _enroll_folders(gallery, enroller, root, "*", 1, "biden")
        templates = gallery.templates()
        answers = []
        for person in sorted(p for p in root.iterdir() if p.is_dir()):
            for image in sorted(person.iterdir())[1 if person.name != "biden" else 0 :]:
                try:
                    vector = enroller.sample(image).vector
                except RefusedError:
                    continue
                answers.append((person.name, identify(templates, vector, op).name, image.name))
    known = [(t, n) for t, n, _ in answers if t != "biden"]
    print(f"face_recognition_examples: {sum(t == n for t, n in known)} of {len(known)} probes named")
    assert len(known) >= 8 and all(t == n for t, n in known), answers
    assert all(n is None for t, n, _ in answers if t == "biden")  # not enrolled: unknown


def test_corrections_are_kept_bounded_and_go_with_the_person(
    tmp_path: pathlib.Path, enroller: Enroller
) -> None:
    from facegate.gallery import MAX_NEGATIVES

    path = tmp_path / "g.db"
    with _open(path, enroller) as gallery:
        gallery.add("alice", [Sample(_vector(0), "synthetic")])
        gallery.add("bob", [Sample(_vector(1), "synthetic")])
        with pytest.raises(FacegateError, match="not enrolled"):
            gallery.add_negative("carol", _vector(2), "event e1")
        for i in range(MAX_NEGATIVES + 3):
            count = gallery.add_negative("alice", _vector(10 + i), f"event e{i}")
        assert count == MAX_NEGATIVES
        kept = gallery.negatives("alice")
        assert kept[0][1] == "event e3"  # the oldest beyond the bound went
        t = gallery.templates()
        assert t.negatives is not None and t.negatives.shape == (MAX_NEGATIVES, 128)
        assert len(t.negatives_of(t.names.index("alice"))) == MAX_NEGATIVES
        assert len(t.negatives_of(t.names.index("bob"))) == 0
    with _open(path, enroller) as gallery:  # persisted, and removed with the person
        assert len(gallery.negatives("alice")) == MAX_NEGATIVES
        gallery.remove("alice")
        assert gallery.templates().negatives is not None
        assert len(gallery.templates().negatives) == 0  # type: ignore[arg-type]
        gallery.add_negative("bob", _vector(5), "event e9")
        assert gallery.clear_negatives("bob") == 1 and gallery.negatives("bob") == []


def test_gallery_without_the_corrections_table_gets_it(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    path = tmp_path / "g.db"
    with _open(path, enroller) as gallery:
        gallery.add("alice", [Sample(_vector(0), "synthetic")])
    db = sqlite3.connect(path)
    db.execute("DROP TABLE negatives")  # as a gallery made before corrections
    db.commit()
    db.close()
    with _open(path, enroller) as gallery:
        assert gallery.negatives("alice") == [] and "alice" in gallery
        gallery.add_negative("alice", _vector(3), "event e1")


def test_a_photo_enrolled_again_is_not_added_again(tmp_path: pathlib.Path, enroller: Enroller) -> None:
    """`enroll --dir people/` re-run after one more folder was added (or `enroll alice a.jpg`
    run twice, to be sure) added every photo again: the gallery grew with each run, and a
    photo given twice weighed twice in its person's mean template. A photo the person is
    already enrolled from is now left out, also within one call; the least change to its
    pixels is a new photo; a photo given again with --keep-images keeps its image."""
    with _open(tmp_path / "g.db", enroller, create=True) as gallery:
        a, b = _vector(1), _vector(2)
        assert gallery.add("x", [Sample(a, "a.jpg"), Sample(a.copy(), "a-again.jpg")]).embeddings == 1
        template = gallery.templates().matrix.copy()
        assert gallery.add("x", [Sample(a, "a.jpg")]).embeddings == 1
        assert np.array_equal(gallery.templates().matrix, template)
        assert gallery.add("y", [Sample(a, "a.jpg")]).embeddings == 1  # another person: theirs
        nudged = a + 0.004 * b  # 0.004 apart: as a JPEG re-save moves no embedding
        assert gallery.add("x", [Sample(nudged / np.linalg.norm(nudged), "a-resaved.jpg")]).embeddings == 2
        assert gallery.add("x", [Sample(a, "a.jpg", image=b"jpeg")]).embeddings == 2
        assert [s[3] for s in gallery.samples() if s[0] == "x"] == [b"jpeg", None]
        assert gallery.add("x", [Sample(a, "a.jpg"), Sample(a, "a.jpg")], replace=True).embeddings == 1

    people = tmp_path / "people"
    (people / "obama").mkdir(parents=True)
    shutil.copy(PHOTOS / "obama.jpg", people / "obama")
    with _open(tmp_path / "cli.db", enroller, create=True) as gallery:
        first = enroller.enroll_dir(gallery, people)
        (people / "biden").mkdir()
        shutil.copy(PHOTOS / "biden.jpg", people / "biden")
        shutil.copy(PHOTOS / "obama2.jpg", people / "obama")
        again = enroller.enroll_dir(gallery, people)
        assert [(o.name, o.added, o.again) for o in first] == [("obama", 1, 0)]
        assert [(o.name, o.added, o.again) for o in again] == [("biden", 1, 0), ("obama", 1, 1)]
        assert {p.name: p.embeddings for p in gallery.people()} == {"biden": 1, "obama": 2}


@pytest.mark.parametrize(
    ("photo", "size", "face"),
    [
        ("obama2.jpg", (4032, 3024), 200),  # not found by the short-range model
        ("obama3.jpg", (4032, 3024), 200),  # a patch of his face taken for a face 750 px wide
        ("obama3.jpg", (1920, 1080), 90),  # the same in a 2 MP photo
        ("obama3.jpg", (3024, 4032), 300),
    ],
)
def test_a_small_face_in_a_large_photo_enrolls_as_the_person(
    enroller: Enroller, photo: str, size: tuple[int, int], face: int
) -> None:
    """A phone photo taken from a few metres: a face 200 px wide in 12 megapixels is 6 px in
    the short-range detector's 128 px input. It found no face there, or a patch of the face
    taken for a larger one, whose chip passed the gates: an embedding of no one, enrolled
    under the person's name (0.55 from their own photo). ``Perception.photo_faces`` finds
    such faces with the full-range model and places them with the short-range refinement.
    scripts/dev/photo_faces.py prints the whole table."""
    from facegate.demo import scene

    width, height = size
    image = scene(PHOTOS / photo, face_width=float(face), centre=(width / 2, height / 2.5), size=size)
    reference = enroller.sample(PHOTOS / "obama.jpg").vector
    op = OperatingPoint.from_card(enroller.encoder.card, 1e-3)
    distance = float(np.linalg.norm(enroller.sample_from_rgb(image, "phone photo").vector - reference))
    assert distance < 0.8 * op.threshold, distance  # his own photos are 0.22-0.29 from it


def test_a_large_photo_without_a_face_says_how_to_crop_it(enroller: Enroller) -> None:
    from facegate.demo import scene

    far = scene(PHOTOS / "obama2.jpg", face_width=60.0, centre=(2000.0, 1200.0), size=(4032, 3024))
    with pytest.raises(RefusedError, match=r"a face narrower than about 1/20 of its longer side"):
        enroller.sample_from_rgb(far, "far.jpg")


def test_a_photo_upside_down_enrolls_as_the_person(enroller: Enroller) -> None:
    """A photo whose EXIF turn a messaging app dropped, upside down: the detector still found
    its face, and the chip, upside down, passed the gates and enrolled an embedding of no one
    (0.52 from his own photo). It is read the right way up; a photo on its side as before.
    scripts/dev/upside_down.py counts it over 65 photos."""
    from PIL import Image

    reference = enroller.sample(PHOTOS / "obama.jpg").vector
    threshold = OperatingPoint.from_card(enroller.encoder.card, 1e-3).threshold
    upright = np.asarray(Image.open(PHOTOS / "obama2.jpg").convert("RGB"))
    for turn in (2, 1, 3):
        image = np.ascontiguousarray(np.rot90(upright, turn))
        distance = float(np.linalg.norm(enroller.sample_from_rgb(image, "turned").vector - reference))
        assert distance < 0.8 * threshold, (turn * 90, distance)
