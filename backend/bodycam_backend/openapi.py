"""The HTTP API's OpenAPI 3.1 document, served as JSON at ``GET /openapi.json``.

Written by hand in ``openapi.yaml`` beside this file rather than generated from the handlers: the
handlers are thin Starlette functions with no declared types to generate from, and a hand-written
document reads as the contract (docs/backend-api.md's twin). tests/test_backend_openapi.py keeps it
true: every route is in it and nothing else, it validates as OpenAPI 3.1, and a schemathesis fuzz
checks the real server's answers against it.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SOURCE = Path(__file__).with_name("openapi.yaml")


ONLY_WITH = "x-bodycam-only-with"  # an operation routed only with a config switch (e.g. the bench PUT)


@cache
def _source() -> dict[str, Any]:
    doc = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3.1"):
        raise ValueError(f"{SOURCE} is not an OpenAPI 3.1 document; restore it from git")
    return doc


@cache
def document(*, optional: bool = False) -> dict[str, Any]:
    """The document as a JSON-able dict: what this server routes. Operations marked ``x-bodycam-only-with``
    are left out unless ``optional`` (the server was started with their switch on)."""
    doc = copy.deepcopy(_source())
    for path, item in list(doc["paths"].items()):
        for method in [m for m, op in item.items() if isinstance(op, dict) and ONLY_WITH in op and not optional]:
            del item[method]
        if not any(isinstance(op, dict) and "responses" in op for op in item.values()):
            del doc["paths"][path]
    return doc
