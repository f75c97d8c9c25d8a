"""The review pages, served by `bodycam backend serve` itself (docs/review.md).

One view module per resource (signin, recordings, audit), Jinja2 templates and plain JavaScript in
``static/`` with no build step and nothing fetched from elsewhere. Every page and every byte of evidence
needs a signed-in session; what a person may see is decided by ``bodycam_backend.permissions``.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from . import audit, cases, devices, people, recordings, retention, shares, signin
from .headers import SecurityHeaders

STATIC = Path(__file__).parent / "static"

__all__ = ["SecurityHeaders", "routes"]


def routes() -> list[BaseRoute]:
    return [
        Route("/", signin.home),
        Route("/login", signin.login, methods=["GET", "POST"]),
        Route("/logout", signin.logout, methods=["POST"]),
        Route("/recordings", recordings.listing),
        Route("/agency-ca.pem", recordings.agency_ca),
        Route("/recordings/{recording_id}", recordings.detail),
        Route("/recordings/{recording_id}/integrity", recordings.integrity),
        Route("/recordings/{recording_id}/integrity/recheck", recordings.recheck, methods=["POST"]),
        Route("/recordings/{recording_id}/thumbnail.jpg", recordings.thumbnail),
        Route("/recordings/{recording_id}/certificates/{key_id}", recordings.certificate),
        Route("/recordings/{recording_id}/segments/{sequence:int}/thumbnail.jpg", recordings.thumbnail),
        Route("/recordings/{recording_id}/segments/{sequence:int}/{part}", recordings.segment_part),
        Route("/recordings/{recording_id}/audit", audit.recording_audit),
        Route("/recordings/{recording_id}/export.zip", recordings.export_zip),
        Route("/recordings/{recording_id}/shares", shares.create, methods=["POST"]),
        Route("/recordings/{recording_id}/categories", retention.categorise, methods=["POST"]),
        Route("/recordings/{recording_id}/retention", retention.extend, methods=["POST"]),
        Route("/recordings/{recording_id}/cases", retention.add_case, methods=["POST"]),
        Route("/recordings/{recording_id}/cases/{case_id}/close", retention.close_case, methods=["POST"]),
        Route("/cases/{case_id}", cases.detail),
        Route("/cases/{case_id}/export.zip", cases.export_zip),
        Route("/recordings/{recording_id}/notes", retention.add_note, methods=["POST"]),
        Route("/cases/{case_id}/shares", shares.create, methods=["POST"]),
        Route("/shares/{public_id}/revoke", shares.revoke, methods=["POST"]),
        Route("/s/{token}", shares.landing),
        Route("/s/{token}/r/{recording_id}", shares.view),
        Route("/s/{token}/r/{recording_id}/integrity", shares.integrity),
        Route("/s/{token}/r/{recording_id}/certificates/{key_id}", shares.certificate),
        Route("/s/{token}/r/{recording_id}/segments/{sequence:int}/{part}", shares.part),
        Route("/devices", devices.listing),
        Route("/devices/{serial}/revoke", devices.revoke, methods=["GET", "POST"]),
        Route("/audit", audit.global_audit),
        Route("/people", people.listing),
        Route("/people", people.create, methods=["POST"]),
        Route("/people/{name}/assign", people.assign, methods=["POST"]),
        Route("/people/{name}/{action}", people.set_disabled, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
