"""Device configuration: TOML under config/, validated on load with errors that name the key.

Each table is a dataclass; a field's metadata may carry ``min``/``max``/``choices``. Unknown tables
and keys are errors too, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _opt(default: Any, *, min: float | None = None, max: float | None = None,  # noqa: A002
         choices: tuple[Any, ...] | None = None, help: str = "") -> Any:  # noqa: A002
    meta = {"min": min, "max": max, "choices": choices, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DeviceConfig:
    """Who this camera is and where its evidence lives."""

    serial: str = _opt("BC-SIM-0001", help="device serial: in every manifest, the certificate and the "
                        "hostname; letters, digits, '-', '_'")
    officer_id: str = _opt("unassigned", help="officer wearing the camera: burned into the video, in manifests")
    data_dir: str = _opt("/var/lib/bodycam", help="evidence, keys and state live here (relative: from the "
                         "config file's folder)")
    key_file: str = _opt("", help="the device key; empty: DATA_DIR/device/key.pem")


@dataclass(frozen=True)
class CameraConfig:
    """Where frames come from and at what size and rate."""

    source: str = _opt("synthetic", choices=("synthetic", "file", "webcam", "picamera2"),
                       help="picamera2 on a Pi; synthetic (generated test pattern), file or webcam elsewhere")
    width: int = _opt(1280, min=64, max=4096, help="recorded width in pixels (even)")
    height: int = _opt(720, min=64, max=4096, help="recorded height in pixels (even)")
    fps: float = _opt(30.0, min=1, max=120, help="frames per second")
    seed: int = _opt(1, min=0, help="synthetic source: pattern seed (same seed, same pictures)")
    file: str = _opt("", help="video file for source = 'file'")
    loop: bool = _opt(True, help="file source: start again at the end instead of stopping")
    device: str = _opt("/dev/video0", help="webcam device path or index")
    tuning_file: str = _opt("", help="picamera2: libcamera tuning file, e.g. imx708_wide.json")
    sensor_mode: str = _opt("full-fov", help="picamera2: 'full-fov' (widest view that reaches fps), 'auto' "
                            "(picamera2's choice, may crop), or a sensor mode size like '2304x1296'")
    capture_retries: int = _opt(3, min=1, max=20, help="picamera2: capture timeouts in a row (camera "
                                "restarted after each) before the camera is reported as faulty")

    @property
    def sensor_mode_size(self) -> tuple[int, int] | None:
        """The explicit sensor mode size, or None for 'full-fov' and 'auto'."""
        return parse_sensor_mode(self.sensor_mode)


@dataclass(frozen=True)
class WatermarkConfig:
    """The text burned into every frame: UTC time, serial, officer."""

    enabled: bool = _opt(True, help="burn UTC time (ms) into every frame")
    show_serial: bool = _opt(True, help="also the device serial")
    show_officer: bool = _opt(True, help="also the officer id")
    position: str = _opt("bottom-left", choices=("top-left", "top-right", "bottom-left", "bottom-right"),
                         help="corner of the frame")
    scale: float = _opt(1.0, min=0.25, max=4.0, help="text size, relative to the default")


PREBUFFER_MARGIN = 1.5  # x264's VBV lets a second run up to ~2x the bitrate; scenes average far less


def prebuffer_bytes_needed(seconds: float, encoder: EncoderConfig) -> int:
    """RAM for ``seconds`` of pre-roll (plus the GOP it must start on) at the encoder's bitrate, with margin."""
    if seconds <= 0:
        return 1_000_000
    return int(encoder.bitrate_kbps * 1000 / 8 * (seconds + encoder.gop_seconds) * PREBUFFER_MARGIN)


@dataclass(frozen=True)
class EncoderConfig:
    """H.264 encoding."""

    codec: str = _opt("auto", choices=("auto", "libx264", "h264_v4l2m2m"),
                      help="auto: the Pi 4's hardware encoder if present, else libx264 (Pi 5, PC)")
    bitrate_kbps: int = _opt(6000, min=100, max=50000, help="target bitrate; also sizes the pre-event buffer")
    gop_seconds: float = _opt(1.0, min=0.1, max=10, help="keyframe interval; pre-roll and segments start "
                              "on keyframes")
    preset: str = _opt("ultrafast", choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"),
                       help="libx264 speed preset: slower is smaller, needs more CPU")
    threads: int = _opt(0, min=0, max=16, help="0 lets the encoder choose")


