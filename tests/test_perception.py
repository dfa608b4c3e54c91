"""Detection, landmarks and alignment on real photos and awkward frames."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facegate import perception as perception_module
from facegate.demo import PHOTOS, scene
from facegate.detect import Detection, FaceDetector, ssd_anchors
from facegate.encoder import Encoder
from facegate.errors import InputError, ModelFileError
from facegate.images import load_rgb
from facegate.landmarks import ShapePredictor, to_grey
from facegate.perception import MODELS_DIR, TOO_BLURRED, Perception, frame_image, to_rgb
from tests.conftest import INT8_MODEL, shared_path

FULL = MODELS_DIR / "face_detection_full_range.tflite"


@pytest.fixture(scope="module")
def perception() -> Perception:
    return Perception()


@pytest.fixture(scope="module")
def obama() -> np.ndarray:
    return load_rgb(PHOTOS / "obama.jpg")


@pytest.mark.pi
def test_anchor_counts_match_the_models() -> None:
    assert len(ssd_anchors(128)) == 896
    assert len(ssd_anchors(192)) == 2304


def test_landmarks_match_dlib_given_dlibs_box() -> None:
    ref = shared_path("reference", "dlib-lfw-dev.npz")
    lfw = shared_path("datasets", "lfw-dev")
    predictor = ShapePredictor(MODELS_DIR / "dlib_landmarks5.npz")
    with np.load(ref) as data:
        paths, boxes, marks = data["paths"][:60], data["boxes"][:60], data["landmarks5"][:60]
    errors = [
        np.abs(np.rint(predictor.predict(to_grey(load_rgb(lfw / str(p))), tuple(b))) - m).max()
        for p, b, m in zip(paths, boxes, marks)
    ]
    print(f"landmarks identical to dlib's on {sum(e == 0 for e in errors)} of {len(errors)} faces")
    assert np.mean(np.array(errors) == 0) >= 0.9
    assert max(errors) <= 2


def test_group_photos(perception: Perception) -> None:
    scenes = shared_path("datasets", "unlabeled_scenes")
    full = FaceDetector(FULL)
    counts = {p.name: len(full.detect(load_rgb(p))) for p in sorted(scenes.iterdir())}
    print("faces found by full range:", counts)
    assert counts["facenet_pytorch_multiface.jpg"] == 6
    assert all(n >= 2 for n in counts.values())


@pytest.mark.pi
def test_bundled_photos_give_one_usable_face_each(perception: Perception) -> None:
    for photo in sorted(PHOTOS.glob("*.jpg")):
        faces = perception.faces(load_rgb(photo))
        assert len(faces) == 1, photo.name
        assert faces[0].rejected is None
        assert faces[0].chip.shape == (150, 150, 3)


def test_refinement_keeps_landmarks_on_faces_small_in_the_frame(perception: Perception) -> None:
    """A face 52-80 px wide in a 640x480 frame is 10-16 px in BlazeFace's input; its
    keypoints drift and so does the landmark box. Detected again on a crop around it, the
    landmarks stay where they are on the full-size photo (scaled), in eye-to-mouth units."""
    off = Perception(refine=False)
    errors: dict[bool, list[float]] = {False: [], True: []}
    for name in ("biden.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg"):
        big = max(perception.faces(load_rgb(PHOTOS / name)), key=lambda f: f.detection.width)
        left, top, right, bottom = big.detection.box
        for width in (52, 64, 80):
            for centre in ((320.0, 240.0), (120.0, 100.0), (520.0, 380.0)):
                frame = scene(PHOTOS / name, face_width=width, centre=centre, perception=perception)
                truth = (big.landmarks - [(left + right) / 2, (top + bottom) / 2]) * (
                    width / (right - left)
                ) + centre
                unit = np.linalg.norm((truth[0] + truth[1]) / 2 - truth[4])
                for p in (off, perception):
                    found = p.faces(frame, "RGB")
                    if found:
                        face = min(found, key=lambda f: float(np.abs(f.landmarks - truth).sum()))
                        errors[p.refine].append(
                            float(np.linalg.norm(face.landmarks - truth, axis=1).mean() / unit)
                        )
    off_err, on_err = np.array(errors[False]), np.array(errors[True])
    print(
        f"small faces: {len(on_err)} found; mean landmark error {off_err.mean():.3f} -> {on_err.mean():.3f}, "
        f"worst {off_err.max():.3f} -> {on_err.max():.3f}, "
        f"over 0.1: {(off_err > 0.1).sum()} -> {(on_err > 0.1).sum()}"
    )
    assert len(on_err) == len(off_err) >= 15
    assert on_err.max() < 0.1
    assert on_err.mean() < off_err.mean()


def test_refine_at_the_frame_edge_and_without_a_face(perception: Perception, obama: np.ndarray) -> None:
    detector = perception.detector
    half = np.ascontiguousarray(obama[:, obama.shape[1] // 3 :])  # the face runs off the left edge
    found = detector.detect(half)
    assert found
    for det in found:
        assert det.box[0] < 0.25 * det.width  # close to the edge: the crop runs past it
        again = detector.refine(half, det)  # the crop reaches past the frame: padded, not wrapped
        assert again.score == det.score
        assert abs(again.box[0] - det.box[0]) < 0.2 * det.width
    nothing = Detection((100.0, 100.0, 160.0, 160.0), 0.9, np.zeros((6, 2)))
    blank = np.full((480, 640, 3), 128, np.uint8)
    assert detector.refine(blank, nothing) is nothing  # no face on the crop: unchanged
    outside = Detection((-300.0, -300.0, -200.0, -200.0), 0.9, np.zeros((6, 2)))
    assert detector.refine(blank, outside) is outside


@pytest.mark.pi
def test_mirrored_and_rotated_faces_match_the_original(perception: Perception, obama: np.ndarray) -> None:
    encoder = Encoder(INT8_MODEL)
    threshold = encoder.card.thresholds["far_0.001"]["threshold"]
    original = encoder.embed(perception.faces(obama)[0].chip)[0]
    for name, frame in [
        ("mirrored", obama[:, ::-1].copy()),
        ("rotated 20 degrees", np.asarray(Image.fromarray(obama).rotate(20, expand=True))),
    ]:
        faces = perception.faces(frame)
        assert len(faces) == 1, name
        distance = float(np.linalg.norm(encoder.embed(faces[0].chip)[0] - original))
        assert distance < threshold, f"{name}: {distance}"


@pytest.mark.parametrize(
    "frame",
    [np.zeros((0, 0, 3), np.uint8), np.zeros((1, 1, 3), np.uint8), np.full((480, 640, 3), 128, np.uint8)],
)
def test_frames_without_faces(perception: Perception, frame: np.ndarray) -> None:
    assert perception.faces(frame) == []


def test_noise_has_no_face(perception: Perception) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert perception.faces(noise) == []


@pytest.mark.pi
def test_grey_and_four_channel_frames(perception: Perception, obama: np.ndarray) -> None:
    grey = to_grey(obama)
    assert len(perception.faces(grey)) == 1
    rgbx = np.concatenate([obama, np.full((*obama.shape[:2], 1), 255, np.uint8)], axis=2)
    # picamera2 XBGR8888 = R, G, B, X in memory.
    same = perception.faces(rgbx, layout="RGBX")[0]
    assert np.array_equal(same.chip, perception.faces(obama)[0].chip)
    bgrx = rgbx[:, :, [2, 1, 0, 3]].copy()
    assert np.array_equal(to_rgb(bgrx, "BGRX"), obama)


@pytest.mark.pi
def test_bad_frames_are_refused(perception: Perception) -> None:
    with pytest.raises(InputError, match="uint8"):
        perception.faces(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InputError, match="frame"):
        perception.faces(np.zeros((10, 10, 5), np.uint8))


@pytest.mark.pi
def test_blurred_face_is_refused_and_counted(obama: np.ndarray) -> None:
    p = Perception()
    blurred = np.asarray(Image.fromarray(obama).filter(ImageFilter.GaussianBlur(9)))
    faces = p.faces(blurred)
    assert faces and faces[0].rejected == TOO_BLURRED
    assert p.rejected[TOO_BLURRED] == 1


def test_small_faces_respect_min_size(obama: np.ndarray) -> None:
    small = np.asarray(Image.fromarray(obama).resize((obama.shape[1] // 8, obama.shape[0] // 8)))
    found = Perception(min_size=0).faces(small)
    assert len(found) == 1 and 30 < found[0].detection.width < 40  # the face is there, ~35 px wide
    assert Perception(min_size=40).faces(small) == []


def test_models_dir_is_shipped() -> None:
    for name in (
        "face_detection_short_range.tflite",
        "face_detection_full_range.tflite",
        "dlib_landmarks5.npz",
    ):
        assert (MODELS_DIR / name).is_file()
        assert pathlib.Path(MODELS_DIR / name).with_suffix(".json").is_file()


@pytest.mark.pi
@pytest.mark.parametrize("layout", ["RGB", "BGR", "RGBX", "BGRX"])
@pytest.mark.parametrize("bands", [3, 4])
@pytest.mark.parametrize("contiguous", [True, False])
def test_every_layout_gives_the_same_rgb(
    obama: np.ndarray, layout: str, bands: int, contiguous: bool
) -> None:
    """Pillow's unpackers on whole frames, numpy's strided copy on views of larger buffers
    (picamera2 can hand over rows with padding): the same pixels. The layout gives the
    colour order whatever the band count: a 4-band frame called "RGB" comes out as 3 bands
    (it used to be handed on with its fourth band), a 3-band one called "BGRX" as BGR."""
    order = [2, 1, 0] if layout.startswith("BGR") else [0, 1, 2]
    frame = obama[:, :, order]
    if bands == 4:
        frame = np.concatenate([frame, np.full((*obama.shape[:2], 1), 7, np.uint8)], axis=2)
    frame = np.ascontiguousarray(frame)
    if not contiguous:
        padded = np.zeros((frame.shape[0], frame.shape[1] + 16, frame.shape[2]), np.uint8)
        padded[:, : frame.shape[1]] = frame
        frame = padded[:, : frame.shape[1]]
        assert not frame.flags.c_contiguous
    assert np.array_equal(to_rgb(frame, layout), obama)


def test_only_faces_small_in_the_detector_input_are_refined(perception: Perception) -> None:
    """A face 300 px wide in a 640x480 frame is 60 px in the 128 px input: kept as detected, with
    the whole-frame box map. 110 px wide (22 px in the input) it is refined."""
    rgb = scene(PHOTOS / "obama2.jpg", face_width=300.0, centre=(320.0, 240.0), perception=perception)
    (det,) = perception.detect(rgb)
    assert det.width * perception.detector.size / max(rgb.shape[:2]) >= perception.refine_below
    assert perception.face(rgb, det).detection is det
    small = scene(PHOTOS / "obama2.jpg", perception=perception)
    (det,) = perception.detect(small)
    assert det.width * perception.detector.size / max(small.shape[:2]) < perception.refine_below
    refined = perception.face(small, det).detection
    assert refined is not det and refined.score == det.score
    assert perception.landmark_box(det, True) != perception.landmark_box(det, False)
    everything = Perception(refine_below=1e9)
    assert everything.face(rgb, everything.detect(rgb)[0]).detection != perception.detect(rgb)[0]


@pytest.mark.pi
def test_the_tree_walk_table_matches_walking_the_trees(perception: Perception) -> None:
    """The landmark cascade names a tree's leaf from its split bits packed into one integer
    (one table for all trees); walking each tree node by node gives the same leaf."""
    predictor = perception.predictor
    rng = np.random.default_rng(0)
    for code in rng.integers(0, 2**16, 2000):
        node = 0
        for _ in range(predictor.depth):
            node = 2 * node + 1 if (code >> node) & 1 else 2 * node + 2
        assert predictor._leaf_of_code[code] == node - predictor.splits


@pytest.mark.pi
def test_refinement_at_a_smaller_input_finds_the_same_face(perception: Perception) -> None:
    """The refinement runs BlazeFace at the input side the landmark card names (80 px): a
    coarser anchor grid, the same face and keypoints as at the model's own 128 px."""
    assert perception.detector.refine_size == 80
    refine_net = perception.detector._refine_net
    assert len(refine_net.anchors) == 10 * 10 * 2 + 5 * 5 * 6
    assert list(refine_net.interpreter.get_input_details()[0]["shape"]) == [1, 80, 80, 3]
    native = FaceDetector(MODELS_DIR / "face_detection_short_range.tflite")
    assert native.refine_size == native.size == 128
    for name in ("biden.jpg", "obama2.jpg"):
        for width in (52.0, 80.0, 110.0):
            frame = scene(PHOTOS / name, face_width=width, perception=perception)
            (det,) = native.detect(frame)
            small, full = perception.detector.refine(frame, det), native.refine(frame, det)
            assert small is not det and full is not det  # both found the face on the crop
            # ...each at its own side: another grid gives other numbers for the same face
            assert not np.array_equal(small.keypoints, full.keypoints), (name, width)
            eyes = np.linalg.norm(full.keypoints[0] - full.keypoints[1])
            assert np.abs(small.keypoints[:4] - full.keypoints[:4]).max() < 0.2 * eyes, (name, width)
            assert np.abs(np.subtract(small.box, full.box)).max() < 0.1 * full.width, (name, width)


