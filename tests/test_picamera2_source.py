"""The production camera source against tests/fake_picamera2.py (modelled on picamera2's source).

Sensor-mode choice (and what picamera2 would choose without it), frame times from SensorTimestamp,
drops, timeouts that leave a job holding a buffer, and every open failure as one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bodycam.capture.factory import open_source
from bodycam.capture.picamera2_source import Picamera2Source
from bodycam.capture.sensor_mode import choose_sensor_mode
from bodycam.clock import ManualClock
from bodycam.config import CameraConfig, ConfigError, from_dict
from bodycam.errors import BodycamError, SourceError
from fake_picamera2 import IMX708_WIDE_MODES, FakePicamera2, install

FPS = 30
NS = 1_000_000_000
STEP = 33_333_000  # the fake runs the sensor at FrameDurationLimits, whole microseconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> type[FakePicamera2]:
    return install(monkeypatch, clock)


def source(clock: ManualClock, **kw) -> Picamera2Source:
    kw.setdefault("timeout_s", 2.0)
    return Picamera2Source(kw.pop("width", 1280), kw.pop("height", 720), kw.pop("fps", FPS), clock=clock, **kw)


# ------------------------------------------------------------------------------ sensor mode

def test_picamera2_alone_would_pick_the_cropped_720p_mode(fake, clock) -> None:
    """The problem (issue 14 item 3): picamera2's own scoring crops a third of the wide lens away."""
    with source(clock, sensor_mode="auto") as src:
        cam = fake.instances[0]
        assert cam.config["sensor"] == {"bit_depth": 10, "output_size": (1536, 864)}
        src.read()
        info = src.camera_info()
    assert info["sensor_mode"] == {"size": [1536, 864], "bit_depth": 10}
    assert info["crop"] == [768, 432, 3072, 1728]
    assert info["field_of_view"] == {"width": 0.6667, "height": 0.6667}


def test_full_fov_is_the_default_and_keeps_the_whole_array(fake, clock) -> None:
    with source(clock) as src:
        cam = fake.instances[0]
        frame = src.read()
        info = src.camera_info()
    assert cam.mode["size"] == (2304, 1296)
    assert frame.image.shape == (720, 1280, 3)
    assert info["source"] == "picamera2" and info["sensor"] == "imx708_wide"
    assert info["sensor_mode_setting"] == "full-fov"
    assert info["sensor_mode"] == {"size": [2304, 1296], "bit_depth": 10}
    assert info["sensor_mode_crop"] == [0, 0, 4608, 2592]
    assert info["crop"] == [0, 0, 4608, 2592] and info["pixel_array"] == [4608, 2592]
    assert info["field_of_view"] == {"width": 1.0, "height": 1.0}


def test_an_explicit_mode_is_passed_as_picamera2s_sensor_argument(fake, clock) -> None:
    cam_cfg = CameraConfig(source="picamera2", width=1280, height=720, fps=10, sensor_mode="4608x2592")
    with open_source(cam_cfg, clock) as src:
        src.read()
        assert fake.instances[0].config["sensor"]["output_size"] == (4608, 2592)
        assert src.camera_info()["sensor_mode_setting"] == "4608x2592"


@pytest.mark.parametrize(("fps", "output", "want"), [
    (30, (1280, 720), (2304, 1296)),   # the full-array binned mode, not the 720p crop
    (30, (1920, 1080), (2304, 1296)),
    (50, (1280, 720), (2304, 1296)),
    (60, (1280, 720), (1536, 864)),    # no full-FOV mode reaches 60 fps: the widest that does
    (10, (4096, 2160), (4608, 2592)),  # large enough for the output first
    (10, (1280, 720), (2304, 1296)),   # then the smallest
])
def test_choose_the_widest_view_that_reaches_the_frame_rate(fps, output, want) -> None:
    assert tuple(choose_sensor_mode(IMX708_WIDE_MODES, fps=fps, output=output)["size"]) == want


