"""The encoder seam: libx264 and a stand-in for the Pi 4's h264_v4l2m2m (tests/v4l2fake.py), real
encoding, real segment files, decoded by PyAV and by Debian's ffmpeg/ffprobe."""

from __future__ import annotations

import datetime
import functools
import io
import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest
from bodycam import config as configmod
from bodycam.capture.frame import Frame
from bodycam.encode import make_encoder
from bodycam.encode.annexb import NAL_SPS, ParameterSets, join_annexb, nal_type, split_nals, to_length_prefixed
from bodycam.encode.h264 import H264Encoder, open_context
from bodycam.encode.platform import Platform, choose_codec
from bodycam.errors import BodycamError, EncoderError
from bodycam.segments.writer import _h264_template, ticks
from framecode import coded_frame, decode_indices, read_code
from rig import Rig
from v4l2fake import open_v4l2m2m_like

W, H, FPS = 160, 120, 10
SETTINGS = dict(width=W, height=H, fps=FPS, bitrate_kbps=300, gop_seconds=1.0)
ENCODERS = [pytest.param("libx264", open_context, id="libx264"),
            pytest.param("h264_v4l2m2m", open_v4l2m2m_like, id="v4l2m2m-like")]
FFPROBE = shutil.which("ffprobe")


def frames(n: int, *, start_ns: int = 5_000_000_000) -> list[Frame]:
    """Irregularly spaced capture times (100 ms + 0..26 ms), so a packet paired with the wrong
    frame shows up as a wrong time, not only as a wrong picture."""
    out, t = [], start_ns
    for i in range(n):
        t += 100_000_000 + (i * 7 % 4) * 9_000_000
        out.append(Frame(coded_frame(i, W, H), i, t, 1_700_000_000_000_000_000 + t))
    return out


def encode_all(enc: H264Encoder, fs: list[Frame], *, key_at: tuple[int, ...] = ()) -> list:
    packets = []
    for f in fs:
        if f.index in key_at:
            enc.force_keyframe()
        packets += enc.encode(f)
    return packets + enc.flush()


# --- the fake is faithful where it matters, so the tests below can fail -----------------------

def test_fake_v4l2m2m_has_no_extradata_and_sends_headers_once_on_their_own() -> None:
    ctx = open_v4l2m2m_like(**SETTINGS, codec="h264_v4l2m2m")
    packets = []
    for f in frames(25):
        vf = av.VideoFrame.from_ndarray(f.image, format="bgr24").reformat(format="yuv420p")
        vf.pts, vf.time_base = f.mono_ns * 9 // 100_000, Fraction(1, 90_000)
        packets += ctx.encode(vf)
    packets += ctx.encode(None)
    assert not ctx.extradata
    assert len(packets) == 26, "a header packet plus one per frame"
    assert {nal_type(n) for n in split_nals(bytes(packets[0]))} == {7, 8}, "SPS/PPS alone, no picture"
    types = [[nal_type(n) for n in split_nals(bytes(p))] for p in packets[1:]]
    idrs = [t for t in types if 5 in t]
    assert len(idrs) >= 3 and all(NAL_SPS not in t for t in idrs), "later IDRs carry no SPS/PPS"


# --- packets keep their frames' times ----------------------------------------------------------

@pytest.mark.parametrize("codec, opener", ENCODERS)
def test_packets_carry_their_own_frames_times_and_pictures(codec, opener) -> None:
    fs = frames(30)
    enc = H264Encoder(**SETTINGS, codec=codec, open_context=opener)
    packets = encode_all(enc, fs, key_at=(17,))
    assert [p.index for p in packets] == list(range(30)), "one packet per frame, none lost at flush"
    assert [(p.mono_ns, p.utc_ns) for p in packets] == [(f.mono_ns, f.utc_ns) for f in fs]
    assert packets[0].keyframe and packets[17].keyframe and enc.unmatched_packets == 0
    # the pictures are those frames: decode the packets as they are (Annex B, no extradata)
    dec = av.CodecContext.create("h264", "r")
    codes = [read_code(fr.to_ndarray(format="bgr24"))
             for p in packets for fr in dec.decode(av.Packet(p.data))]
    codes += [read_code(fr.to_ndarray(format="bgr24")) for fr in dec.decode(None)]
    assert codes == [p.index for p in packets]


