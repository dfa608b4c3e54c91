"""The daemon's YAML config: every key known, typed and checked at start-up.

An unknown key, a wrong type or a bad value is an error that names the key
and the file (``ConfigError``), before anything starts. Secrets may come from
the environment instead of the file: ``FACEGATE_MQTT_PASSWORD`` and
``FACEGATE_COMMAND_SECRET`` (or ``*_file`` keys that name a private file).
``facegate check-config FILE`` runs the same checks and prints the result.

See ``config.example.yaml`` beside this file (``facegate check-config --example``) for every
key; ``DEFAULTS`` below is the reference.
A relative path in a config file is taken from the folder the file is in (``PATH_KEYS``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import pathlib
import re
from collections.abc import Callable
from typing import Any

from facegate.errors import FacegateError
from facegate.modelcard import MODELS_DIR

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Topic prefixes: 1-8 levels of plain characters (no wildcards, no empty or odd levels).
TOPIC_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64}){0,7}")


class ConfigError(FacegateError):
    pass


@dataclasses.dataclass(frozen=True)
class Key:
    """A config key: its type, default and check (a predicate and what it wants)."""

    default: Any
    kind: type | tuple[type, ...]
    check: Callable[[Any], bool] | None = None
    wants: str = ""


def _matches(pattern: re.Pattern[str]) -> Callable[[Any], bool]:
    return lambda v: pattern.fullmatch(v) is not None  # whole: "door1\n" is not "door1"


def _positive(x: Any) -> bool:
    return x > 0


def _choice(*values: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in values), "one of " + ", ".join(values)


TOPIC_WANTS = "1-8 '/'-separated levels of letters, digits, '_', '.' or '-'"

SOURCES = ("picamera2", "video", "folder", "opencv")
_source_check, _source_wants = _choice(*SOURCES)
_format_check, _format_wants = _choice("XBGR8888", "XRGB8888", "RGB888", "BGR888")
_protocol_check, _protocol_wants = _choice("auto", "5", "3.1.1")
_detector_check, _detector_wants = _choice("short", "full")
_aggregate_check, _aggregate_wants = _choice("votes", "mean")
COMMANDS = (
    "verify",
    "list",
    "enroll",
    "remove",
    "reload",
    "review",
    "review_assign",
    "review_ignore",
    "review_delete",
    "correct",
)
REVIEW_COMMANDS = ("review", "review_assign", "review_ignore", "review_delete", "correct")
UNSIGNED_COMMANDS = ("verify",)  # the only command that may come without a signature
_signature_check, _signature_wants = _choice("ed25519", "hmac")


def key(
    default: Any, kind: type | tuple[type, ...], check: Callable[[Any], bool] | None = None, wants: str = ""
) -> Any:
    """A config field: its default, type and check (a predicate and what it wants)."""
    spec = Key(default, kind, check, wants)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"key": spec})
    return dataclasses.field(default=default, metadata={"key": spec})


_ID_WANTS = "1-64 letters, digits, '_' or '-'"
SECRET_KEYS = frozenset({"mqtt.password", "commands.secret", "web.token", "fleet.hmac_key"})
# Keys that name a file or folder. A relative one in a config file is taken from the folder that
# file is in, so the service (started in /) and `facegate doctor`, `review` or `fleet` run
# anywhere with the same config agree on where the gallery and the keys are. camera.path only for
# the video and folder sources, and not a URL (rtsp://, file://).
PATH_KEYS = frozenset(
    {
        "camera.path",
        "models.encoder",
        "gallery.path",
        "review.path",
        "web.token_file",
        "web.tls_cert",
        "web.tls_key",
        "mqtt.password_file",
        "mqtt.ca_file",
        "mqtt.cert_file",
        "mqtt.key_file",
        "mqtt.outbox",
        "commands.secret_file",
        "commands.nonce_file",
        "fleet.public_key_file",
        "fleet.private_key_file",
        "fleet.hmac_key_file",
    }
)

CONTROL_NAME = re.compile(r"[A-Z][A-Za-z0-9]{1,63}")  # libcamera's: AfMode, ExposureValue, ...


def _control_value(v: Any) -> bool:
    if isinstance(v, bool):
        return True
    if isinstance(v, (int, float)):
        return math.isfinite(v)
    return (
        isinstance(v, list)
        and 1 <= len(v) <= 8
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    )


def _controls_check(v: dict[Any, Any]) -> bool:
    return len(v) <= 32 and all(
        isinstance(name, str) and CONTROL_NAME.fullmatch(name) and _control_value(value)
        for name, value in v.items()
    )


_CONTROLS_WANTS = (
    "a mapping of libcamera control names (AfMode, ExposureValue, ...) to a number, "
    "true/false or a list of numbers (at most 32)"
)


@dataclasses.dataclass(frozen=True)
class DeviceConfig:
    id: str = key("facegate", str, _matches(ID_PATTERN), _ID_WANTS)
    name: str = key("facegate", str)


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    source: str = key("picamera2", str, _source_check, _source_wants)
    path: str | int | None = key(None, (str, int, type(None)))
    width: int = key(640, int, _positive, "> 0")
    height: int = key(480, int, _positive, "> 0")
    format: str = key("XBGR8888", str, _format_check, _format_wants)
    max_fps: float = key(10.0, (int, float), _positive, "> 0")
    loop: bool = key(False, bool)
    name: str = key("camera", str, _matches(ID_PATTERN), _ID_WANTS)
    # degrees to turn each frame clockwise before anything else: a camera mounted on its side
    # or upside down (faces on their side are recognised less well, upside down not at all)
    rotate: int = key(0, int, lambda v: v in (0, 90, 180, 270), "0, 90, 180 or 270")
    # take and detect the next frame in a second thread while a face is decided (facegate.lookahead);
    # "auto": where a core is left beside models.threads (BENCHMARKS.md, "From a person appearing")
    overlap: bool | str = key(
        "auto", (bool, str), lambda v: isinstance(v, bool) or v == "auto", "true, false or auto"
    )
    # picamera2 only: libcamera controls set when the camera starts (autofocus, exposure for a
    # backlit door, ...); the camera refuses names it does not have (docs/RASPBERRY_PI.md)
    controls: dict[str, Any] = key({}, dict, _controls_check, _CONTROLS_WANTS)


@dataclasses.dataclass(frozen=True)
class ModelsConfig:
    encoder: str = key(str(MODELS_DIR / "dlib_resnet_v1_int8.tflite"), str)
    detector: str = key("short", str, _detector_check, _detector_wants)
    refine: bool = key(True, bool)
    refine_below: float = key(48.0, (int, float), lambda v: v >= 0, ">= 0")
    threads: int = key(2, int, _positive, "> 0")


@dataclasses.dataclass(frozen=True)
class GalleryConfig:
    path: str = key("/var/lib/facegate/gallery.db", str)


@dataclasses.dataclass(frozen=True)
class DecisionConfig:
    far: float = key(1e-3, float, lambda v: 0 < v < 1, "a false accept rate between 0 and 1, e.g. 1.0e-3")
    votes_to_decide: int = key(3, int, _positive, "> 0")
    window: int = key(5, int, _positive, "> 0")
    min_iou: float = key(0.3, (int, float), lambda v: 0 < v <= 1, "in (0, 1]")
    max_missing: int = key(10, int, lambda v: v >= 0, ">= 0")
    verify_timeout_s: float = key(10.0, (int, float), _positive, "> 0")
    recheck_s: float = key(2.0, (int, float), lambda v: v >= 0, ">= 0")
    decide_at_camera_rate: bool = key(True, bool)
    # "mean": a track is decided from the mean embedding of its first votes_to_decide usable faces,
    # at the card's track threshold (facegate.track; BENCHMARKS.md "Deciding a track")
    aggregate: str = key("votes", str, _aggregate_check, _aggregate_wants)


@dataclasses.dataclass(frozen=True)
class GatesConfig:
    min_eye_distance: float = key(16.0, (int, float), lambda v: v >= 0, ">= 0")
    max_yaw: float = key(0.45, (int, float), _positive, "> 0")
    min_sharpness: float = key(3.0, (int, float), lambda v: v >= 0, ">= 0")
    min_face: float = key(20.0, (int, float), lambda v: v >= 0, ">= 0")
    min_score: float = key(0.5, (int, float), lambda v: 0 < v < 1, "in (0, 1)")


@dataclasses.dataclass(frozen=True)
class IdleConfig:
    motion_threshold: float = key(2.0, (int, float), lambda v: v >= 0, ">= 0 (mean grey change; 0 = off)")
    check_every: int = key(10, int, _positive, "> 0")


@dataclasses.dataclass(frozen=True)
class ReviewConfig:
    """Opt-in: the unknown-face queue and the recent decisions that corrections need
    (``facegate.review``)."""

    enabled: bool = key(False, bool)
    path: str | None = key(None, (str, type(None)))
    crops: bool = key(True, bool)
    max_faces: int = key(500, int, lambda v: 1 <= v <= 100_000, "1 to 100000")
    max_age_days: float = key(7.0, (int, float), _positive, "> 0")
    events_keep_hours: float = key(24.0, (int, float), _positive, "> 0")


@dataclasses.dataclass(frozen=True)
class WebConfig:
    """Opt-in: the local review page (``facegate.web``)."""

    enabled: bool = key(False, bool)
    host: str = key("127.0.0.1", str)
    port: int = key(8080, int, lambda v: 0 <= v < 65536, "a TCP port (0: any free one, as the log says)")
    token: str | None = key(None, (str, type(None)))
    token_file: str | None = key(None, (str, type(None)))
    tls_cert: str | None = key(None, (str, type(None)))
    tls_key: str | None = key(None, (str, type(None)))
    session_hours: float = key(12.0, (int, float), lambda v: 0 < v <= 720, "hours in (0, 720]")
    url: str | None = key(
        None,
        (str, type(None)),
        _matches(re.compile(r"https?://[A-Za-z0-9.\[\]:_-]{1,253}(/[A-Za-z0-9._~/-]*)?")),
        "an http:// or https:// address, e.g. https://door.local:8080/",
    )


@dataclasses.dataclass(frozen=True)
class MqttConfig:
    host: str = key("localhost", str)
    port: int = key(1883, int, lambda v: 0 < v < 65536, "a TCP port")
    prefix: str = key("facegate", str, _matches(TOPIC_PATTERN), TOPIC_WANTS)
    protocol: str = key("auto", str, _protocol_check, _protocol_wants)
    client_id: str | None = key(None, (str, type(None)))
    username: str | None = key(None, (str, type(None)))
    password: str | None = key(None, (str, type(None)))
    password_file: str | None = key(None, (str, type(None)))
    keepalive: int = key(30, int, lambda v: v >= 5, ">= 5")
    tls: bool = key(False, bool)
    ca_file: str | None = key(None, (str, type(None)))
    cert_file: str | None = key(None, (str, type(None)))
    key_file: str | None = key(None, (str, type(None)))
    tls_insecure: bool = key(False, bool)
    outbox: str = key("/var/lib/facegate/outbox", str)
    outbox_max: int = key(10000, int, _positive, "> 0")
    max_payload: int = key(
        1 << 20, int, lambda v: 4096 <= v <= 16 << 20, "a size in bytes from 4096 to 16777216"
    )


@dataclasses.dataclass(frozen=True)
class CommandsConfig:
    enabled: list[str] = key(
        ["verify"], list, lambda v: all(c in COMMANDS for c in v), "a list from " + ", ".join(COMMANDS)
    )
    secret: str | None = key(None, (str, type(None)))
    secret_file: str | None = key(None, (str, type(None)))
    max_skew_s: float = key(60.0, (int, float), lambda v: 0 < v <= 3600, "seconds in (0, 3600]")
    nonce_file: str | None = key(None, (str, type(None)))
    rate_per_minute: int = key(30, int, lambda v: 1 <= v <= 6000, "1 to 6000")
    max_pending: int = key(4, int, lambda v: 1 <= v <= 64, "1 to 64")


@dataclasses.dataclass(frozen=True)
class HomeAssistantConfig:
    discovery: bool = key(True, bool)
    prefix: str = key("homeassistant", str, _matches(TOPIC_PATTERN), TOPIC_WANTS)
    person_entities: bool = key(False, bool)
    unknown_face_image: bool = key(False, bool)


@dataclasses.dataclass(frozen=True)
class FleetConfig:
    enabled: bool = key(False, bool)
    prefix: str = key("facegate/fleet/default", str, _matches(TOPIC_PATTERN), TOPIC_WANTS)
    signature: str = key("ed25519", str, _signature_check, _signature_wants)
    public_key_file: str | None = key(None, (str, type(None)))
    private_key_file: str | None = key(None, (str, type(None)))
    hmac_key: str | None = key(None, (str, type(None)))
    hmac_key_file: str | None = key(None, (str, type(None)))
    tombstone_days: float = key(7.0, (int, float), _positive, "> 0")


SECTIONS: dict[str, type] = {
    "device": DeviceConfig,
    "camera": CameraConfig,
    "models": ModelsConfig,
    "gallery": GalleryConfig,
    "decision": DecisionConfig,
    "gates": GatesConfig,
    "idle": IdleConfig,
    "review": ReviewConfig,
    "web": WebConfig,
    "mqtt": MqttConfig,
    "commands": CommandsConfig,
    "homeassistant": HomeAssistantConfig,
    "fleet": FleetConfig,
}
# Each key's type, default and check, from the dataclasses above (one place for both).
SCHEMA: dict[str, dict[str, Key]] = {
    name: {f.name: f.metadata["key"] for f in dataclasses.fields(cls)} for name, cls in SECTIONS.items()
}


DEFAULTS = {
    section: {k: copy.deepcopy(v.default) for k, v in keys.items()} for section, keys in SCHEMA.items()
}
SIGNED_COMMANDS = tuple(c for c in COMMANDS if c not in UNSIGNED_COMMANDS)


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole config, typed: ``config.mqtt.port``, checked by mypy."""

    device: DeviceConfig = dataclasses.field(default_factory=DeviceConfig)
    camera: CameraConfig = dataclasses.field(default_factory=CameraConfig)
    models: ModelsConfig = dataclasses.field(default_factory=ModelsConfig)
    gallery: GalleryConfig = dataclasses.field(default_factory=GalleryConfig)
    decision: DecisionConfig = dataclasses.field(default_factory=DecisionConfig)
    gates: GatesConfig = dataclasses.field(default_factory=GatesConfig)
    idle: IdleConfig = dataclasses.field(default_factory=IdleConfig)
    review: ReviewConfig = dataclasses.field(default_factory=ReviewConfig)
    web: WebConfig = dataclasses.field(default_factory=WebConfig)
    mqtt: MqttConfig = dataclasses.field(default_factory=MqttConfig)
    commands: CommandsConfig = dataclasses.field(default_factory=CommandsConfig)
    homeassistant: HomeAssistantConfig = dataclasses.field(default_factory=HomeAssistantConfig)
    fleet: FleetConfig = dataclasses.field(default_factory=FleetConfig)
    path: pathlib.Path | None = None

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    @property
    def mqtt_password(self) -> str | None:
        return self._secret("mqtt", "password", "FACEGATE_MQTT_PASSWORD")

    @property
    def fleet_hmac_key(self) -> bytes | None:
        key = self._secret("fleet", "hmac_key", "FACEGATE_FLEET_HMAC_KEY")
        return key.encode() if key else None

    @property
    def warnings(self) -> list[str]:
        """Settings that are valid but unsafe: ``check-config``, ``doctor`` and the daemon's
        log at every start say each one."""
        out = []
        if self.mqtt.tls and self.mqtt.tls_insecure:
            out.append(
                "mqtt.tls_insecure: true: the broker's host name is NOT checked against its certificate, "
                "so any server holding a certificate from that CA can pose as the broker, read every "
                "event and send commands"
            )
        if self.web.enabled and not self.web.tls_cert and self.web.host not in LOOPBACK:
            out.append(
                f"web.host {self.web.host} without web.tls_cert: the page's token and the faces it "
                "shows cross the network in plain text; give it a certificate, or keep it on 127.0.0.1 "
                "and reach it through an SSH tunnel"
            )
        return out

    @property
    def web_token(self) -> str | None:
        return self._secret("web", "token", "FACEGATE_WEB_TOKEN")

    @property
    def nonce_file(self) -> pathlib.Path:
        """Where the nonces of signed commands are kept: ``commands.nonce_file``, else beside
        the gallery."""
        given = self.commands.nonce_file
        gallery = pathlib.Path(self.gallery.path)
        return pathlib.Path(given) if given else gallery.with_name(gallery.name + ".commands.json")

    @property
    def review_path(self) -> pathlib.Path:
        """The review file: ``review.path``, else beside the gallery (``gallery.db.review``)."""
        gallery = pathlib.Path(self.gallery.path)
        return (
            pathlib.Path(self.review.path)
            if self.review.path
            else gallery.with_name(gallery.name + ".review")
        )

    @property
    def command_secret(self) -> bytes | None:
        secret = self._secret("commands", "secret", "FACEGATE_COMMAND_SECRET")
        return secret.encode() if secret else None

    def _secret(self, section: str, key: str, env: str) -> str | None:
        if os.environ.get(env):
            return os.environ[env]
        values = getattr(self, section)
        if getattr(values, key):
            return str(getattr(values, key))
        path = getattr(values, f"{key}_file")
        if path:
            try:
                return pathlib.Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{section}.{key}_file: cannot read {path}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ConfigError(f"{section}.{key}_file: {path} is not UTF-8 text") from None
        return None