def test_choose_works_for_another_sensor() -> None:
    """The v2 camera (imx219) lists 640x480 cropped, 1640x1232 full, 1920x1080 cropped, 3280x2464 full."""
    imx219 = [{"size": (640, 480), "bit_depth": 10, "fps": 206.65, "crop_limits": (1000, 752, 1280, 960)},
              {"size": (1640, 1232), "bit_depth": 10, "fps": 41.85, "crop_limits": (0, 0, 3280, 2464)},
              {"size": (1920, 1080), "bit_depth": 10, "fps": 47.57, "crop_limits": (680, 692, 1920, 1080)},
              {"size": (3280, 2464), "bit_depth": 10, "fps": 21.19, "crop_limits": (0, 0, 3280, 2464)},
              {"format": "MJPEG"}]
    assert tuple(choose_sensor_mode(imx219, fps=30, output=(1920, 1080))["size"]) == (1640, 1232)


def test_impossible_modes_are_one_line_source_errors() -> None:
    with pytest.raises(SourceError, match=r"no such mode; it has 1536x864 \(120.13 fps\), 2304x1296") as e:
        choose_sensor_mode(IMX708_WIDE_MODES, fps=30, output=(1280, 720), size=(1920, 1080))
    assert "\n" not in str(e.value)
    with pytest.raises(SourceError, match=r"'4608x2592' runs at most 14.35 fps, below \[camera\] fps = 30"):
        choose_sensor_mode(IMX708_WIDE_MODES, fps=30, output=(1280, 720), size=(4608, 2592))
    with pytest.raises(SourceError, match=r"no sensor mode reaches \[camera\] fps = 200"):
        choose_sensor_mode(IMX708_WIDE_MODES, fps=200, output=(1280, 720))


@pytest.mark.parametrize(("value", "size"), [("full-fov", None), ("auto", None), ("2304x1296", (2304, 1296))])
def test_config_sensor_mode_values(value, size) -> None:
    cfg = from_dict({"camera": {"sensor_mode": value}})
    assert cfg.camera.sensor_mode_size == size


@pytest.mark.parametrize("value", ["wide", "2304", "x1296", "0x0", "2304x1296x2", ""])
def test_config_rejects_a_bad_sensor_mode_in_one_line(value) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict({"camera": {"sensor_mode": value}})
    msg = str(e.value)
    assert msg.startswith(f"[camera] sensor_mode = {value!r}: must be 'full-fov', 'auto' or a sensor mode size")
    assert "\n" not in msg


def test_an_unsupported_mode_fails_start_and_closes_the_camera(fake, clock) -> None:
    with pytest.raises(SourceError, match="no such mode") as e:
        source(clock, sensor_mode="1920x1080").start()
    assert "\n" not in str(e.value)
    assert fake.instances[0].closes == 1


def test_a_configure_failure_is_one_line_and_closes_the_camera(fake, clock, monkeypatch) -> None:
    monkeypatch.setattr(FakePicamera2, "fail_configure", "Failed to configure camera:\n  invalid argument")
    with pytest.raises(SourceError) as e:
        source(clock).start()
    msg = str(e.value)
    assert "\n" not in msg and "Failed to configure camera: invalid argument" in msg
    assert "sensor_mode" in msg
    assert fake.instances[0].closes == 1


def test_a_camera_that_cannot_be_opened_is_one_line(fake, clock, monkeypatch) -> None:
    monkeypatch.setattr(FakePicamera2, "open_error", IndexError("list index out of range"))
    with pytest.raises(SourceError, match="no camera 0 found: check the ribbon cable"):
        source(clock).start()
    monkeypatch.setattr(FakePicamera2, "open_error", RuntimeError("Failed to acquire camera: Device or resource busy"))
    with pytest.raises(SourceError, match="cannot open camera 0: Failed to acquire camera"):
        source(clock).start()


# ------------------------------------------------------------------------------ frame times

