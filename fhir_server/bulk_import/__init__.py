"""Bulk import (``fhir-server import``, ``fhir-server load``): NDJSON and Bundle files, many resources per
database transaction, through the same interactions as every other door (validation, write policies,
access labels), resumable after a crash, with its refusals reported and the import audited."""