def test_a_header_only_packet_is_merged_into_the_next_picture_not_given_a_frame() -> None:
    enc = H264Encoder(**SETTINGS, codec="h264_v4l2m2m", open_context=open_v4l2m2m_like)
    fs = frames(3)
    first = enc.encode(fs[0])
    assert first == [], "the fake's first call returns only the headers; they wait for a picture"
    out = enc.encode(fs[1]) + enc.encode(fs[2]) + enc.flush()
    assert [p.mono_ns for p in out] == [f.mono_ns for f in fs]
    assert [nal_type(n) for n in split_nals(out[0].data)][:2] == [7, 8] and out[0].keyframe


def test_a_frame_the_encoder_skips_shifts_no_later_packet() -> None:
    enc = H264Encoder(**SETTINGS, codec="h264_v4l2m2m",
                      open_context=functools.partial(open_v4l2m2m_like, skip=frozenset({4, 9})))
    fs = frames(15)
    packets = encode_all(enc, fs)
    kept = [f for f in fs if f.index not in (4, 9)]
    assert [(p.index, p.mono_ns) for p in packets] == [(f.index, f.mono_ns) for f in kept]


class _RoundingContext:
    """libx264 whose packets come back with pts 1 tick off, as a driver's time rounding would do."""

    def __init__(self, **settings) -> None:
        self._real = open_context(**settings)
        self.extradata = self._real.extradata

    def encode(self, frame=None) -> list:
        packets = self._real.encode(frame)
        for p in packets:
            p.pts += 1
        return packets


def test_packets_with_rounded_times_still_find_their_frames() -> None:
    enc = H264Encoder(**SETTINGS, open_context=_RoundingContext)
    fs = frames(12)
    assert [(p.index, p.mono_ns) for p in encode_all(enc, fs)] == [(f.index, f.mono_ns) for f in fs]


def test_every_idr_carries_sps_pps_in_band() -> None:
    for opener in (open_context, open_v4l2m2m_like):
        enc = H264Encoder(**SETTINGS, open_context=opener)
        keys = [p for p in encode_all(enc, frames(35), key_at=(13,)) if p.keyframe]
        assert len(keys) >= 4
        for p in keys:
            assert ParameterSets.find(split_nals(p.data)) is not None


def test_flush_on_an_empty_or_flushed_encoder_returns_nothing() -> None:
    for opener in (open_context, open_v4l2m2m_like):
        enc = H264Encoder(**SETTINGS, open_context=opener)
        assert enc.flush() == []          # never opened
        enc.start()
        assert enc.flush() == []          # opened, no frame
        assert enc.flush() == []          # flushed twice
    enc = H264Encoder(**SETTINGS, open_context=open_v4l2m2m_like)
    assert len(encode_all(enc, frames(2))) == 2 and enc.flush() == []


# --- avcC ---------------------------------------------------------------------------------------

def test_our_avcc_equals_the_one_ffmpeg_writes_from_annexb_extradata() -> None:
    """FFmpeg's mov muxer as the oracle: given Annex B SPS/PPS it writes its own avcC."""
    ctx = open_context(**SETTINGS)
    params = ParameterSets.find(split_nals(bytes(ctx.extradata)))
    assert params is not None
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov"}) as c:
        st = c.add_stream_from_template(_h264_template(W, H, FPS))
        st.codec_context.extradata = join_annexb(params.nals())
        c.start_encoding()
    data = buf.getvalue()
    at = data.index(b"avcC")
    size = int.from_bytes(data[at - 4:at], "big")
    assert data[at + 4:at - 4 + size] == params.avcc()


def test_length_prefixing_round_trips() -> None:
    nals = [b"\x67\x42\x00\x0c\xaa", b"\x68\xce\x01", b"\x65" + b"\x00\x00\x03\x01" * 3 + b"\x80"]
    assert split_nals(join_annexb(nals)) == nals
    assert split_nals(b"\x00\x00\x01" + nals[0] + b"\x00\x00\x00\x01" + nals[1]) == nals[:2]
    lp = to_length_prefixed(nals)
    assert lp[:4] == (5).to_bytes(4, "big") and len(lp) == sum(4 + len(n) for n in nals)


# --- whole recordings: every segment decodes alone, with exact times -------------------------------

