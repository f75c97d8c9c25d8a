"""`bodycam doctor --camera-test`: record a few seconds for real, check them, say what the camera did.

For a technician holding a camera: it runs the device's own recording path (the one `bodycam record`
uses: source, watermark, encoder, recorder, sealer) on the configured camera and encoder, into a
throwaway data directory signed with a throwaway key (so the test never enters the device's evidence
chain), then verifies the result as `bodycam verify --decode` would, decodes every frame itself, and
prints one line per fact, each read back from what was recorded (mostly the signed manifests), not
from what was configured:

    camera       sensor model, mode, crop and field of view (or which stand-in source it was)
    encoder      codec and encoder, hardware or software
    fps          frames per second achieved over the recording
    dropped      frames the camera or pipeline skipped
    frame times  sensor timestamps used, or how many frames fell back to delivery time
    verify       signatures, chain, hashes, and every frame decoded

Exit status 0 when every line is ok or warn, 1 when one is FAIL.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as configmod
from .cli_record import record
from .device import RecordingDevice
from .doctor import FAIL, OK, WARN
from .errors import BodycamError
from .evidence.signer import generate_key
from .verify import verify_paths

HARDWARE_ENCODERS = ("h264_v4l2m2m",)  # the Pi 4's H.264 block; everything else is software


@dataclass(frozen=True)
class Line:
    status: str
    name: str
    detail: str

    def render(self) -> str:
        return f"  {self.status:<5} {self.name:<12} {self.detail}"


def run_camera_test(config_path: str, *, seconds: float = 10.0, say: Callable[[str], None] = print) -> int:
    """Record ``seconds`` with the configured camera and encoder, check it, print the lines; exit code."""
    with tempfile.TemporaryDirectory(prefix="bodycam-camera-test-") as tmp:
        cfg = configmod.load(config_path, overrides={"device": {"data_dir": tmp, "key_file": ""}})
        signer = generate_key(cfg.key_path)
        say(f"bodycam doctor --camera-test: recording {seconds:g} s with [camera] source = "
            f"{cfg.camera.source!r} at {cfg.camera.width}x{cfg.camera.height} @ {cfg.camera.fps:g} fps")
        try:
            with RecordingDevice(cfg, signer=signer) as dev:
                record(dev, wait=min(1.0, cfg.buffer.pre_event_seconds), seconds=seconds,
                       stop=threading.Event(), say=lambda _line: None)
                faults = list(dev.faults)
        except BodycamError as e:  # the camera or encoder would not open: that is the finding
            faults = [str(e)]
        lines = check_recording(Path(tmp), fps=cfg.camera.fps, faults=faults)
    for line in lines:
        say(line.render())
    return 1 if any(line.status == FAIL for line in lines) else 0


def check_recording(data_dir: Path, *, fps: float, faults: list[str]) -> list[Line]:
    """The six lines for a recording in ``data_dir`` (one device, one recording)."""
    manifests = [json.loads(p.read_text()) for p in sorted((data_dir / "segments").glob("seg-*.json"))]
    if not manifests:
        why = faults[0] if faults else "no segment was sealed"
        return [Line(FAIL, "camera", f"nothing recorded: {why}")]
    camera = manifests[-1].get("camera") or {}
    lines = [camera_line(camera), encoder_line(manifests[-1].get("video") or {})]
    frames = sum(m["frame_count"] for m in manifests)
    lines += rate_lines(manifests, fps=fps, frames=frames)
    lines.append(frame_time_line(camera))
    lines.append(verify_line(data_dir, manifests, frames))
    lines += [Line(FAIL, "fault", f) for f in faults]
    return lines


def camera_line(camera: dict[str, Any]) -> Line:
    source = camera.get("source", "unknown")
    if source != "picamera2":
        what = {"synthetic": "synthetic test pattern (no sensor)", "file": f"video file {camera.get('file', '')}",
                "webcam": f"webcam {camera.get('device', '')}"}.get(source, f"source {source}")
        return Line(WARN, "camera", f"{what}; set [camera] source = 'picamera2' on a camera")
    mode = camera.get("sensor_mode") or {}
    size = "x".join(str(v) for v in mode.get("size") or []) or "unknown"
    fov = camera.get("field_of_view") or {}
    crop = camera.get("crop")
    crop_text = f"crop {crop[2]}x{crop[3]} at ({crop[0]},{crop[1]})" if crop else "crop unknown"
    if fov:
        fov_text = f"field of view {fov['width']:.0%} x {fov['height']:.0%} of the sensor"
        status = OK if min(fov["width"], fov["height"]) >= 0.99 or camera.get("sensor_mode_setting") != "full-fov" \
            else WARN
    else:
        fov_text, status = "field of view unknown", WARN
    return Line(status, "camera", f"{camera.get('sensor', 'unknown sensor')}, sensor mode {size} "
                                  f"{mode.get('bit_depth', '?')}-bit ({camera.get('sensor_mode_setting', '?')}), "
                                  f"{crop_text}, {fov_text}")


def encoder_line(video: dict[str, Any]) -> Line:
    encoder = str(video.get("encoder") or "unknown")
    kind = "hardware" if encoder in HARDWARE_ENCODERS else "software"
    return Line(OK, "encoder", f"{video.get('codec', '?')} by {encoder} ({kind}), "
                               f"{video.get('width')}x{video.get('height')}, {video.get('bitrate_kbps')} kbit/s")


def rate_lines(manifests: list[dict[str, Any]], *, fps: float, frames: int) -> list[Line]:
    first, last = manifests[0].get("first_frame"), manifests[-1].get("last_frame")
    span = (last["monotonic_ns"] - first["monotonic_ns"]) / 1e9 if first and last else 0.0
    achieved = (frames - 1) / span if span > 0 else 0.0
    fps_status = OK if achieved >= 0.95 * fps else (WARN if achieved >= 0.8 * fps else FAIL)
    dropped = sum(m.get("dropped_frames", 0) for m in manifests)
    drop_status = OK if dropped <= max(1, frames // 100) else WARN
    return [Line(fps_status, "fps", f"{achieved:.2f} achieved of {fps:g} configured ({frames} frames in {span:.2f} s)"),
            Line(drop_status, "dropped", f"{dropped} frames ({dropped / max(1, frames + dropped):.1%})")]


def frame_time_line(camera: dict[str, Any]) -> Line:
    times = camera.get("frame_times") or {}
    method = times.get("method", "unknown")
    if method == "sensor_timestamp":
        n = int(times.get("fallbacks", 0))
        if n == 0:
            return Line(OK, "frame times", "sensor timestamps (exposure time, not delivery), no fallbacks")
        return Line(WARN, "frame times", f"sensor timestamps, but {n} frames fell back to delivery time "
                                         "(timestamps implausible: see the log)")
    what = {"paced": "capture slots of a paced source (no sensor)",
            "delivery": "delivery time (this source has no sensor timestamps)"}.get(method, method)
    return Line(OK if method == "paced" else WARN, "frame times", what)


def verify_line(data_dir: Path, manifests: list[dict[str, Any]], frames: int) -> Line:
    report = verify_paths([data_dir], decode=True)
    decoded = _decode_count(data_dir)
    if not report.ok:
        return Line(FAIL, "verify", f"failed: {report.errors[0]}")
    if decoded != frames:
        return Line(FAIL, "verify", f"decoded {decoded} frames, the manifests say {frames}")
    return Line(OK, "verify", f"ok: {len(manifests)} segments (signatures, chain, SHA-256), "
                              f"{decoded} frames decoded")


def _decode_count(data_dir: Path) -> int:
    """Every frame decoded here too, so the line does not rest on the verifier alone."""
    import av

    count = 0
    for media in sorted((data_dir / "segments").glob("seg-*.mp4")):
        with av.open(str(media)) as container:
            count += sum(1 for _ in container.decode(video=0))
    return count
