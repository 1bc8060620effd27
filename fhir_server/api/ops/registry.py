"""The operation registry: which ``$name`` operations are served where, their dispatch and parameters.

An operation family module (``validate``, ``pathways``, ``referrals``, ``terminology``) describes its
handlers with :func:`operation`; nothing registers itself on import. The app factory collects the
families it names into an :class:`OperationRegistry`, which dispatches the ``$`` routes, lists what
the CapabilityStatement declares (only what is really served) and tells the security gate the
scopes each operation needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType

from flask import Blueprint, Flask, Response, current_app, request

from fhir_server.api.formats import parse_body
from fhir_server.api.rest import server
from fhir_server.core.capabilities import OperationInfo
from fhir_server.core.interactions import check_id, check_type
from fhir_server.core.issues import FhirError
from fhir_server.security.policy import Need

bp = Blueprint("operations", __name__)

BASE_DEFINITION = "http://hl7.org/fhir/OperationDefinition/"

_EXTENSION = "fhir_operations"


@dataclass
class OperationCall:
    """An operation request: where it was called, and its parameters (from the query and a Parameters body)."""

    name: str
    resource_type: str | None
    resource_id: str | None
    params: dict[str, list] = field(default_factory=dict)
    body: object = None

    def first(self, name: str, default: object = None) -> object:
        values = self.params.get(name)
        return values[0] if values else default

    def text(self, name: str) -> str | None:
        value = self.first(name)
        return value if isinstance(value, str) else None

    def boolean(self, name: str) -> bool | None:
        """A boolean parameter: ``true``/``false`` in the query, ``valueBoolean`` in a Parameters body;
        None when absent, 400 naming the parameter for anything else."""
        value = self.first(name)
        if value is None or isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise FhirError.single(400, "value", f"the parameter '{name}' must be true or false", name)


Handler = Callable[[OperationCall], Response]


@dataclass(frozen=True)
class Operation:
    """An operation handler and what it is: name and definition, where it applies, what it needs."""

    info: OperationInfo
    handler: Handler
    levels: tuple[str, ...]  # system | type | instance
    #: the handler reads the request body itself (e.g. non-FHIR XML)
    raw_body: bool = False
    #: the scopes a caller needs (any letter of each Need; an empty type means the URL's type)
    requires: tuple[Need, ...] = ()
    #: the HTTP methods it answers (a bulk export's status URL also takes DELETE: cancel)
    methods: tuple[str, ...] = ("GET", "POST")


def operation(
    name: str,
    definition: str,
    types: tuple[str, ...],
    levels: tuple[str, ...],
    *,
    requires: tuple[Need, ...],
    raw_body: bool = False,
    methods: tuple[str, ...] = ("GET", "POST"),
) -> Callable[[Handler], Operation]:
    """Describe a handler as an operation, with the scopes it needs (registered by the app, not here)."""

    def describe(handler: Handler) -> Operation:
        return Operation(
            OperationInfo(name, definition, types, "system" in levels), handler, levels, raw_body, requires, methods
        )

    return describe


class OperationRegistry:
    """The operations one application serves, by name."""

    def __init__(self, operations: Iterable[Operation]) -> None:
        self.by_name: dict[str, Operation] = {}
        for op in operations:
            if op.info.name in self.by_name:
                raise ValueError(f"the operation ${op.info.name} is described twice")
            self.by_name[op.info.name] = op

    @classmethod
    def collect(cls, *families: ModuleType) -> OperationRegistry:
        """The operations the named family modules describe, in the order named, then as defined."""
        return cls(op for family in families for op in vars(family).values() if isinstance(op, Operation))

    def declared(self) -> list[OperationInfo]:
        """What the CapabilityStatement declares."""
        return [op.info for op in self.by_name.values()]

    def needs(self) -> dict[str, tuple[Need, ...]]:
        """Operation name → the scopes it needs (for the security gate)."""
        return {name: op.requires for name, op in self.by_name.items()}

    def dispatch(self, name: str, rtype: str | None, rid: str | None) -> Response:
        """Call the operation ``$name`` at the level the URL names; 404 where it is not served."""
        level = "instance" if rid else "type" if rtype else "system"
        op = self.by_name.get(name)
        if op is None or level not in op.levels or (rtype and op.info.types and rtype not in op.info.types):
            where = "/".join(p for p in (rtype, rid) if p) or "the system level"
            raise FhirError.single(404, "not-supported", f"the operation ${name} is not supported on {where}")
        if request.method not in op.methods:
            raise FhirError.single(405, "not-supported", f"${name} does not take {request.method}")
        if rtype:
            check_type(rtype)
        if rid:
            check_id(rid)
        return op.handler(read_call(name, rtype, rid, raw_body=op.raw_body))

    def install(self, app: Flask) -> None:
        """Make this the registry the application's ``$`` routes and ``/metadata`` read."""
        app.extensions[_EXTENSION] = self


def operations() -> OperationRegistry:
    """The current application's operation registry."""
    return current_app.extensions[_EXTENSION]


# -- parameter parsing ------------------------------------------------------------------------


def _parameters_value(parameter: dict) -> object:
    if "resource" in parameter:
        return parameter["resource"]
    for key, value in parameter.items():
        if key.startswith("value"):
            return value
    return parameter.get("part")


def read_call(name: str, rtype: str | None, rid: str | None, *, raw_body: bool = False) -> OperationCall:
    call = OperationCall(name, rtype, rid)
    for key, value in request.args.items(multi=True):
        if not key.startswith("_"):
            call.params.setdefault(key, []).append(value)
    if request.method == "POST" and request.get_data() and not raw_body:
        body = parse_body(request, server().settings.max_body_bytes)
        call.body = body
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            for i, parameter in enumerate(body.get("parameter", [])):
                if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
                    raise FhirError.single(
                        400, "structure", "each parameter needs a name", f"Parameters.parameter[{i}]"
                    )
                call.params.setdefault(parameter["name"], []).append(_parameters_value(parameter))
    return call


# -- routes -----------------------------------------------------------------------------------


@bp.route("/$<name>", methods=["GET", "POST", "DELETE"])
def system_operation(name: str) -> Response:
    return operations().dispatch(name, None, None)


@bp.route("/<rtype>/$<name>", methods=["GET", "POST"])
def type_operation(rtype: str, name: str) -> Response:
    return operations().dispatch(name, rtype, None)


@bp.route("/<rtype>/<rid>/$<name>", methods=["GET", "POST"])
def instance_operation(rtype: str, rid: str, name: str) -> Response:
    return operations().dispatch(name, rtype, rid)