@pytest.mark.parametrize("suspended_s", [0, 7])
def test_frame_times_are_the_sensor_times_not_the_delivery_times(fake, suspended_s) -> None:
    """SensorTimestamp lags delivery by 40 ms; with a suspend, BOOTTIME runs ahead of MONOTONIC."""
    clock = ManualClock(suspended_ns=suspended_s * NS)
    FakePicamera2.clock = clock
    offset = clock.utc_ns() - clock.monotonic_ns()
    with source(clock) as src:
        cam = fake.instances[0]
        cam.latency_ns = 40_000_000
        frames, exposed, delivered = [], [], []
        for _ in range(10):
            frames.append(src.read())
            delivered.append(clock.monotonic_ns())
            exposed.append(cam._frame_ns(cam._k - 1) - clock.suspended_ns)  # sensor time, on MONOTONIC
            clock.advance(0.003)  # the consumer takes a little time per frame
        info = src.camera_info()
    assert [f.mono_ns for f in frames] == exposed
    assert all(d - f.mono_ns == 40_000_000 for d, f in zip(delivered, frames, strict=True))
    assert all(f.utc_ns - f.mono_ns == offset for f in frames)
    assert info["frame_times"] == {"method": "sensor_timestamp", "fallbacks": 0}
    assert cam.free_buffers == cam.buffer_count


def test_implausible_sensor_times_fall_back_to_delivery_and_are_counted(fake, clock, caplog) -> None:
    with source(clock) as src:
        cam = fake.instances[0]
        cam.latency_ns = 400_000_000  # 12 frame intervals: not what buffering explains
        f = src.read()
        assert f.mono_ns == clock.monotonic_ns()  # stamped at delivery
        cam.latency_ns = 40_000_000
        clock.advance(0.2)  # (a sensor time earlier than the fallback stamp would be refused: times only grow)
        g = src.read()
        assert g.mono_ns == cam._frame_ns(cam._k - 1) < clock.monotonic_ns()  # the sensor's time again
        cam.send_timestamps = False
        h = src.read()
        assert h.mono_ns == clock.monotonic_ns()
        info = src.camera_info()
    assert info["frame_times"] == {"method": "sensor_timestamp", "fallbacks": 2}
    assert "stamped at delivery, not by the sensor: SensorTimestamp is 400.0 ms old" in caplog.text


def test_a_timestamp_from_the_future_falls_back(fake, clock) -> None:
    """A camera stamping in another clock domain, ahead of CLOCK_BOOTTIME."""
    with source(clock) as src:
        src.read()
        fake.instances[0].timestamp_offset_ns = 5 * NS
        f = src.read()
        assert f.mono_ns == clock.monotonic_ns()
        assert src.camera_info()["frame_times"]["fallbacks"] == 1


def test_drops_are_found_from_sensor_timestamps(fake, clock) -> None:
    with source(clock) as src:
        cam = fake.instances[0]
        cam.drop = {3, 4}
        frames = [src.read() for _ in range(5)]
    assert [f.index for f in frames] == [0, 1, 2, 5, 6]
    assert src.dropped == 2
    assert cam.free_buffers == cam.buffer_count  # every request went back


def test_an_aligned_stream_is_resized(fake, clock) -> None:
    with source(clock, width=640, height=480) as src:
        fake.instances[0].delivered_size = (656, 480)
        f = src.read()
    assert f.image.shape == (480, 640, 3) and f.image.flags.c_contiguous


def test_unknown_tuning_file_is_a_source_error(fake, clock, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="tuning file"):
        source(clock, tuning_file="imx999.json").start()
    with pytest.raises(SourceError, match="tuning file not found"):
        source(clock, tuning_file=str(tmp_path / "x.json")).start()
    assert not fake.instances  # the camera is not even opened
    with source(clock, tuning_file="imx708_wide.json"):
        assert fake.instances[0].tuning == {"version": 2, "algorithms": []}


# ------------------------------------------------------------------------------ timeouts

