"""Who may do what: the one place role checks live, for the JSON API and the review pages alike.

Roles (docs/review.md): an *admin* runs the service and may do everything; a *supervisor* and a
*reviewer* find, play and download any recording (a supervisor also sees devices and audit pages);
an *officer* sees only the recordings made on a camera while it was assigned to them
(``bodycam backend user assign``); an *auditor* sees recordings' details and the audit trail but
cannot play or download footage. Views call ``require``; nothing is decided in templates or JavaScript.
"""

from __future__ import annotations

from .errors import ApiError

ROLES = ("admin", "supervisor", "reviewer", "officer", "auditor")

# action -> roles allowed
RULES: dict[str, frozenset[str]] = {
    "recordings.list": frozenset(ROLES),
    "recording.view": frozenset(ROLES),
    "recording.play": frozenset({"admin", "supervisor", "reviewer", "officer"}),
    "recording.download": frozenset({"admin", "supervisor", "reviewer"}),
    "recording.audit": frozenset({"admin", "supervisor", "auditor"}),
    "devices.view": frozenset({"admin", "supervisor", "reviewer", "auditor"}),
    "devices.manage": frozenset({"admin"}),
    "evidence.status": frozenset({"admin", "supervisor", "reviewer", "auditor"}),  # gaps, flags
    "audit.view": frozenset({"admin", "auditor"}),
    "people.manage": frozenset({"admin"}),
    "share.manage": frozenset({"admin", "supervisor"}),  # view-only links for prosecutors (docs/review.md)
    "recording.categorise": frozenset({"admin", "supervisor", "reviewer"}),  # also cases and notes
    "retention.extend": frozenset({"admin", "supervisor"}),
}
# What the API's old two-role requirements mean now (docs/backend-api.md section 8).
API_ROLE = {"reviewer": "evidence.status", "admin": "devices.manage"}


def allowed(role: str, action: str) -> bool:
    return role in RULES[action]


def require(name: str, role: str, action: str) -> None:
    """Refuse (403, saying which roles may) unless ``role`` may do ``action``."""
    if not allowed(role, action):
        who = ", ".join(r for r in ROLES if r in RULES[action])
        raise ApiError(403, "forbidden", f"{name} ({role}) may not do this ({action}); it needs role {who}")


def own_only(role: str) -> bool:
    """Whether this role sees only the recordings assigned to the person (not everyone's)."""
    return role == "officer"


def may_see(name: str, role: str, officer: str | None) -> bool:
    """Whether a person may see a recording whose camera was assigned to ``officer`` when it was made."""
    return not own_only(role) or (officer is not None and officer == name)
