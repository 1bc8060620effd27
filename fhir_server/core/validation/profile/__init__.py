"""Profile validation: a resource checked against StructureDefinitions, from their snapshots.

``validator.py`` holds :class:`~.validator.ProfileValidator` and the ``$validate`` verdict API; its
checks live in ``elements.py``, ``slicing.py``, ``bindings.py``, ``references.py`` and
``extensions.py``, its caches in ``cache.py``. Profiles are compiled by ``model.py`` (invariants by
``fhirpath.py`` and ``fhirpath_shapes.py``) from the snapshots ``snapshot.py`` generates; ``plan.py``
and ``extension_scan.py`` say what the walk may skip.
"""
