"""Where a simulated camera left its evidence, and the commands that check it without our code.

Printed after every run so the next step for a reviewer is obvious: look at the files, run
``bodycam verify``, or check one segment by hand with sha256sum and openssl (PRODUCT goal 3).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..layout import DataLayout

_SEALED = re.compile(r"^seg-(\d{10})\.mp4$")


@dataclass(frozen=True)
class Evidence:
    data_dir: Path
    segments: tuple[Path, ...]       # sealed media files, in sequence order
    open_segments: tuple[Path, ...]  # .mp4.partial: still being written, or waiting for recovery
    audit_log: Path | None
    public_key: Path | None

    def manifest(self, media: Path) -> Path:
        return media.with_suffix(".json")

    def signature(self, media: Path) -> Path:
        return media.with_suffix(".sig")


def sealed_segments(data_dir: Path) -> list[Path]:
    """Sealed segments only: the rename to .mp4 is the commit point, so these are complete and signed."""
    seg_dir = DataLayout(data_dir).segments
    try:
        names = sorted(n for n in os.listdir(seg_dir) if _SEALED.match(n))
    except OSError:
        return []
    return [seg_dir / n for n in names]


def receipts(data_dir: Path) -> list[Path]:
    """The backend's receipts: one per segment it acknowledged (and the device then freed)."""
    try:
        return sorted((Path(data_dir) / "receipts").glob("seg-*.receipt.json"))
    except OSError:
        return []


def after_stop(last: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """The last status, with the segments counted again once the daemon has stopped: the one it sealed
    as it stopped (after that status) counts as sealed this run, so the summary agrees with the files.
    Nothing is offloaded while the daemon stops."""
    on_disk = len(sealed_segments(data_dir))
    at_stop = max(0, on_disk - int(last.get("segments_on_disk", on_disk)))
    return {**last, "segments_sealed": int(last.get("segments_sealed", 0)) + at_stop,
            "segments_on_disk": on_disk, "segments_offloaded": len(receipts(data_dir))}


def collect(data_dir: Path) -> Evidence:
    layout = DataLayout(Path(data_dir))
    try:
        partial = sorted(layout.segments.glob("seg-*.mp4.partial"))
    except OSError:
        partial = []
    pub = layout.device / "device.pub.pem"
    return Evidence(data_dir=layout.root, segments=tuple(sealed_segments(layout.root)),
                    open_segments=tuple(partial),
                    audit_log=layout.audit_log if layout.audit_log.is_file() else None,
                    public_key=pub if pub.is_file() else None)


def show_path(p: Path) -> str:
    """Paths under the working directory relative to it (shorter, still pasteable); others absolute, as
    a path climbing out with ``..`` reads worse than the real one."""
    try:
        rel = os.path.relpath(p)
    except ValueError:
        return str(p)
    return rel if not rel.startswith("..") and len(rel) < len(str(p)) else str(p)


def bodycam_command() -> str:
    """How to call `bodycam` from the shell that started the simulator: `./scripts/sim` puts its .venv
    on its own PATH only, so unless that venv is activated the printed commands name it by path."""
    venv_bin = Path(sys.executable).parent
    in_venv = sys.prefix != sys.base_prefix
    if not in_venv or os.environ.get("VIRTUAL_ENV") == sys.prefix or not (venv_bin / "bodycam").exists():
        return "bodycam"
    return shlex.quote(show_path(venv_bin / "bodycam"))


def render(ev: Evidence, *, max_listed: int = 8) -> list[str]:
    """The evidence section of the run summary, one line per item."""
    q = lambda p: shlex.quote(show_path(p))  # noqa: E731
    lines = [f"evidence in {show_path(ev.data_dir)}:"]
    segs = ev.segments
    if segs:
        lines.append(f"  segments   {len(segs)} sealed in {show_path(segs[0].parent)}/ ({segs[0].stem} .. "
                     f"{segs[-1].stem}; each .mp4 with its signed .json manifest and .sig)")
        half = max_listed // 2
        shown = segs if len(segs) <= max_listed else (*segs[:half], None, *segs[-half:])
        for s in shown:
            if s is None:
                lines.append(f"             ... {len(segs) - max_listed} more ...")
            else:
                lines.append(f"             {show_path(s)}  {s.stat().st_size / 1e6:.2f} MB")
    else:
        lines.append(f"  segments   none on the device in {show_path(DataLayout(ev.data_dir).segments)}/")
    acknowledged = receipts(ev.data_dir)
    if acknowledged:
        lines.append(f"  offloaded  {len(acknowledged)} segment(s) acknowledged by the backend; its signed "
                     f"receipts are in {show_path(acknowledged[0].parent)}/")
    for p in ev.open_segments:
        lines.append(f"  open       {show_path(p)} (not sealed: the daemon or 'bodycam recover' seals it)")
    lines.append(f"  audit log  {show_path(ev.audit_log) if ev.audit_log else '(none yet)'}")
    if ev.public_key:
        lines.append(f"  device key {show_path(ev.public_key)} "
                     "(public half; the private key never leaves the device)")
    lines.append(f"  verify     {bodycam_command()} verify {q(ev.data_dir)}")
    if segs and ev.public_key:
        s = segs[-1]
        lines.append(f"  by hand    openssl dgst -sha256 -verify {q(ev.public_key)} "
                     f"-signature {q(ev.signature(s))} {q(ev.manifest(s))}")
        lines.append(f"             sha256sum {q(s)}   # equals media.sha256 in {show_path(ev.manifest(s))}")
    return lines
