"""SD-card images for technicians: build, first boot, flash. No loop devices, no mounts.

The build is a pipeline of small stages, each a module that can be run and tested alone:

    base .img[.xz] --disk.read_layout--> boot FAT + root ext4 extracted as plain files
      boot FAT  --bootfs.rebuild (mtools + mkfs.vfat)-->   clean, reproducible FAT
      root ext4 --aptbase (debugfs, read only)--------->   the base's apt sources, keys, dpkg status
                --camerastack (aptrepo, debclosure)--->   python3-picamera2's missing .debs, verified
      root ext4 --rootfs.Ext4Editor (debugfs -w)-------->  overlay.plan(): units, config, wheels, .debs,
                                                           first-boot script, locked passwords, SSH
      data ext4 --datafs.make (mkfs.ext4 -d)----------->   empty evidence partition (noatime)
    disk.assemble (sfdisk on the output file) --> flashable .img

``wheels`` gathers the firmware and its aarch64 dependencies with ``pip download --platform``;
``firstboot`` is the stdlib-only script the image runs once on the camera (it never imports the
rest of bodycam: the venv it installs does not exist yet); ``flash`` writes an image to an SD card
with safety checks. Everything a user can get wrong ends as one ImageError line.
"""

from .tools import ImageError

__all__ = ["ImageError"]
