"""Ceiling endpoints for the benchmark, served with the same gunicorn settings as the FHIR server.

* ``GET /trivial``: a constant JSON body from Flask: the most any Flask endpoint can do here.
* ``POST /validate``: fhir.resources R4B validation of the posted Bundle and nothing else.
"""

from __future__ import annotations

from fhir.resources.R4B.bundle import Bundle
from flask import Flask, Response, request

app = Flask(__name__)
_BODY = b'{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}'


@app.get("/trivial")
def trivial() -> Response:
    return Response(_BODY, content_type="application/fhir+json")


@app.post("/validate")
def validate() -> Response:
    Bundle.model_validate_json(request.get_data())
    return Response(_BODY, status=200, content_type="application/fhir+json")
