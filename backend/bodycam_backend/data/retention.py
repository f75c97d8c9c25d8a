"""Categories, retention promises, cases, notes, and what the retention job deleted.

A recording's retention is a promise that only grows: ``keep_until_ns`` in ``retention_promises`` is
raised (never lowered) whenever a category is added or someone extends it; with no row, the
uncategorised default applies from the recording's end. Stored segments stay in ``segments`` (write-once)
after deletion; ``retention_deletions`` says which recordings' objects were removed, when and why.
"""

from __future__ import annotations

from typing import Any

UNCATEGORISED = "Uncategorised"



def categories(db: Any) -> list[Any]:
    return db.query("SELECT * FROM categories ORDER BY name")


def category(db: Any, name: str) -> Any:
    return db.one("SELECT * FROM categories WHERE name = ?", (name,))


def add_category(db: Any, name: str, days: int, by: str, t_ns: int) -> None:
    db.execute("INSERT INTO categories(name, retention_days, created_by, created_ns) VALUES(?,?,?,?)",
               (name, days, by, t_ns))


def categories_of(db: Any, recording_id: str) -> list[Any]:
    return db.query(
        "SELECT c.name, c.retention_days, rc.set_by, rc.set_ns FROM recording_categories rc"
        " JOIN categories c ON c.name = rc.category WHERE rc.recording_id = ? ORDER BY c.name",
        (recording_id,),
    )


def categorise(db: Any, recording_id: str, name: str, by: str, t_ns: int, keep_until_ns: int) -> None:
    """Add a category and raise the promise to ``keep_until_ns`` if that is later, in one transaction."""
    with db.transaction() as c:
        c.execute("INSERT INTO recording_categories(recording_id, category, set_by, set_ns) VALUES(?,?,?,?)"
                  " ON CONFLICT(recording_id, category) DO NOTHING", (recording_id, name, by, t_ns))
        _raise(c, recording_id, keep_until_ns, by, t_ns)


def promise(db: Any, recording_id: str) -> Any:
    return db.one("SELECT * FROM retention_promises WHERE recording_id = ?", (recording_id,))


def extend(db: Any, recording_id: str, keep_until_ns: int, by: str, t_ns: int) -> None:
    with db.transaction() as c:
        _raise(c, recording_id, keep_until_ns, by, t_ns)


def _raise(c: Any, recording_id: str, keep_until_ns: int, by: str, t_ns: int) -> None:
    c.execute(
        "INSERT INTO retention_promises(recording_id, keep_until_ns, set_by, set_ns) VALUES(?,?,?,?)"
        " ON CONFLICT(recording_id) DO UPDATE SET keep_until_ns = excluded.keep_until_ns,"
        " set_by = excluded.set_by, set_ns = excluded.set_ns"
        " WHERE excluded.keep_until_ns > retention_promises.keep_until_ns",
        (recording_id, keep_until_ns, by, t_ns),
    )


# --- cases ---


def add_case(db: Any, case_id: str, title: str, by: str, t_ns: int) -> None:
    db.execute("INSERT INTO cases(id, title, open, created_by, created_ns) VALUES(?,?,1,?,?)",
               (case_id, title, by, t_ns))


def case(db: Any, case_id: str) -> Any:
    return db.one("SELECT * FROM cases WHERE id = ?", (case_id,))


def cases(db: Any) -> list[Any]:
    return db.query("SELECT * FROM cases ORDER BY created_ns DESC")


def close_case(db: Any, case_id: str, t_ns: int) -> bool:
    return bool(db.execute("UPDATE cases SET open = 0, closed_ns = ? WHERE id = ? AND open = 1", (t_ns, case_id)))


def add_to_case(db: Any, case_id: str, recording_id: str, by: str, t_ns: int) -> None:
    db.execute("INSERT INTO case_recordings(case_id, recording_id, added_by, added_ns) VALUES(?,?,?,?)"
               " ON CONFLICT(case_id, recording_id) DO NOTHING", (case_id, recording_id, by, t_ns))


def cases_of(db: Any, recording_id: str) -> list[Any]:
    return db.query("SELECT c.* FROM case_recordings cr JOIN cases c ON c.id = cr.case_id"
                    " WHERE cr.recording_id = ? ORDER BY c.id", (recording_id,))


def recordings_of_case(db: Any, case_id: str) -> list[str]:
    return [r[0] for r in db.query("SELECT recording_id FROM case_recordings WHERE case_id = ? ORDER BY recording_id",
                                   (case_id,))]


# --- notes ---


def add_note(db: Any, recording_id: str, author: str, t_ns: int, text: str) -> None:
    db.execute("INSERT INTO notes(recording_id, author, created_ns, text) VALUES(?,?,?,?)",
               (recording_id, author, t_ns, text))


def notes_of(db: Any, recording_id: str) -> list[Any]:
    return db.query("SELECT * FROM notes WHERE recording_id = ? ORDER BY created_ns", (recording_id,))


# --- the retention job ---


def candidates(db: Any) -> list[Any]:
    """Every recording not yet deleted, with its end, its promise, its longest category and whether an
    open case holds it (the job decides; there are far fewer recordings than segments)."""
    return db.query(
        "SELECT r.recording_id, r.serial, r.first_seq, r.last_seq, r.last_utc_ns, p.keep_until_ns,"
        " (SELECT MAX(c.retention_days) FROM recording_categories rc JOIN categories c ON c.name = rc.category"
        "  WHERE rc.recording_id = r.recording_id) AS category_days,"
        " EXISTS (SELECT 1 FROM case_recordings cr JOIN cases k ON k.id = cr.case_id"
        "  WHERE cr.recording_id = r.recording_id AND k.open = 1) AS held"
        " FROM review_recordings r LEFT JOIN retention_promises p ON p.recording_id = r.recording_id"
        " WHERE NOT EXISTS (SELECT 1 FROM retention_deletions d WHERE d.recording_id = r.recording_id)"
        " ORDER BY r.last_utc_ns"
    )


def mark_deleted(db: Any, recording_id: str, t_ns: int, keep_until_ns: int, by: str) -> None:
    db.execute("INSERT INTO retention_deletions(recording_id, deleted_ns, keep_until_ns, by) VALUES(?,?,?,?)"
               " ON CONFLICT(recording_id) DO NOTHING", (recording_id, t_ns, keep_until_ns, by))


def deletion(db: Any, recording_id: str) -> Any:
    return db.one("SELECT * FROM retention_deletions WHERE recording_id = ?", (recording_id,))


def default_days(db: Any) -> int:
    row = db.one("SELECT retention_days FROM categories WHERE name = ?", (UNCATEGORISED,))
    return int(row[0]) if row else 31
