"""`bodycam image build|wheels|flash`: the technician's SD-card tools (scripts/build-image, scripts/flash).

Heavy imports happen inside run(), so `bodycam --help` on the camera stays quick.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import BodycamError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "image",
        help="build and flash SD-card images (technicians)",
        description="Build a flashable SD-card image from Raspberry Pi OS Lite, or flash one.",
    )
    isub = p.add_subparsers(dest="image_command", required=True, metavar="ACTION")

    b = isub.add_parser(
        "build",
        help="build a flashable .img from a Raspberry Pi OS Lite (arm64) image",
        description="Build a flashable .img. No loop devices, no mounts, no root needed.",
    )
    b.add_argument("base", type=Path, help="Raspberry Pi OS Lite arm64 image (.img or .img.xz)")
    b.add_argument(
        "--config",
        type=Path,
        required=True,
        help='device.toml for one camera, or a fleet config with serial = "auto"',
    )
    b.add_argument("--ca", type=Path, required=True, help="the agency CA certificate (PEM)")
    b.add_argument("-o", "--output", type=Path, required=True, help="the .img to write")
    b.add_argument(
        "--ssh-key", type=Path, help="OpenSSH public key: SSH is on, key login only (else SSH is off)"
    )
    b.add_argument(
        "--wheels",
        type=Path,
        metavar="DIR",
        help="wheel cache (default ~/.cache/bodycam/wheels); filled from PyPI unless --offline",
    )
    b.add_argument(
        "--debs",
        type=Path,
        metavar="DIR",
        help="cache of verified .debs and apt indexes for the camera stack (default ~/.cache/bodycam/debs)",
    )
    b.add_argument(
        "--offline", action="store_true", help="use only the wheel and .deb caches (re-verified), no network"
    )
    b.add_argument(
        "--no-camera-stack",
        dest="camera_stack",
        action="store_false",
        help="leave out python3-picamera2 and libcamera (simulation images; a camera needs them)",
    )
    b.add_argument(
        "--data-size",
        default="64M",
        help="evidence partition size in the image (default 64M; first boot grows it to the end of the card)",
    )
    b.add_argument("--root-grow", help="extra root partition space (default: 4x the wheels + 256M)")
    b.add_argument(
        "--epoch", type=int, help="timestamp for every file (default $SOURCE_DATE_EPOCH or 2025-01-01)"
    )
    b.add_argument("--source", type=Path, help="bodycam source checkout (default: the one this runs from)")
    b.add_argument("--keep-workdir", action="store_true", help=argparse.SUPPRESS)
    b.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    b.set_defaults(run=run_build)

    w = isub.add_parser("wheels", help="fill the wheel cache for offline builds (needs PyPI)",
                        description="Download the aarch64 wheels an image needs into the cache, so later "
                                    "builds can run with --offline.")
    w.add_argument("--wheels", type=Path, metavar="DIR", help="wheel cache (default ~/.cache/bodycam/wheels)")
    w.add_argument("--source", type=Path, help="bodycam source checkout")
    w.set_defaults(run=run_wheels)

    f = isub.add_parser(
        "flash",
        help="write an image to an SD card and verify it",
        description="Write IMAGE to DEVICE, then read it back and compare SHA-256.",
    )
    f.add_argument("image", type=Path, help="the .img to write")
    f.add_argument("device", type=Path, help="the whole SD card, e.g. /dev/sdb or /dev/mmcblk0")
    f.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    f.add_argument("--force", action="store_true", help="allow a non-removable disk or a regular file")
    f.set_defaults(run=run_flash)


def run_build(args: argparse.Namespace) -> int:
    try:
        from .image.build import BuildOptions, build
    except ModuleNotFoundError as e:
        if e.name != "debian":
            raise
        raise BodycamError("the image build needs python-debian: pip install 'bodycam[image]' "
                           "(scripts/build-image installs it)") from None
    from .image.progress import Progress
    from .image.tools import parse_size

    opts = BuildOptions(
        base=args.base,
        config=args.config,
        ca=args.ca,
        output=args.output,
        ssh_key=args.ssh_key,
        wheels=args.wheels,
        offline=args.offline,
        debs=args.debs,
        camera_stack=args.camera_stack,
        data_size=parse_size(args.data_size),
        root_grow=parse_size(args.root_grow) if args.root_grow else None,
        epoch=args.epoch,
        source=args.source,
        keep_workdir=args.keep_workdir,
    )
    result = build(opts, Progress(quiet=args.quiet))
    print(f"{result.output} sha256 {result.sha256}")
    return 0


def run_wheels(args: argparse.Namespace) -> int:
    from .image import wheels
    from .image.build import DEFAULT_EPOCH, default_cache, default_source
    from .image.progress import Progress
    from .image.tools import epoch_env

    source = (args.source or default_source()).resolve()
    cache = (args.wheels or default_cache()).resolve()
    progress = Progress()
    wheels.refresh(source, cache, epoch_env(DEFAULT_EPOCH), progress)
    print(f"{cache}: {len(list(cache.glob('*.whl')))} wheels")
    return 0


def run_flash(args: argparse.Namespace) -> int:
    from .image.flash import flash

    digest = flash(args.image, args.device, yes=args.yes, force=args.force)
    print(f"{args.device}: written and verified, sha256 {digest}")
    return 0