def _where(path: pathlib.Path | None, key: str) -> str:
    return f"{path}: {key}" if path else key


def validate(raw: Any, path: pathlib.Path | None = None) -> Config:
    """Check ``raw`` (parsed YAML) against ``SCHEMA`` and fill in the defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: the top level must be a mapping of sections")
    data = copy.deepcopy(DEFAULTS)
    for section, values in raw.items():
        if section not in SCHEMA:
            known = ", ".join(SCHEMA)
            raise ConfigError(f"{_where(path, str(section))}: unknown section (known: {known})")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{_where(path, section)}: must be a mapping of keys")
        for key, value in values.items():
            name = f"{section}.{key}"
            spec = SCHEMA[section].get(key)
            if spec is None:
                known = ", ".join(SCHEMA[section])
                raise ConfigError(f"{_where(path, name)}: unknown key (known in {section}: {known})")
            kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
            if float in kinds and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # YAML's 1 where 1.0 is meant
            if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
                wanted = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
                if name in SECRET_KEYS:  # never in a log: `password: 12345678` is YAML's number
                    hint = "; put it in quotes" if isinstance(value, (int, float)) else ""
                    got = f"{type(value).__name__} (not shown: a secret{hint})"
                    raise ConfigError(f"{_where(path, name)}: expected {wanted}, got {got}")
                raise ConfigError(f"{_where(path, name)}: expected {wanted}, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{_where(path, name)}: must be a finite number, got {value!r}")
            if spec.check is not None and value is not None and not spec.check(value):
                shown = "the value (not shown: a secret)" if name in SECRET_KEYS else repr(value)
                raise ConfigError(f"{_where(path, name)}: {shown} is not {spec.wants}")
            data[section][key] = value
    if path is not None:
        _from_the_config_folder(data, pathlib.Path(os.path.abspath(path)).parent)
    config = Config(**{name: SECTIONS[name](**values) for name, values in data.items()}, path=path)
    _cross_checks(config)
    return config


def _from_the_config_folder(data: dict[str, dict[str, Any]], folder: pathlib.Path) -> None:
    """Relative ``PATH_KEYS`` in a config file: from ``folder`` (the file's), not from wherever
    the process happens to start."""
    for name in PATH_KEYS:
        section, key = name.split(".")
        value = data[section][key]
        if not isinstance(value, str) or not value or os.path.isabs(value) or "://" in value:
            continue
        if name == "camera.path" and data["camera"]["source"] not in ("video", "folder"):
            continue  # opencv: a camera index or a device's name
        data[section][key] = str(folder / value)


def _cross_checks(config: Config) -> None:
    c, path = config, config.path
    if c.decision.votes_to_decide > c.decision.window:
        raise ConfigError(f"{_where(path, 'decision.votes_to_decide')}: must not exceed decision.window")
    if c.camera.source in ("video", "folder") and not c.camera.path:
        raise ConfigError(f"{_where(path, 'camera.path')}: the {c.camera.source} source needs a path")
    if c.camera.controls and c.camera.source != "picamera2":
        raise ConfigError(
            f"{_where(path, 'camera.controls')}: only the picamera2 source takes camera controls"
        )
    if c.mqtt.tls_insecure and not c.mqtt.tls:
        raise ConfigError(f"{_where(path, 'mqtt.tls_insecure')}: only makes sense with mqtt.tls: true")
    if bool(c.mqtt.cert_file) != bool(c.mqtt.key_file):
        raise ConfigError(
            f"{_where(path, 'mqtt.cert_file')}: a client certificate needs both cert_file and key_file"
        )
    wanted = [x for x in c.commands.enabled if x in SIGNED_COMMANDS]
    if wanted and config.command_secret is None:
        raise ConfigError(
            f"{_where(path, 'commands.enabled')}: {', '.join(wanted)} must be signed (they change state, "
            "or tell who is enrolled) and need commands.secret, commands.secret_file or "
            "$FACEGATE_COMMAND_SECRET"
        )
    if c.web.enabled:
        token = config.web_token
        if token is None or len(token) < 16:
            raise ConfigError(
                f"{_where(path, 'web.token')}: the page needs a token of at least 16 characters "
                "(web.token, web.token_file or $FACEGATE_WEB_TOKEN)"
            )
        if bool(c.web.tls_cert) != bool(c.web.tls_key):
            raise ConfigError(f"{_where(path, 'web.tls_cert')}: TLS needs both web.tls_cert and web.tls_key")
    if c.homeassistant.unknown_face_image and not c.review.enabled:
        raise ConfigError(
            f"{_where(path, 'homeassistant.unknown_face_image')}: needs review.enabled: true "
            "(the image is the best face of the unknown track, which only review keeps)"
        )
    review = [x for x in c.commands.enabled if x in REVIEW_COMMANDS]
    if review and not c.review.enabled:
        raise ConfigError(
            f"{_where(path, 'commands.enabled')}: {', '.join(review)} need review.enabled: true "
            "(the unknown faces and recent decisions they act on are kept only then)"
        )
    if config.command_secret is not None and len(config.command_secret) < 16:
        raise ConfigError(f"{_where(path, 'commands.secret')}: use at least 16 characters")
    if c.fleet.enabled:
        _fleet_checks(config)


LOOPBACK = ("localhost", "127.0.0.1", "::1")
EXAMPLE = pathlib.Path(__file__).with_name("config.example.yaml")  # every key, commented; in the wheel


def _fleet_checks(config: Config) -> None:
    c, path = config, config.path
    if not c.mqtt.tls and c.mqtt.host not in LOOPBACK:
        raise ConfigError(
            f"{_where(path, 'fleet.enabled')}: fleet topics carry biometric templates and need "
            "mqtt.tls: true (plaintext only to a broker on this machine)"
        )
    f = c.fleet
    if f.signature == "ed25519" and not (f.public_key_file or f.private_key_file):
        raise ConfigError(
            f"{_where(path, 'fleet.public_key_file')}: fleet.signature ed25519 needs the fleet's public "
            "key (devices) or private key (the authority); `facegate fleet keygen` makes a pair"
        )
    if f.signature == "hmac":
        key = config.fleet_hmac_key
        if key is None:
            raise ConfigError(
                f"{_where(path, 'fleet.hmac_key')}: fleet.signature hmac needs fleet.hmac_key, "
                "fleet.hmac_key_file or $FACEGATE_FLEET_HMAC_KEY"
            )
        if len(key) < 16:
            raise ConfigError(f"{_where(path, 'fleet.hmac_key')}: use at least 16 characters")


def load_config(path: str | os.PathLike[str]) -> Config:
    import yaml

    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError as exc:
        # the installed config is 0640 root:facegate: it holds the broker's password
        raise ConfigError(
            f"{path}: cannot read config: {exc.strerror}; run as the service's user "
            f"(`sudo -u facegate facegate ...`) or as root"
        ) from None
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file; `facegate check-config --example > {path.name}` writes one "
            "with every key and its default, to edit (`facegate demo` runs without one)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text config (byte {exc.start} is not UTF-8); is this the right file?"
        ) from None
    if not text.strip() or all(line.lstrip().startswith("#") for line in text.splitlines() if line.strip()):
        raise ConfigError(
            f"{path}: the config is empty; start from `facegate check-config --example` (every key, "
            "with its default)"
        )
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = str(exc).replace('"<unicode string>"', str(path))  # PyYAML does not know the file
        raise ConfigError(f"{path}: not valid YAML: {where}") from None
    return validate(raw, path)