@pytest.mark.parametrize("has_cancel", [True, False], ids=["picamera2>=0.3.20", "older"])
def test_timeouts_are_recovered_without_leaking_buffers(fake, clock, monkeypatch, has_cancel) -> None:
    """Eight stalls, each leaving a job that takes a buffer as the wait gives up: more than the pool."""
    monkeypatch.setattr(FakePicamera2, "has_cancel", has_cancel)
    with source(clock) as src:
        cam = fake.instances[0]
        before = src.read()
        for episode in range(8):
            cam.stalled_until_ns = clock.boottime_ns() + 3 * NS  # longer than one 2 s wait
            cam.late_result_on_timeout = True
            f = src.read()
            assert f is not None and f.index > before.index
            assert f.mono_ns - before.mono_ns >= 3 * NS - STEP  # the stall shows as time...
            before = f
            assert cam.free_buffers == cam.buffer_count, f"leaked a buffer in stall {episode}"
        assert src.timeouts == 8 and cam.stops == 8 and cam.starts == 9
        assert src.dropped > 8 * 80  # ...and as dropped frames
    assert cam.closes == 1


def test_the_fake_catches_a_leak(fake, clock, monkeypatch) -> None:
    """Without releasing what the timed-out jobs took, the pool runs dry: the fake makes that fail."""
    monkeypatch.setattr(Picamera2Source, "_reap_orphans", lambda self: None)
    with source(clock) as src:
        cam = fake.instances[0]
        with pytest.raises(SourceError, match="no frame in 3 tries"):
            for _ in range(10):
                cam.stalled_until_ns = clock.boottime_ns() + 3 * NS
                cam.late_result_on_timeout = True
                src.read()
        assert cam.free_buffers == 0


def test_a_dead_camera_is_a_one_line_source_error_after_the_retries(fake, clock) -> None:
    with source(clock, retries=3) as src:
        cam = fake.instances[0]
        src.read()
        cam.stalled_until_ns = clock.boottime_ns() + 3600 * NS
        t0 = clock.monotonic_ns()
        with pytest.raises(SourceError) as e:
            src.read()
    msg = str(e.value)
    assert msg == ("camera delivered no frame in 3 tries of 2 s, restarting it after each; check the ribbon "
                   "cable and power supply")
    assert isinstance(e.value, BodycamError)  # what the pipeline's capture thread turns into a fault
    assert clock.monotonic_ns() - t0 == 6 * NS and src.timeouts == 3
    assert cam.free_buffers == cam.buffer_count and cam.closes == 1


def test_a_dead_camera_becomes_a_device_fault_in_the_audit_log(tmp_path, monkeypatch) -> None:
    """The capture thread's SourceError reaches RecordingDevice.faults (which the daemon's state machine
    turns into its fault state, daemon/machine.py _check_faults) and the signed audit log, as one line."""
    import time

    from bodycam.clock import SystemClock
    from bodycam.device import RecordingDevice
    from bodycam.evidence.signer import generate_key
    from rig import small_config

    real = SystemClock()
    fake = install(monkeypatch, real)
    cfg = small_config(tmp_path, camera={"source": "picamera2"})
    generate_key(cfg.key_path)
    src = Picamera2Source(160, 120, 10, clock=real, timeout_s=0.1, retries=2)
    with RecordingDevice(cfg, source=src) as dev:
        dev.start()
        deadline = time.monotonic() + 5
        while dev.pipeline.stats.frames_captured < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        fake.instances[0].stalled_until_ns = real.boottime_ns() + 3600 * NS  # the ribbon cable comes loose
        while not dev.faults and time.monotonic() < deadline:
            time.sleep(0.02)
        assert dev.faults == ["camera delivered no frame in 2 tries of 0.1 s, restarting it after each; check "
                              "the ribbon cable and power supply"]
    entries = [json.loads(json.loads(line)["entry"]) for line in dev.layout.audit_log.read_text().splitlines()]
    assert [e["data"]["message"] for e in entries if e["event"] == "fault"] == dev.faults
    assert fake.instances[0].free_buffers == fake.instances[0].buffer_count


def test_a_picamera2_too_old_for_timeouts_is_refused_in_one_line(fake, clock, monkeypatch) -> None:
    """Before 0.3.17 ``wait(job)`` had no timeout: a stalled camera would hang the capture thread forever."""
    monkeypatch.setattr(FakePicamera2, "wait", lambda self, job: job.get_result())
    with pytest.raises(SourceError, match=r"picamera2 is too old \(before 0.3.17.*sudo apt install python3-picamera2"):
        source(clock).start()
    assert fake.instances[0].closes == 1