def _record(rig: Rig) -> None:
    rig.frames(34)
    rig.clock.advance(0.037)   # an irregular gap, so a shifted time cannot pass for a right one
    rig.frames(1)
    rig.trigger()
    for _ in range(9):
        rig.frames(10)
        rig.clock.advance(0.0123)
    for p in rig.encoder.flush():  # what the pipeline does at shutdown: the delayed last frames too
        rig.recorder.write(p)
    rig.recorder.stop()


def _keyframe_samples_carry_sps_pps(seg: Path) -> int:
    n = 0
    with av.open(str(seg)) as c:
        for pkt in c.demux(video=0):
            if pkt.size and pkt.is_keyframe:
                data, types = bytes(pkt), set()
                while data:
                    size = int.from_bytes(data[:4], "big")
                    types.add(data[4] & 0x1F)
                    data = data[4 + size:]
                assert {7, 8, 5} <= types, f"{seg.name}: keyframe sample without SPS/PPS: {types}"
                n += 1
    return n


@pytest.mark.parametrize("codec, opener", ENCODERS)
def test_every_segment_decodes_alone_with_exact_capture_times(tmp_path, codec, opener) -> None:
    rig = Rig(tmp_path, codec=codec, open_context=opener)   # 10 fps, GOP 1 s, 2 s segments, 3 s pre-event
    _record(rig)
    segs = rig.segments()
    assert len(segs) >= 5
    seen: list[int] = []
    for seg in segs:
        m = json.loads(seg.with_suffix(".json").read_bytes())
        assert m["video"]["encoder"] == codec
        decoded = decode_indices(seg)                      # PyAV, the file on its own
        codes = [c for c, _, _ in decoded]
        assert codes == list(range(codes[0], codes[0] + len(codes))) and len(codes) == m["frame_count"]
        first_ns = rig.captured[codes[0]][0]
        assert m["first_frame"]["monotonic_ns"] == first_ns and decoded[0][2]
        expected_pts = [ticks(rig.captured[c][0] - first_ns) for c in codes]
        assert [pts for _, pts, _ in decoded] == expected_pts
        assert m["last_frame"]["pts"] == expected_pts[-1]
        assert m["last_frame"]["utc_ns"] == rig.captured[codes[-1]][1]
        assert _keyframe_samples_carry_sps_pps(seg) >= 2
        seen += codes
    assert seen == list(range(seen[0], rig.index)), "every frame from pre-roll to the end, once, in order"


@pytest.mark.parametrize("codec, opener", ENCODERS)
def test_every_segment_decodes_alone_in_the_ffmpeg_cli(tmp_path, codec, opener) -> None:
    assert FFPROBE and shutil.which("ffmpeg"), "Debian's ffmpeg missing: scripts/_bootstrap.sh installs it as root"
    rig = Rig(tmp_path, codec=codec, open_context=opener)
    _record(rig)
    for seg in rig.segments():
        m = json.loads(seg.with_suffix(".json").read_bytes())
        probe = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries",
                                "frame=key_frame,pts", "-of", "json", str(seg)],
                               capture_output=True, text=True, check=True)
        assert probe.stderr == "", probe.stderr
        rows = json.loads(probe.stdout)["frames"]
        assert len(rows) == m["frame_count"] and rows[0]["key_frame"] == 1
        first = m["first_frame"]["monotonic_ns"]
        codes = [c for c, _, _ in decode_indices(seg)]
        assert [r["pts"] for r in rows] == [ticks(rig.captured[c][0] - first) for c in codes]
        decode = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", str(seg), "-f", "null", "-"],
                                capture_output=True, text=True)
        assert decode.returncode == 0 and decode.stderr == "", decode.stderr


# --- codec by platform --------------------------------------------------------------------------

def _sysfs(root: Path, **nodes: str) -> Path:
    for node, name in nodes.items():
        d = root / "sys/class/video4linux" / node
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
    return root


