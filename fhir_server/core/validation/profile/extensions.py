"""Every extension against its definition: context, value type, its own cardinalities and bindings;
an unknown extension url is a warning, an unknown modifier extension an error. The walk enters only
the objects that hold extensions (``extension_scan.py``).
"""

from __future__ import annotations

from fhir_server.core.conformance.definitions import r4

from .cache import ProfileUnknown
from .context import _add, _Ctx, _list
from .sections import Sections
from .snapshot import SnapshotError


class ExtensionChecks(Sections):
    """Extensions found anywhere in a resource.

    A part of :class:`~.validator.ProfileValidator`, which mixes the parts together: the methods of
    the other parts are reached through ``self``.
    """

    def _check_extensions(
        self, obj: dict, type_name: str, path: str, full: str, expr: str, ctx: _Ctx, holders: set[int] | None = None
    ) -> None:
        """Find every extension in ``obj`` (an element of ``type_name`` at ``path``) and check it.

        ``holders``: ids of the objects with an extension at or below them (``extension_scan.py``); the
        walk does not enter the others, where it would find nothing. None: the walk enters every object.
        """
        defs = r4()
        kids = defs.children(type_name, path) if defs.type(type_name) else {}
        for key, val in obj.items():
            if key in ("extension", "modifierExtension"):
                if isinstance(val, list):
                    for i, ext in enumerate(val):
                        if isinstance(ext, dict):
                            self._check_extension(ext, (path, full, type_name), f"{expr}.{key}[{i}]", ctx)
                continue
            if key.startswith("_"):
                name = key[1:]
                child = kids.get(name)
                host = (f"{path}.{name}", f"{full}.{name}", child.type_code if child else None)
                companions = val if isinstance(val, list) else [val]
                for i, holder in enumerate(companions):
                    if not isinstance(holder, dict):
                        continue
                    where = f"{expr}.{name}[{i}]" if isinstance(val, list) else f"{expr}.{name}"
                    for j, ext in enumerate(_list(holder.get("extension"))):
                        if isinstance(ext, dict):
                            self._check_extension(ext, host, f"{where}.extension[{j}]", ctx)
                continue
            child = kids.get(key)
            if child is None or key == "contained":
                continue
            items = val if isinstance(val, list) else [val]
            code = child.type_code
            for i, item in enumerate(items):
                if not isinstance(item, dict) or (holders is not None and id(item) not in holders):
                    continue
                where = f"{expr}.{key}[{i}]" if isinstance(val, list) else f"{expr}.{key}"
                if code == "Resource" or "resourceType" in item:
                    continue  # resources inside (Bundle entries, contained) are checked on their own
                if code in ("BackboneElement", "Element") or code is None:
                    sub = child.element.content_reference.lstrip("#") if child.element.content_reference else None
                    self._check_extensions(
                        item, type_name, sub or child.element.path, f"{full}.{key}", where, ctx, holders
                    )
                elif defs.type(code) is not None and not defs.is_primitive(code):
                    self._check_extensions(item, code, code, f"{full}.{key}", where, ctx, holders)

    def _check_extension(self, ext: dict, host: tuple[str, str, str | None], expr: str, ctx: _Ctx) -> None:
        url = ext.get("url")
        if not isinstance(url, str) or ":" not in url:
            return  # relative urls belong to a complex extension; a missing url is base validation's job
        sd = self._structure_definition(url)
        if sd is None:
            if expr.rsplit(".", 1)[-1].startswith("modifierExtension["):
                # an unknown modifier extension may change the meaning of the resource: it cannot be accepted
                _add(
                    ctx,
                    "error",
                    "extension",
                    expr,
                    "ext-unknown-modifier",
                    f"Modifier extension {url} is not known to this server, so the resource cannot be understood",
                    f"Modifikasjonsutvidelsen {url} er ukjent for serveren; ressursen kan ikke tolkes",
                )
                return
            _add(
                ctx,
                "warning",
                "extension",
                expr,
                "ext-unknown",
                f"Extension {url} is not known to this server; its content was not checked",
                f"Utvidelsen {url} er ukjent for serveren; innholdet er ikke kontrollert",
            )
            return
        if sd.get("type") != "Extension":
            _add(
                ctx,
                "error",
                "extension",
                expr,
                "ext-not-extension",
                f"{url} is a {sd.get('type')} profile, not an extension definition",
                f"{url} er ikke en utvidelsesdefinisjon",
            )
            return
        contexts = sd.get("context") or []
        if self.registry.suppressions.context_as_element(url):
            contexts = [dict(c, type="element") for c in contexts]
        if contexts and not any(_context_ok(c, host) for c in contexts):
            allowed = ", ".join(c.get("expression", "?") for c in contexts)
            _add(
                ctx,
                "error",
                "extension",
                expr,
                "ext-context",
                f"Extension {url} is not allowed on {host[1]} (allowed on: {allowed})",
                f"Utvidelsen {url} er ikke tillatt på {host[1]} (tillatt på: {allowed})",
            )
        try:
            cp = self.compiled(url)
        except (ProfileUnknown, SnapshotError):
            return
        previous = ctx.profile_url
        ctx.profile_url = url
        self._check_value(cp.root, ext, expr, ctx, "Extension")
        ctx.profile_url = previous
        for j, inner in enumerate(_list(ext.get("extension"))):
            if isinstance(inner, dict) and ":" in str(inner.get("url", "")):
                self._check_extension(inner, ("Extension", "Extension", "Extension"), f"{expr}.extension[{j}]", ctx)


def _context_ok(context: dict, host: tuple[str, str, str | None]) -> bool:
    kind = context.get("type")
    expression = context.get("expression", "")
    path, full, type_code = host
    if kind == "element":
        if expression in ("Element", "Base", "BackboneElement") or expression in (path, full, type_code):
            return True
        return bool(expression in ("Resource", "DomainResource") and r4().is_resource_type(type_code or ""))
    if kind == "extension":
        return type_code == "Extension"
    return True  # fhirpath contexts are not evaluated
