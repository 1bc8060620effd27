"""Base validation: the FHIR R4 core rules every stored resource must meet, without profiles.

``walk.py`` walks the JSON with the R4 definitions (``schema.py``), per property the plan of
``walk_plan.py``: strict primitives (``primitives.py``, ``primitive_quick.py``), required bindings
(``bindings.py``), reference targets (``references.py``), core invariants (``invariants.py``);
``structure.py`` adds fhir.resources R4B ``model_validate``. ``validate_resource`` in the package
above runs both.
"""
