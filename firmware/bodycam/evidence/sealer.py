"""Turns a finished segment file into evidence: manifest, signature, rename, chain head.

Order matters for crash safety: manifest and signature are written (atomically) first, and the
rename of the media from ``.mp4.partial`` to ``.mp4`` is the commit point. Until that rename the
segment is still "open" and recovery re-derives everything; after it, nothing touches the files.
"""

from __future__ import annotations

import os

from ..storage.durable import atomic_write, fsync_dir
from .chain import ChainState
from .manifest import SegmentFacts, SegmentPaths, render
from .signer import Signer

READ_ONLY = 0o444


class Sealer:
    def __init__(self, *, signer: Signer, chain: ChainState) -> None:
        self.signer = signer
        self.chain = chain

    def seal(self, paths: SegmentPaths, facts: SegmentFacts, *, media_sha256: str, media_size: int) -> bytes:
        manifest = render(facts, previous_manifest_sha256=self.chain.previous_hash(),
                          media_name=paths.media.name, media_sha256=media_sha256, media_size=media_size)
        signature = self.signer.sign(manifest)
        atomic_write(paths.manifest, manifest, mode=READ_ONLY, sync_dir=False)
        atomic_write(paths.signature, signature, mode=READ_ONLY, sync_dir=False)
        os.chmod(paths.partial, READ_ONLY)
        os.rename(paths.partial, paths.media)
        fsync_dir(paths.directory)
        self.chain.sealed(facts.sequence, manifest)
        paths.journal.unlink(missing_ok=True)
        return manifest