def test_auto_picks_the_pi4_encoder_only_where_the_bcm2835_codec_is(tmp_path) -> None:
    pi4 = _sysfs(tmp_path / "pi4", video10="bcm2835-codec-decode", video11="bcm2835-codec-encode",
                 video12="bcm2835-codec-isp")
    pi5 = _sysfs(tmp_path / "pi5", video19="rpi-hevc-dec", video20="pispbe-input")
    full = {"libx264", "h264_v4l2m2m"}
    c = choose_codec("auto", Platform(pi4, full))
    assert (c.codec, c.hardware) == ("h264_v4l2m2m", True) and "/dev/video11" in c.description
    assert choose_codec("auto", Platform(pi5, full)).codec == "libx264"
    assert choose_codec("auto", Platform(tmp_path / "laptop", full)).codec == "libx264"
    no_v4l2 = choose_codec("auto", Platform(pi4, {"libx264"}))
    assert no_v4l2.codec == "libx264" and "no h264_v4l2m2m" in no_v4l2.why

    no_such = H264Encoder(**SETTINGS, codec="h264_nonesuch")   # as a PyAV build without the codec
    with pytest.raises(EncoderError, match='not available in this PyAV build.*codec = "auto"') as e:
        no_such.start()
    assert "\n" not in str(e.value)


def test_make_encoder_resolves_auto_and_names_it(tmp_path) -> None:
    cfg = configmod.from_dict({"device": {"data_dir": str(tmp_path)}, "camera": {"width": W, "height": H}})
    assert cfg.encoder.codec == "auto"
    enc = make_encoder(cfg, platform=Platform(tmp_path, {"libx264", "h264_v4l2m2m"}))
    assert (enc.codec_name, enc.hardware, enc.description) == ("libx264", False, "libx264 (software)")
    assert enc.reason == "no bcm2835-codec H.264 encoder on this machine"
    pi4 = make_encoder(cfg, platform=Platform(_sysfs(tmp_path / "r", video11="bcm2835-codec-encode"),
                                              {"libx264", "h264_v4l2m2m"}))
    assert (pi4.codec_name, pi4.hardware) == ("h264_v4l2m2m", True)


@pytest.mark.skipif(Platform().hardware_encoder_device() is not None, reason="this machine has the encoder")
def test_the_v4l2_encoder_where_there_is_none_is_one_line_saying_what_to_set() -> None:
    if "h264_v4l2m2m" not in av.codecs_available:
        pytest.fail("this PyAV build has no h264_v4l2m2m (the PyPI wheel has it)")
    enc = H264Encoder(**SETTINGS, codec="h264_v4l2m2m")
    with pytest.raises(EncoderError) as e:
        enc.start()
    msg = str(e.value)
    assert isinstance(e.value, BodycamError) and "\n" not in msg
    assert "h264_v4l2m2m" in msg and 'codec = "auto"' in msg


def test_the_documented_ffprobe_commands_list_every_frame_of_a_first_segment(tmp_path) -> None:
    """docs/format.md section 8 step 5, run as printed, on the segment with libx264's SEI on frame 0."""
    assert FFPROBE and shutil.which("jq"), "ffprobe or jq missing: scripts/_bootstrap.sh installs them as root"
    rig = Rig(tmp_path)
    _record(rig)
    segments = tmp_path / "check"   # the commands name seg-0000000002: make it the recording's first
    segments.mkdir()
    for p in ("mp4", "json"):
        shutil.copy(tmp_path / f"segments/seg-0000000001.{p}", segments / f"seg-0000000002.{p}")
    m = json.loads((segments / "seg-0000000002.json").read_text())
    docs = (Path(__file__).resolve().parents[1] / "docs/format.md").read_text().split("```sh\n")[1:]
    frames_cmd = next(b.split("```")[0] for b in docs if "frame=key_frame,pts,pts_time" in b)
    utc_cmd = next(b.split("```")[0] for b in docs if "t0=$(jq" in b)
    rows = subprocess.run(["bash", "-c", frames_cmd], cwd=segments, capture_output=True, text=True,
                          check=True).stdout.splitlines()
    assert len(rows) == m["frame_count"] and rows[0] == "1,0,0.000000"
    assert all(len(r.split(",")) == 3 for r in rows)
    utc = subprocess.run(["bash", "-c", utc_cmd], cwd=segments, capture_output=True, text=True, check=True)
    lines = utc.stdout.splitlines()
    assert len(lines) == m["frame_count"] and lines[0].split()[0] == "0"
    assert lines[-1].split()[0] == str(m["last_frame"]["pts"])
    # the printed UTC times are the capture times: first and last frame, to the millisecond
    for line, stamp in ((lines[0], m["first_frame"]), (lines[-1], m["last_frame"])):
        printed = datetime.datetime.fromisoformat(line.split()[1]).timestamp()
        assert abs(printed - stamp["utc_ns"] / 1e9) < 0.001, (line, stamp)
