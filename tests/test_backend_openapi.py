"""The OpenAPI 3.1 document (backend/bodycam_backend/openapi.yaml, served at GET /openapi.json) is true.

- every Starlette route of ``build_app`` is in it, and nothing else is;
- it validates as OpenAPI 3.1 (openapi-spec-validator);
- a bounded schemathesis fuzz against a real backend process: no operation answers 500, and every
  answer (status code, headers, JSON body, including the error body) matches the document. People's
  operations carry an admin bearer token from `bodycam backend token create`; device operations are
  signed with a real enrolled device key (RFC 9421) by an auth hook, over the exact bytes sent;
- known-good requests (a stored segment, its recording, its receipt) answer what the document says.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter, defaultdict
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
from backendkit import BackendProcess, Device, enrolled_device, people, record, segments_of
from bodycam_backend import openapi, web
from bodycam_backend.api import build_app
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from schemathesis import checks
from schemathesis.generation import GenerationMode
from starlette.routing import Route

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")  # tus bodies
SIGN_ME = "sign-me"  # the auth hook's placeholder; SigningSession turns it into a real signature
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
# Examples per operation and generation mode: the whole fuzz stays well under a minute on 2 cores.
# BODYCAM_FUZZ_EXAMPLES=200 for a longer hunt by hand (then the one-minute bound fails, nothing else).
EXAMPLES = int(os.environ.get("BODYCAM_FUZZ_EXAMPLES", "12"))


def test_the_document_validates_as_openapi_3_1() -> None:
    doc = openapi.document()
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)  # raises with the path of the first error


def routes_of_the_app(*, bench_put: bool) -> set[tuple[str, str]]:
    app = build_app(None, bench_put_route=bench_put)  # type: ignore[arg-type]
    pages = {r.path for r in web.routes()}  # the review pages (docs/review.md), not the JSON API
    out = set()
    for route in app.routes:
        if route.path in pages:
            continue
        assert isinstance(route, Route), route
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        methods = set(route.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")  # Starlette answers HEAD for every GET by itself
        out |= {(path, m.lower()) for m in methods}
    return out


@pytest.mark.parametrize("bench_put", [False, True])
def test_every_route_is_documented_and_nothing_else(bench_put: bool) -> None:
    doc = openapi.document(optional=bench_put)
    documented = {(p, m) for p, item in doc["paths"].items() for m in item if m in METHODS}
    routes = routes_of_the_app(bench_put=bench_put)
    assert routes - documented == set(), "routes missing from openapi.yaml"
    assert documented - routes == set(), "openapi.yaml describes operations the app does not route"
    validate(doc, cls=OpenAPIV31SpecValidator)


# --- against a real backend ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    b = BackendProcess(tmp_path_factory.mktemp("backend"), limits={"body_idle_seconds": 2})
    b.cli("init")
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def world(backend, tmp_path_factory) -> dict[str, Any]:
    """One enrolled camera with a stored segment, and an admin: so there is something to find."""
    rig = record(tmp_path_factory.mktemp("rig"), "BC-FUZZ-1", after=5)
    dev = enrolled_device(backend, rig)
    seg = segments_of(rig)[0]
    r = dev.upload(seg)
    assert r.status_code == 200, r.text
    upload = dev.create(seg, extra_meta={"sequence": "5000"})  # left open, for the fuzz to PATCH at
    assert upload.status_code == 201, upload.text
    return {"device": dev, "segment": seg, "admin": backend.admin_token(),
            "upload_id": upload.headers["Location"].rsplit("/", 1)[1]}


class SigningSession(requests.Session):
    """Signs a request marked by the auth hook, just before it is sent: over the bytes on the wire."""

    def __init__(self, device: Device) -> None:
        super().__init__()
        self.device = device

    def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:  # type: ignore[override]
        if request.headers.get("Signature-Input") == SIGN_ME:
            del request.headers["Signature-Input"]
            body = request.body.encode() if isinstance(request.body, str) else request.body
            fields = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in request.headers.items()}
            try:
                request.headers.update(self.device.headers(str(request.method), request.path_url, fields, body))
            except ValueError:
                pass  # a header no signature can cover (not ASCII): sent unsigned, refused 401
        return super().send(request, **kw)


def credentials_for(operation: Any) -> str | None:
    """Who calls an operation, from its security requirements in the document: a device, a person, nobody."""
    security = operation.definition.raw.get("security") or []
    names = {name for requirement in security for name in requirement}
    if "person" in names:
        return "person"
    if "deviceSignature" in names:
        return "device"
    return None


@pytest.fixture(scope="module")
def schema(backend, world):
    s = schemathesis.openapi.from_url(backend.url + "/openapi.json")
    s.config.update(base_url=backend.url, request_timeout=10)
    # Invalid requests may also get tus's own answers: 412 (no Tus-Resumable 1.0.0) and 460 (checksum).
    rejection = s.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "412", "413", "460"]
    admin = world["admin"]

    @s.auth(refresh_interval=None)  # chosen per operation: nothing to cache
    class Credentials:
        """People's operations: the admin's bearer token. Device operations: signed by SigningSession."""

        def get(self, case: Any, ctx: Any) -> str | None:
            return credentials_for(case.operation)

        def set(self, case: Any, data: str, ctx: Any) -> None:
            case.headers = case.headers or {}
            if data == "person":
                case.headers["Authorization"] = f"Bearer {admin}"
            else:
                case.headers["Signature-Input"] = SIGN_ME

    return s


class Fuzz:
    """Runs bounded Hypothesis examples of one operation, collecting answers and failures (not raising,
    so every operation is fuzzed and every failure is reported at once)."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self.failures: dict[str, str] = {}
        self.answers: dict[str, Counter[int]] = defaultdict(Counter)

    def run(self, operation: Any, mode: GenerationMode, strategy: Any, label: str = "") -> None:
        name = f"{operation.method.upper()} {operation.path}"
        key = f"{name} ({mode.value}{label})"

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def example(case: Any) -> None:
            response = case.call(session=self.session)
            self.answers[name][response.status_code] += 1
            try:
                case.validate_response(response, excluded_checks=[checks.positive_data_acceptance])
            except BaseException as e:  # noqa: BLE001 - collected, reported together at the end
                self.failures.setdefault(key, f"{key}: {str(e)[:1500]}\n{case.as_curl_command()}")

        try:
            example()
        except Unsatisfiable:
            pass  # nothing to make invalid (an operation without parameters or body): no negative cases


