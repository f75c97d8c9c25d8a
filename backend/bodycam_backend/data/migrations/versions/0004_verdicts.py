"""Each segment's server-side integrity verdict, cached so a recording's panel re-verifies only what
changed (bodycam_backend.verdicts): keyed by the pinned store versions and the index's content hashes,
with the store's cheap stamp of the objects (size, mtime, inode on a directory; the version on S3).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from bodycam_backend.data.migrations import ddl

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATEMENTS = [
    "CREATE TABLE IF NOT EXISTS segment_verdicts( serial TEXT NOT NULL, sequence BIGINT NOT NULL, "
    "versions TEXT NOT NULL, content TEXT NOT NULL, stamp TEXT NOT NULL, ok INTEGER NOT NULL, "
    "verdict TEXT NOT NULL, checked_ns BIGINT NOT NULL, PRIMARY KEY(serial, sequence))",
]


def upgrade() -> None:
    ddl.apply(STATEMENTS)


def downgrade() -> None:
    ddl.never_downgrade()
