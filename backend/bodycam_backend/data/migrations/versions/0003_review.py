"""The review pages (docs/review.md): people's passwords, sessions, failed sign-ins and camera
assignments; the recordings index; categories, retention promises, cases, notes and retention
deletions; view-only share links. Indexes on ``segments(stored_ns)`` and ``flags(serial, sequence)`` for
the index's catch-up and the list's flag filter.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from bodycam_backend.data.migrations import ddl

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = [
    # people: passwords, sessions (only SHA-256 of the cookie), failed sign-ins, who wears which camera when
    'CREATE TABLE IF NOT EXISTS person_passwords( name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, '
    'updated_ns BIGINT NOT NULL)',
    'CREATE TABLE IF NOT EXISTS web_sessions( id_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, '
    'csrf TEXT NOT NULL, created_ns BIGINT NOT NULL, last_ns BIGINT NOT NULL, expires_ns BIGINT NOT NULL, '
    'address TEXT NOT NULL)',
    'CREATE INDEX IF NOT EXISTS web_sessions_name ON web_sessions(name)',
    'CREATE TABLE IF NOT EXISTS login_failures(subject TEXT NOT NULL, t_ns BIGINT NOT NULL)',
    'CREATE INDEX IF NOT EXISTS login_failures_subject ON login_failures(subject, t_ns)',
    'CREATE TABLE IF NOT EXISTS device_assignments( serial TEXT NOT NULL, name TEXT NOT NULL, '
    'from_ns BIGINT NOT NULL, until_ns BIGINT, PRIMARY KEY(serial, from_ns))',
    'CREATE INDEX IF NOT EXISTS device_assignments_name ON device_assignments(name)',
    # the recordings index (bodycam_backend.review.index keeps it up to date from segments)
    'CREATE TABLE IF NOT EXISTS review_segments( serial TEXT NOT NULL, sequence BIGINT NOT NULL, '
    'recording_id TEXT NOT NULL, stored_ns BIGINT NOT NULL, markers INTEGER NOT NULL, '
    'recovered INTEGER NOT NULL, PRIMARY KEY(serial, sequence))',
    'CREATE INDEX IF NOT EXISTS review_segments_stored ON review_segments(stored_ns)',
    'CREATE TABLE IF NOT EXISTS review_recordings( recording_id TEXT PRIMARY KEY, serial TEXT NOT NULL, '
    'first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, segments INTEGER NOT NULL, first_utc_ns BIGINT, '
    'last_utc_ns BIGINT, bytes BIGINT NOT NULL, markers INTEGER NOT NULL, recovered INTEGER NOT NULL)',
    'CREATE INDEX IF NOT EXISTS review_recordings_time ON review_recordings(first_utc_ns, recording_id)',
    'CREATE INDEX IF NOT EXISTS review_recordings_serial ON review_recordings(serial, first_utc_ns)',
    'CREATE INDEX IF NOT EXISTS review_recordings_seq ON review_recordings(serial, first_seq)',
    'CREATE INDEX IF NOT EXISTS review_segments_stored_at ON segments(stored_ns)',
    'CREATE INDEX IF NOT EXISTS flags_segment ON flags(serial, sequence)',
    # categories and retention; the Uncategorised default of 31 days
    'CREATE TABLE IF NOT EXISTS categories( name TEXT PRIMARY KEY, retention_days INTEGER NOT NULL, '
    'created_by TEXT NOT NULL, created_ns BIGINT NOT NULL)',
    "INSERT INTO categories(name, retention_days, created_by, created_ns) VALUES('Uncategorised', 31, "
    "'system', 0) ON CONFLICT(name) DO NOTHING",
    'CREATE TABLE IF NOT EXISTS recording_categories( recording_id TEXT NOT NULL, category TEXT NOT NULL, '
    'set_by TEXT NOT NULL, set_ns BIGINT NOT NULL, PRIMARY KEY(recording_id, category))',
    'CREATE INDEX IF NOT EXISTS recording_categories_category ON recording_categories(category)',
    'CREATE TABLE IF NOT EXISTS retention_promises( recording_id TEXT PRIMARY KEY, '
    'keep_until_ns BIGINT NOT NULL, set_by TEXT NOT NULL, set_ns BIGINT NOT NULL)',
    'CREATE TABLE IF NOT EXISTS cases( id TEXT PRIMARY KEY, title TEXT NOT NULL, open INTEGER NOT NULL, '
    'created_by TEXT NOT NULL, created_ns BIGINT NOT NULL, closed_ns BIGINT)',
    'CREATE TABLE IF NOT EXISTS case_recordings( case_id TEXT NOT NULL, recording_id TEXT NOT NULL, '
    'added_by TEXT NOT NULL, added_ns BIGINT NOT NULL, PRIMARY KEY(case_id, recording_id))',
    'CREATE INDEX IF NOT EXISTS case_recordings_recording ON case_recordings(recording_id)',
    'CREATE TABLE IF NOT EXISTS notes( recording_id TEXT NOT NULL, author TEXT NOT NULL, '
    'created_ns BIGINT NOT NULL, text TEXT NOT NULL, PRIMARY KEY(recording_id, author, created_ns))',
    'CREATE TABLE IF NOT EXISTS retention_deletions( recording_id TEXT PRIMARY KEY, '
    'deleted_ns BIGINT NOT NULL, keep_until_ns BIGINT NOT NULL, by TEXT NOT NULL)',
    # view-only share links
    "CREATE TABLE IF NOT EXISTS shares( public_id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, "
    "recording_id TEXT, case_id TEXT, created_by TEXT NOT NULL, created_ns BIGINT NOT NULL, "
    "expires_ns BIGINT NOT NULL, revoked_ns BIGINT, revoked_by TEXT, note TEXT NOT NULL)",
    'CREATE INDEX IF NOT EXISTS shares_recording ON shares(recording_id)',
    'CREATE INDEX IF NOT EXISTS shares_case ON shares(case_id)',
]


def upgrade() -> None:
    ddl.apply(STATEMENTS)


def downgrade() -> None:
    ddl.never_downgrade()