def test_refinement_input_side_is_checked(tmp_path: pathlib.Path) -> None:
    short = MODELS_DIR / "face_detection_short_range.tflite"
    for bad in (24, 72, 0):
        with pytest.raises(InputError, match="multiple of 16"):
            FaceDetector(short, refine_size=bad)
    # The card's side applies to the detector it was fitted with; the full-range model and
    # a card from before it named one refine at the model's own side.
    assert Perception(detector=FULL).detector.refine_size == 192
    card = json.loads((MODELS_DIR / "dlib_landmarks5.json").read_text())
    marks = tmp_path / "dlib_landmarks5.npz"
    marks.symlink_to(MODELS_DIR / "dlib_landmarks5.npz")
    for value, expect in ((None, 128), (64, 64), ("80", ModelFileError)):
        refined = card["alignment"]["box_from_blazeface_refined"]
        refined.pop("input", None)
        if value is not None:
            refined["input"] = value
        marks.with_suffix(".json").write_text(json.dumps(card))
        if expect is ModelFileError:
            with pytest.raises(ModelFileError, match="not an integer"):
                Perception(landmarks=marks)
        else:
            assert Perception(landmarks=marks).detector.refine_size == expect


@pytest.mark.pi
def test_detection_from_a_camera_frame_as_it_comes(perception: Perception) -> None:
    """picamera2's XBGR8888 frame is detected from its own memory (no RGB copy), with the
    same detections as its RGB copy; every other layout too, and an empty frame finds none."""
    rgb = scene(PHOTOS / "obama2.jpg", perception=perception)
    expected = perception.detect(rgb)
    assert len(expected) == 1
    x = np.full((*rgb.shape[:2], 1), 255, np.uint8)
    frames = {
        "RGBX": np.concatenate([rgb, x], axis=2),
        "BGRX": np.concatenate([rgb[:, :, ::-1], x], axis=2),
        "BGR": np.ascontiguousarray(rgb[:, :, ::-1]),
        "RGB": rgb,
    }
    strided = np.zeros((480, 700, 4), np.uint8)[:, :640]  # rows padded, as a camera stride can be
    strided[:] = frames["RGBX"]
    for layout, frame in [*frames.items(), ("RGBX", strided)]:
        found = perception.detect_frame(frame, layout)
        assert len(found) == 1, layout
        assert found[0].box == expected[0].box and found[0].score == expected[0].score, layout
        assert np.array_equal(found[0].keypoints, expected[0].keypoints), layout
    # the XBGR8888 frame is read where it lies: the image the detector scales is the frame's memory
    mapped = frame_image(frames["RGBX"], "RGBX")
    frames["RGBX"][7, 5] = (1, 2, 3, 4)
    assert mapped.getpixel((5, 7))[:3] == (1, 2, 3)
    # a 4-band frame called "RGB" is in RGB order too (to_rgb's rule): mapped the same way
    called_rgb = frame_image(frames["RGBX"], "RGB")
    frames["RGBX"][9, 4] = (5, 6, 7, 8)
    assert called_rgb.mode == "RGBX" and called_rgb.getpixel((4, 9))[:3] == (5, 6, 7)
    copied = frame_image(frames["BGRX"], "BGRX")
    before = copied.getpixel((5, 7))
    frames["BGRX"][7, 5] = (9, 8, 7, 6)
    assert copied.getpixel((5, 7)) == before  # any other layout is converted: a copy
    assert perception.detect_frame(np.zeros((1, 640, 4), np.uint8)) == []
    with pytest.raises(InputError):
        perception.detect_frame(np.zeros((480, 640, 4), np.float32))
    with pytest.raises(InputError, match="mode"):
        perception.detector.detect_image(Image.new("L", (64, 64)))


@pytest.mark.pi
def test_a_head_on_its_side_is_landmarked_upright(
    perception: Perception, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``UPRIGHT_ABOVE_DEG`` of roll the cascade runs on an upright crop: a frame turned a
    quarter either way gives the upright frame's points, turned with it. From an upright start
    alone the cascade lands on the wrong features (the code before)."""
    rgb = scene(PHOTOS / "obama2.jpg", perception=perception)
    (upright,) = perception.faces(rgb, "RGB")
    h, w = rgb.shape[:2]
    x, y = upright.landmarks[:, 0], upright.landmarks[:, 1]
    quarter_turns = {1: np.stack([y, w - 1 - x], 1), 3: np.stack([h - 1 - y, x], 1)}  # np.rot90's k
    for k, expected in quarter_turns.items():
        turned = np.ascontiguousarray(np.rot90(rgb, k))
        (face,) = perception.faces(turned, "RGB")
        assert face.rejected is None
        assert np.abs(face.landmarks - expected).max() < 2.0, k
        monkeypatch.setattr(perception_module, "UPRIGHT_ABOVE_DEG", 180.0)
        (before,) = perception.faces(turned, "RGB")
        monkeypatch.undo()
        assert np.abs(before.landmarks - expected).max() > 10.0, k
