"""Shared state out of process memory, so any instance serves any request: replay nonces, upload
leases, admission slots and settings (the device-session secret).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from bodycam_backend.data.migrations import ddl

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = [
    # signature nonces seen, kept until their signature could no longer pass the skew check
    "CREATE TABLE IF NOT EXISTS nonces(nonce TEXT PRIMARY KEY, expires_ns BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces(expires_ns)",
    # the PATCH writing an upload (whoever holds an unexpired lease), on any instance
    "ALTER TABLE uploads ADD COLUMN lease_owner TEXT",
    "ALTER TABLE uploads ADD COLUMN lease_expires_ns BIGINT",
    # uploads admitted fleet-wide, and when each last made progress
    "CREATE TABLE IF NOT EXISTS admission_slots(upload_id TEXT PRIMARY KEY, instance TEXT NOT NULL, "
    "last_seen_ns BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS admission_slots_seen ON admission_slots(last_seen_ns)",
    # values made once and shared by every instance (e.g. the device-session secret)
    "CREATE TABLE IF NOT EXISTS settings(name TEXT PRIMARY KEY, value TEXT NOT NULL, created_ns BIGINT NOT NULL)",
]


def upgrade() -> None:
    ddl.apply(STATEMENTS)


def downgrade() -> None:
    ddl.never_downgrade()
