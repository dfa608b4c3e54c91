"""A stand-in for picamera2 that honours the part of its API facegate uses.

``Picamera2.global_camera_info()`` (the cameras in ``Picamera2.attached``), ``Picamera2()``,
``camera_controls``, ``create_preview_configuration(main={"size",
"format"}, controls={...})``, ``configure``, ``start``, ``capture_array("main")``,
``stop``, ``close``. The controls are a Camera Module 3's (with autofocus), as
(min, max, default); ``configure`` refuses one the camera does not advertise, as
picamera2 does.
Frames come from ``Picamera2.script`` (RGB arrays set by the test), resized
to the configured size and laid out in memory as the format says (XBGR8888
is R, G, B, X; XRGB8888 is B, G, R, X; RGB888 is B, G, R; BGR888 is R, G, B).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

_LAYOUT = {"XBGR8888": (0, 1, 2, None), "XRGB8888": (2, 1, 0, None), "RGB888": (2, 1, 0), "BGR888": (0, 1, 2)}


# A subset of what picamera2 0.3 lists for a Camera Module 3 (imx708) in camera_controls.
_CONTROLS: dict[str, tuple[Any, Any, Any]] = {
    "AeEnable": (False, True, None),
    "AeExposureMode": (0, 3, 0),
    "AeMeteringMode": (0, 3, 0),
    "AfMode": (0, 2, 0),
    "AnalogueGain": (1.1228070259094238, 16.0, None),
    "Brightness": (-1.0, 1.0, 0.0),
    "ExposureTime": (26, 220417486, None),
    "ExposureValue": (-8.0, 8.0, 0.0),
    "FrameDurationLimits": (33333, 120000, None),
    "LensPosition": (0.0, 15.0, 1.0),
    "ScalerCrop": ((0, 0, 64, 64), (0, 0, 4608, 2592), (0, 0, 4608, 2592)),
}


class Picamera2:
    script: ClassVar[list[np.ndarray]] = []
    instances: ClassVar[list[Picamera2]] = []
    # Captures numbered across instances; those in [start, stop) fail, as a camera that drops out.
    fail_between: ClassVar[tuple[int, int]] = (0, 0)
    captures: ClassVar[int] = 0
    # What libcamera reports for a Camera Module 3 on a Pi 5's first camera port.
    attached: ClassVar[list[dict[str, Any]]] = [
        {
            "Model": "imx708",
            "Location": 2,
            "Rotation": 180,
            "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a",
            "Num": 0,
        }
    ]

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [dict(c) for c in Picamera2.attached]

    def __init__(self, camera_num: int = 0) -> None:
        self.config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.captured = 0
        self.camera_controls = dict(_CONTROLS)
        Picamera2.instances.append(self)

    def create_preview_configuration(
        self, main: dict[str, Any] | None = None, controls: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        main = {"size": (640, 480), "format": "XBGR8888", **(main or {})}
        if main["format"] not in _LAYOUT:
            raise ValueError(f"fake picamera2: unsupported format {main['format']}")
        # picamera2's preview default, with the caller's controls over it
        return {"main": main, "controls": {"FrameDurationLimits": (100, 83333), **(controls or {})}, **kwargs}

    def configure(self, config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        for name in config.get("controls", {}):
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
        self.config = config

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera is not running")
        if not Picamera2.script:
            raise RuntimeError("fake picamera2: no frames scripted")
        Picamera2.captures += 1
        start, stop = Picamera2.fail_between
        if start <= Picamera2.captures - 1 < stop:
            raise RuntimeError("Camera frontend has timed out!")
        assert self.config is not None
        rgb = Picamera2.script[self.captured % len(Picamera2.script)]
        self.captured += 1
        width, height = self.config[name]["size"]
        assert rgb.shape[:2] == (height, width), "script frames must match the configured size"
        order = _LAYOUT[self.config[name]["format"]]
        channels = [rgb[:, :, c] if c is not None else np.full(rgb.shape[:2], 255, np.uint8) for c in order]
        return np.ascontiguousarray(np.stack(channels, axis=2))

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True