@dataclass(frozen=True)
class BufferConfig:
    """The pre-event buffer: video kept in RAM before the record button."""

    pre_event_seconds: float = _opt(30.0, min=0, max=120, help="a recording starts at least this long "
                                    "before the trigger (whole GOPs)")
    max_megabytes: float = _opt(0.0, min=0, max=1024,
                                help="RAM cap of the pre-event buffer; 0 = sized from bitrate x (seconds + one GOP)"
                                     f" x {PREBUFFER_MARGIN:g}")

    def cap_bytes(self, encoder: EncoderConfig) -> int:
        """The byte cap in force: the configured one, or (0) one that holds the seconds with margin."""
        if self.max_megabytes:
            return int(self.max_megabytes * 1_000_000)
        return prebuffer_bytes_needed(self.pre_event_seconds, encoder)


@dataclass(frozen=True)
class AudioConfig:
    """Sound: the microphone, its encoding, and whether the pre-event buffer keeps it."""

    source: str = _opt("synthetic", choices=("synthetic", "file", "alsa", "none"),
                       help="alsa (USB or I2S microphone) on a Pi; synthetic (tone with a click at every "
                            "video flash), file (the [camera] file's sound) elsewhere; none: video only")
    device: str = _opt("default", help="alsa: ALSA capture device, e.g. 'default', 'hw:1,0' or "
                       "'plughw:CARD=Device' (list them with 'arecord -L')")
    sample_rate: int = _opt(48000, choices=(8000, 16000, 24000, 32000, 44100, 48000),
                            help="samples per second recorded (the microphone is resampled to it)")
    channels: int = _opt(1, min=1, max=2, help="1 = mono (one body-worn microphone), 2 = stereo")
    codec: str = _opt("aac", choices=("aac", "opus"), help="aac (AAC-LC, FFmpeg's native encoder; plays "
                      "everywhere) or opus")
    bitrate_kbps: int = _opt(64, min=16, max=320, help="audio bitrate")
    pre_event_audio: bool = _opt(False, help="false: the pre-event seconds are video only and sound starts "
                                 "at the button press (as many forces require); true: they carry sound too")
    chunk_ms: int = _opt(20, min=5, max=100, help="microphone read size; shorter = less latency, more wakeups")
    drift_ppm: float = _opt(0.0, min=-1000, max=1000,
                            help="synthetic: how fast the simulated microphone's clock runs against the "
                                 "system clock (ppm), to exercise drift correction")

    @property
    def enabled(self) -> bool:
        return self.source != "none"


@dataclass(frozen=True)
class RecordingConfig:
    """How recordings are cut into segments and fragments."""

    segment_seconds: float = _opt(10.0, min=1, max=600, help="length of each signed segment file")
    fragment_seconds: float = _opt(0.5, min=0.1, max=1.0, help="fragments are fsynced at least this often")
    max_recording_seconds: float = _opt(4 * 3600.0, min=10, max=24 * 3600,
                                        help="a longer recording rolls into a new one at a keyframe")


@dataclass(frozen=True)
class StorageConfig:
    """Free space on the evidence card."""

    reserve_megabytes: float = _opt(256.0, min=0, max=1_000_000, help="new footage stops before free space "
                                    "falls below this; evidence is never deleted to make room")


@dataclass(frozen=True)
class ButtonsConfig:
    """The record and function buttons and the dock-sense input (BCM pin numbers) and their gestures."""

    record_pin: int = _opt(17, min=0, max=27, help="BCM number; button to ground, internal pull-up")
    function_pin: int = _opt(27, min=0, max=27, help="BCM number; button to ground, internal pull-up")
    dock_pin: int = _opt(22, min=0, max=27, help="BCM number of the dock-sense input; high = docked")
    debounce_ms: int = _opt(20, min=0, max=200, help="edges this close to the last accepted one are bounce")
    double_press_seconds: float = _opt(0.6, min=0.1, max=2.0, help="most time between a double's presses")
    hold_stop_seconds: float = _opt(3.0, min=0.1, max=10.0, help="record-button hold that stops recording")
    stop_confirmation: bool = _opt(False, help="a stop hold must be confirmed by a second press")
    stop_confirmation_seconds: float = _opt(5.0, min=1.0, max=30.0, help="time allowed for that second press")
    stealth_hold_seconds: float = _opt(3.0, min=0.1, max=10.0, help="function-button hold toggles stealth")


@dataclass(frozen=True)
class IndicatorsConfig:
    """LEDs, buzzer and vibration motor (BCM pin numbers)."""

    green_led_pin: int = _opt(5, min=0, max=27, help="BCM number; green LED: blinks buffering, solid docked")
    red_led_pin: int = _opt(6, min=0, max=27, help="BCM number; red LED: blinks recording, solid booting or fault")
    buzzer_pin: int = _opt(13, min=0, max=27, help="BCM number; active buzzer")
    vibration_pin: int = _opt(19, min=0, max=27, help="BCM number; vibration motor driver")
    record_reminder_seconds: float = _opt(120.0, min=0, max=3600,
                                          help="two beeps this often while recording, 0 = off")
    beeps: bool = _opt(True, help="sound the buzzer (start, stop, marker, reminders, warnings)")
    vibration: bool = _opt(True, help="vibrate on start, stop and faults")