def test_fuzz_every_operation_against_a_real_backend(backend, world, schema) -> None:
    """Positive and negative cases for every operation, and again for the upload operations on a real
    upload of the device. Not checked: that schema-valid data is accepted (``positive_data_acceptance``):
    a schema cannot say "a CSR signed by its own key" or "an upload that exists", and the 4xx those get
    are documented and checked like every other answer."""
    fuzz = Fuzz(SigningSession(world["device"]))
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz.run(operation, mode, operation.as_strategy(generation_mode=mode, auth_storage=schema.auth))
        if "{upload_id}" in operation.path:
            fixed = {"upload_id": world["upload_id"]}
            strategy = operation.as_strategy(auth_storage=schema.auth, path_parameters=fixed)
            fuzz.run(operation, GenerationMode.POSITIVE, strategy, ", a real upload")
    elapsed = time.monotonic() - started
    assert not fuzz.failures, "\n\n".join(fuzz.failures.values())
    # the auth hook really authenticates: device and people operations get past authentication
    for op in ("GET /v1/device/status", "POST /v1/uploads", "PATCH /v1/uploads/{upload_id}", "GET /v1/devices",
               "GET /v1/audit"):
        assert set(fuzz.answers[op]) - {401}, (op, fuzz.answers[op])
    # how long it took is printed (-s), not asserted: on a shared machine that would test the load
    print({op: dict(c) for op, c in fuzz.answers.items()}, f"fuzz took {elapsed:.0f} s")
    assert requests.get(backend.url + "/healthz", timeout=5).ok
    log = "".join(p.read_text() for p in backend.root.glob("serve-*.log"))
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]


def test_known_good_requests_answer_what_the_document_says(backend, world, schema) -> None:
    dev, seg, admin = world["device"], world["segment"], world["admin"]
    staff = people(backend, admin)
    recording = staff.get(backend.url + "/v1/recordings", timeout=10).json()["recordings"][0]["recording_id"]
    calls = [
        ("/v1/devices", "GET", {}, {}),
        ("/v1/devices/{serial}", "GET", {"serial": dev.serial}, {}),
        ("/v1/recordings", "GET", {}, {"device": dev.serial}),
        ("/v1/recordings/{recording_id}", "GET", {"recording_id": recording}, {}),
        ("/v1/segments/{serial}/{sequence}", "GET", {"serial": dev.serial, "sequence": seg.sequence}, {}),
        *(("/v1/segments/{serial}/{sequence}/{part}", "GET",
           {"serial": dev.serial, "sequence": seg.sequence, "part": part}, {})
          for part in ("media", "manifest", "signature")),
        ("/v1/gaps", "GET", {}, {"device": dev.serial, "open": "1"}),
        ("/v1/flags", "GET", {}, {"device": dev.serial}),
        ("/v1/audit", "GET", {}, {"after": 0, "limit": 5}),
        ("/v1/audit/verify", "GET", {}, {}),
        ("/v1/device/status", "GET", {}, {}),
        ("/v1/device/segments/{sequence}", "GET", {"sequence": seg.sequence}, {}),
        ("/v1/device/session", "POST", {}, {}),
        ("/v1/uploads", "OPTIONS", {}, {}),
        ("/openapi.json", "GET", {}, {}),
    ]
    served = requests.get(backend.url + "/openapi.json", timeout=10)
    assert served.status_code == 200 and served.json() == openapi.document(), "served as written, bench PUT off"
    # finalize on creation answers 201 with the receipt, which the document can only describe in prose
    created = dev.create_whole(seg)
    assert created.status_code == 201 and created.headers["Content-Type"] == "application/json", created.text
    doc = openapi.document()
    jsonschema.validate(created.json(), {"$ref": "#/components/schemas/Receipt", "components": doc["components"]})
    session = SigningSession(dev)
    for path, method, path_parameters, query in calls:
        case = schema[path][method].Case(path_parameters=path_parameters, query=query)
        schema.auth.set(case, None)  # type: ignore[arg-type]
        response = case.call(session=session)
        assert response.status_code < 300, (path, response.status_code, response.text)
        case.validate_response(response)
