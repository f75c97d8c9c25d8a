"""Flashing: the safety refusals against fake /sys and /proc trees, and a real write + read-back onto an
image file standing in for an SD card (through the library, the CLI and scripts/flash)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest
from bodycam import cli
from bodycam.image import flash as flashmod
from bodycam.image.flash import SysProbe, check, inspect
from bodycam.image.progress import Progress
from bodycam.image.tools import ImageError

REPO = Path(__file__).resolve().parents[1]
GiB = 1 << 30


class FakeMachine:
    """A laptop with an internal disk sda (root on sda2) and a USB card reader sdb (or an SD slot)."""

    def __init__(self, root: Path) -> None:
        self.sys, self.proc = root / "sys", root / "proc"
        self.nodes: dict[str, tuple[int, int]] = {}
        self.disk("sda", 8, 0, size=512 * GiB, removable=False, model=("ATA", "Samsung SSD 870"), parts=2)
        self.disk("sdb", 8, 16, size=32 * GiB, removable=True, model=("Generic", "STORAGE DEVICE"), parts=1)
        self.mountinfo = [
            "22 1 8:2 / / rw,relatime - ext4 /dev/sda2 rw",
            "25 22 0:23 / /proc rw - proc proc rw",
        ]
        self.swaps = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority"]
        self.flush()

    def disk(
        self,
        name: str,
        major: int,
        minor: int,
        *,
        size: int,
        removable: bool,
        model: tuple[str, str],
        parts: int,
        sd: bool = False,
    ) -> None:
        d = self.sys / "block" / name
        (d / "device").mkdir(parents=True)
        (d / "holders").mkdir()
        (d / "size").write_text(f"{size // 512}\n")
        (d / "removable").write_text("1\n" if removable else "0\n")
        (d / "dev").write_text(f"{major}:{minor}\n")
        (d / "device" / "vendor").write_text(model[0])
        (d / "device" / "model").write_text(model[1])
        if sd:
            (d / "device" / "type").write_text("SD\n")
        self._link(major, minor, d)
        self.nodes[f"/dev/{name}"] = (major, minor)
        for n in range(1, parts + 1):
            pname = f"{name}p{n}" if name[-1].isdigit() else f"{name}{n}"
            p = d / pname
            (p / "holders").mkdir(parents=True)
            (p / "partition").write_text(f"{n}\n")
            (p / "dev").write_text(f"{major}:{minor + n}\n")
            self._link(major, minor + n, p)
            self.nodes[f"/dev/{pname}"] = (major, minor + n)

    def _link(self, major: int, minor: int, target: Path) -> None:
        link = self.sys / "dev" / "block" / f"{major}:{minor}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    def flush(self) -> None:
        (self.proc / "self").mkdir(parents=True, exist_ok=True)
        (self.proc / "self" / "mountinfo").write_text("\n".join(self.mountinfo) + "\n")
        (self.proc / "swaps").write_text("\n".join(self.swaps) + "\n")

    def stat(self, path: Path) -> os.stat_result:
        if str(path) in self.nodes:
            major, minor = self.nodes[str(path)]
            return types.SimpleNamespace(
                st_mode=stat.S_IFBLK | 0o660, st_rdev=os.makedev(major, minor), st_size=0
            )  # type: ignore[return-value]
        return os.stat(path)

    def probe(self) -> SysProbe:
        self.flush()
        return SysProbe(sys_root=self.sys, proc_root=self.proc, stat=self.stat)


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    return FakeMachine(tmp_path / "machine")


def refusal(machine: FakeMachine, device: str, *, size: int = 1 * GiB, force: bool = False) -> str:
    with pytest.raises(ImageError) as e:
        check(inspect(Path(device), machine.probe()), size, force=force)
    return str(e.value)


def test_a_usb_card_reader_is_accepted(machine: FakeMachine) -> None:
    target = inspect(Path("/dev/sdb"), machine.probe())
    check(target, 1 * GiB, force=False)
    assert target.removable and target.size == 32 * GiB and target.model == "Generic STORAGE DEVICE"
    assert "Generic STORAGE DEVICE, 32.0 GiB, removable" in target.describe()


def test_refuses_the_disk_holding_root_even_with_force(machine: FakeMachine) -> None:
    assert "holds the running system's root" in refusal(machine, "/dev/sda", force=True)


def test_refuses_a_mounted_card_even_with_force(machine: FakeMachine) -> None:
    machine.mountinfo.append("40 22 8:17 / /media/tech/bootfs rw - vfat /dev/sdb1 rw")
    msg = refusal(machine, "/dev/sdb", force=True)
    assert "is mounted (/dev/sdb1)" in msg and "umount /dev/sdb1" in msg


def test_refuses_active_swap_and_holders(machine: FakeMachine) -> None:
    machine.swaps.append("/dev/sdb1 partition 1048572 0 -2")
    assert "active swap" in refusal(machine, "/dev/sdb", force=True)
    machine.swaps.pop()
    (machine.sys / "block/sdb/sdb1/holders/dm-0").mkdir()
    assert "in use by dm-0" in refusal(machine, "/dev/sdb", force=True)


def test_refuses_a_non_removable_disk_unless_forced(machine: FakeMachine) -> None:
    machine.disk("sdc", 8, 32, size=64 * GiB, removable=False, model=("ATA", "Spare"), parts=0)
    assert "not a removable disk" in refusal(machine, "/dev/sdc") and "--force" in refusal(
        machine, "/dev/sdc"
    )
    check(inspect(Path("/dev/sdc"), machine.probe()), GiB, force=True)


def test_a_built_in_sd_slot_counts_as_removable(machine: FakeMachine) -> None:
    machine.disk("mmcblk0", 179, 0, size=32 * GiB, removable=False, model=("", "SC32G"), parts=2, sd=True)
    target = inspect(Path("/dev/mmcblk0"), machine.probe())
    assert target.removable and not target.forceable and not target.problems
    assert "SC32G, 32.0 GiB, removable" in target.describe()
    check(target, GiB, force=False)  # accepted without --force


def test_refuses_a_partition(machine: FakeMachine) -> None:
    assert "is a partition; give the whole disk (/dev/sdb)" in refusal(machine, "/dev/sdb1")


def test_refuses_a_card_too_small_or_missing(machine: FakeMachine) -> None:
    assert "use a bigger card" in refusal(machine, "/dev/sdb", size=40 * GiB)
    (machine.sys / "block/sdb/size").write_text("0\n")
    assert "no medium" in refusal(machine, "/dev/sdb")


def test_refuses_a_missing_device_and_a_regular_file(machine: FakeMachine, tmp_path: Path) -> None:
    assert "no such device" in refusal(machine, "/dev/sdz")
    f = tmp_path / "card.img"
    f.write_bytes(b"x")
    assert "regular file" in refusal(machine, str(f)) and "--force" in refusal(machine, str(f))


def _image(tmp_path: Path, size: int = 12 << 20) -> Path:
    img = tmp_path / "bodycam.img"
    img.write_bytes(os.urandom(size // 2) + bytes(size // 2 - 3) + b"end")
    return img


def test_needs_confirmation(tmp_path: Path) -> None:
    img, card = _image(tmp_path), tmp_path / "card"
    card.write_bytes(b"\xff" * (16 << 20))
    with pytest.raises(ImageError, match="no terminal to ask on; pass --yes"):
        flashmod.flash(
            img, card, force=True, stdin=io.StringIO(""), out=io.StringIO(), progress=Progress(quiet=True)
        )

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = io.StringIO()
    with pytest.raises(ImageError, match="not confirmed"):
        flashmod.flash(img, card, force=True, stdin=Terminal("no\n"), out=out, progress=Progress(quiet=True))
    assert card.read_bytes() == b"\xff" * (16 << 20)
    assert "Everything on" in out.getvalue() and "will be erased" in out.getvalue()
    digest = flashmod.flash(
        img, card, force=True, stdin=Terminal("yes\n"), out=io.StringIO(), progress=Progress(quiet=True)
    )
    assert digest == hashlib.sha256(img.read_bytes()).hexdigest()


def test_writes_and_verifies_onto_an_image_file(tmp_path: Path) -> None:
    img, card = _image(tmp_path), tmp_path / "card"
    card.write_bytes(b"\xff" * (16 << 20))
    err = io.StringIO()
    digest = flashmod.flash(img, card, yes=True, force=True, out=err, progress=Progress(stream=err))
    data = card.read_bytes()
    assert data[: img.stat().st_size] == img.read_bytes()
    assert data[img.stat().st_size :] == b"\xff" * (4 << 20)  # the rest of the card is left alone
    assert digest == hashlib.sha256(img.read_bytes()).hexdigest()
    assert "writing: 100%" in err.getvalue() and "verifying: 100%" in err.getvalue()


def test_a_card_that_returns_other_data_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real write and the real read-back; in between the "card" keeps one bit wrong, as a faulty
    or counterfeit card does."""
    img, card = _image(tmp_path), tmp_path / "card"
    card.write_bytes(b"")
    real_write = flashmod.write

    def write_then_lose_a_bit(image: Path, target, progress) -> str:  # noqa: ANN001
        written = real_write(image, target, progress)
        with open(target.path, "r+b") as f:
            f.seek(5 << 20)
            byte = f.read(1)
            f.seek(5 << 20)
            f.write(bytes([byte[0] ^ 0x10]))
        return written

    monkeypatch.setattr(flashmod, "write", write_then_lose_a_bit)
    with pytest.raises(ImageError, match="verification FAILED"):
        flashmod.flash(img, card, yes=True, force=True, out=io.StringIO(), progress=Progress(quiet=True))
    monkeypatch.setattr(flashmod, "write", real_write)     # a sound card passes the same check
    assert flashmod.flash(img, card, yes=True, force=True, out=io.StringIO(),
                          progress=Progress(quiet=True)) == hashlib.sha256(img.read_bytes()).hexdigest()


def test_refuses_an_xz_image(tmp_path: Path) -> None:
    img = tmp_path / "x.img.xz"
    img.write_bytes(b"\xfd7zXZ\x00rest")
    with pytest.raises(ImageError, match="xz -dk"):
        flashmod.flash(img, tmp_path / "card", yes=True, force=True)


def test_cli_one_line_errors(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    img = _image(tmp_path, 1 << 20)
    assert cli.main(["image", "flash", str(img), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such device" in err
    card = tmp_path / "card"
    card.write_bytes(b"")
    assert cli.main(["image", "flash", str(img), str(card), "--yes"]) == 2
    assert "regular file" in capsys.readouterr().err
    assert cli.main(["image", "flash", str(img), str(card), "--yes", "--force"]) == 0
    assert card.read_bytes() == img.read_bytes()


def test_scripts_flash(tmp_path: Path) -> None:
    img = _image(tmp_path, 2 << 20)
    card = tmp_path / "card"
    card.write_bytes(b"")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(REPO / "scripts/flash"), str(img), str(card), "--yes", "--force"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "written and verified" in proc.stdout and card.read_bytes() == img.read_bytes()