@dataclass(frozen=True)
class OffloadConfig:
    """Upload to the evidence backend while docked (docs/backend-api.md); empty backend_url = off."""

    backend_url: str = _opt("", help="e.g. https://evidence.example.org; empty: the dock only charges")
    keep_local: bool = _opt(False, help="keep segments after a verified receipt instead of freeing them")
    set_clock: bool = _opt(False, help="step the system clock to the backend's (needs root/CAP_SYS_TIME)")
    chunk_bytes: int = _opt(8 << 20, min=1024, max=64 << 20,
                            help="bytes per tus request (a 10 s segment is ~7.5 MB); undock stops between")
    max_backoff_seconds: float = _opt(60.0, min=0.1, max=3600, help="cap of the exponential retry delay")
    timeout_seconds: float = _opt(30.0, min=1, max=600, help="per HTTP request")
    enrol_token: str = _opt("", help="one-time enrolment token for 'bodycam enrol' (first boot)")
    verify_tls: bool = _opt(True, help="check the backend's TLS certificate (https)")
    ca_file: str = _opt("", help="CA bundle for the backend's TLS certificate; empty: the system's")


@dataclass(frozen=True)
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    watermark: WatermarkConfig = field(default_factory=WatermarkConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    buttons: ButtonsConfig = field(default_factory=ButtonsConfig)
    indicators: IndicatorsConfig = field(default_factory=IndicatorsConfig)
    offload: OffloadConfig = field(default_factory=OffloadConfig)
    source_path: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.device.data_dir)

    @property
    def key_path(self) -> Path:
        return Path(self.device.key_file) if self.device.key_file else self.data_dir / "device" / "key.pem"


# Tables other modules add to Config (buttons, indicators, dock, ...) register here first.
def sections() -> dict[str, type]:
    return {f.name: _resolve(Config, f) for f in dataclasses.fields(Config) if f.name != "source_path"}


def _resolve(owner: type, f: dataclasses.Field) -> Any:
    return typing.get_type_hints(owner)[f.name]


def _type_name(t: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(t, str(t))


def _coerce(table: str, key: str, value: Any, f: dataclasses.Field, ftype: Any) -> Any:
    where = f"[{table}] {key}"
    shown = value  # as the user wrote it, not as coerced
    origin = typing.get_origin(ftype)
    if origin in (types.UnionType, typing.Union):
        ftype = next(a for a in typing.get_args(ftype) if a is not type(None))
        if value is None:
            return None
    if ftype is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: must be true or false")
    elif ftype is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: must be a whole number")
    elif ftype is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: must be a number")
        value = float(value)
    elif ftype is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: must be a string in quotes")
    elif typing.get_origin(ftype) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} = {value!r}: must be a list")
    meta = f.metadata
    if meta.get("choices") is not None and value not in meta["choices"]:
        allowed = ", ".join(repr(c) for c in meta["choices"])
        raise ConfigError(f"{where} = {shown!r}: must be one of {allowed}")
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo is not None and hi is not None:
                raise ConfigError(f"{where} = {shown!r}: must be between {lo:g} and {hi:g}")
            if lo is not None:
                raise ConfigError(f"{where} = {shown!r}: must be at least {lo:g}")
            raise ConfigError(f"{where} = {shown!r}: must be at most {hi:g}")
    return value


