"""The instances serving, and when each last said it was alive: an instance that stops saying so (it was
killed, its host died) is found dead within ``[admission] instance_timeout_seconds``, and its admission
slots and upload leases are freed then, not after the much longer per-upload timeouts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from bodycam_backend.data.migrations import ddl

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATEMENTS = [
    "CREATE TABLE IF NOT EXISTS instances( instance TEXT PRIMARY KEY, started_ns BIGINT NOT NULL, "
    "last_seen_ns BIGINT NOT NULL)",
]


def upgrade() -> None:
    ddl.apply(STATEMENTS)


def downgrade() -> None:
    ddl.never_downgrade()