def _build_table(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table, e.g. a line '[{name}]' followed by key = value lines")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"[{name}] {key}: unknown key; known keys are {', '.join(sorted(known))}")
        values[key] = _coerce(name, key, value, known[key], hints[key])
    return cls(**values)


def from_dict(raw: dict[str, Any], *, base_dir: Path | None = None, source_path: str = "") -> Config:
    """Validate a parsed TOML document; relative paths are taken from the config file's folder."""
    secs = sections()
    tables = {}
    for name, value in raw.items():
        if name not in secs:
            raise ConfigError(f"[{name}]: unknown table; known tables are {', '.join(sorted(secs))}")
        tables[name] = _build_table(name, secs[name], value)
    cfg = Config(**tables, source_path=source_path)
    cfg = _resolve_paths(cfg, base_dir)
    _cross_check(cfg)
    return cfg


def _resolve_paths(cfg: Config, base_dir: Path | None) -> Config:
    if base_dir is None:
        return cfg

    def absolute(p: str) -> str:
        return str((base_dir / p).resolve()) if p and not Path(p).is_absolute() else p

    device = dataclasses.replace(cfg.device, data_dir=absolute(cfg.device.data_dir),
                                 key_file=absolute(cfg.device.key_file))
    camera = dataclasses.replace(cfg.camera, file=absolute(cfg.camera.file))
    offload = dataclasses.replace(cfg.offload, ca_file=absolute(cfg.offload.ca_file))
    return dataclasses.replace(cfg, device=device, camera=camera, offload=offload)


def parse_sensor_mode(value: str) -> tuple[int, int] | None:
    """'full-fov' and 'auto' give None; 'WxH' gives (W, H); anything else is a one-line ConfigError."""
    if value in ("full-fov", "auto"):
        return None
    w, sep, h = value.lower().partition("x")
    if sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0:
        return int(w), int(h)
    raise ConfigError(f"[camera] sensor_mode = {value!r}: must be 'full-fov', 'auto' or a sensor mode size "
                      "like '2304x1296' (list them with 'rpicam-hello --list-cameras')")


def _cross_check(cfg: Config) -> None:
    parse_sensor_mode(cfg.camera.sensor_mode)
    if cfg.camera.source == "file" and not cfg.camera.file:
        raise ConfigError("[camera] file: required when source = 'file'; give the path of a video file")
    if cfg.audio.source == "file" and cfg.camera.source != "file":
        raise ConfigError("[audio] source = 'file': plays the sound of [camera] file, so [camera] source must "
                          "be 'file' too; or choose 'synthetic' or 'none'")
    if cfg.camera.width % 2 or cfg.camera.height % 2:
        raise ConfigError(f"[camera] width/height = {cfg.camera.width}x{cfg.camera.height}: "
                          "H.264 needs even numbers")
    if cfg.recording.segment_seconds < cfg.encoder.gop_seconds:
        raise ConfigError(f"[recording] segment_seconds = {cfg.recording.segment_seconds:g}: must be at least "
                          f"[encoder] gop_seconds ({cfg.encoder.gop_seconds:g}), segments start on keyframes")
    if not cfg.device.serial.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"[device] serial = {cfg.device.serial!r}: use letters, digits, '-' and '_' only")
    _check_pins(cfg)
    _check_prebuffer(cfg)
    url = cfg.offload.backend_url
    if url and (not url.startswith(("http://", "https://")) or url.rstrip("/").count("/") > 2):
        raise ConfigError(f"[offload] backend_url = {url!r}: must be http(s)://host[:port], without a path")
    if cfg.buttons.debounce_ms / 1000 >= cfg.buttons.double_press_seconds:
        raise ConfigError(f"[buttons] debounce_ms = {cfg.buttons.debounce_ms}: must be shorter than "
                          f"double_press_seconds ({cfg.buttons.double_press_seconds:g} s)")


def _check_prebuffer(cfg: Config) -> None:
    """A byte cap that cannot hold the configured seconds would silently break "at least N seconds"."""
    buf, enc = cfg.buffer, cfg.encoder
    if not buf.max_megabytes or buf.pre_event_seconds <= 0:
        return
    need = prebuffer_bytes_needed(buf.pre_event_seconds, enc)
    have = buf.max_megabytes * 1_000_000
    if have < need:
        holds = have / (enc.bitrate_kbps * 1000 / 8 * PREBUFFER_MARGIN) - enc.gop_seconds
        raise ConfigError(
            f"[buffer] max_megabytes = {buf.max_megabytes:g} holds only about {max(0.0, holds):.1f} s of the "
            f"{buf.pre_event_seconds:g} s pre_event_seconds at [encoder] bitrate_kbps = {enc.bitrate_kbps}: set it "
            f"to at least {need / 1e6:.0f} (or 0 to size it automatically), or lower pre_event_seconds")


def _check_pins(cfg: Config) -> None:
    """Two devices on one GPIO would fight (an LED driving a button input), so every pin is distinct."""
    seen: dict[int, str] = {}
    for table in ("buttons", "indicators"):
        section = getattr(cfg, table)
        for f in dataclasses.fields(section):
            if not f.name.endswith("_pin"):
                continue
            pin, key = getattr(section, f.name), f"[{table}] {f.name}"
            if pin in seen:
                raise ConfigError(f"{seen[pin]} and {key} are both GPIO {pin}: give each its own pin")
            seen[pin] = key


def read_toml(p: Path) -> dict[str, Any]:
    """A config file's tables (the camera's or the backend's); a missing, unreadable or malformed file is
    one ConfigError line naming it."""
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found; pass --config with an existing file") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file ({e.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None


def load(path: str | Path, *, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read and validate a config file; every failure is one ConfigError line naming file and key."""
    p = Path(path)
    raw = read_toml(p)
    for table, values in (overrides or {}).items():
        raw.setdefault(table, {}).update(values)
    try:
        return from_dict(raw, base_dir=p.parent.resolve(), source_path=str(p))
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
