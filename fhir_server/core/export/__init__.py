"""Bulk Data Access (hl7.fhir.uv.bulkdata 2.0): export jobs and their worker."""
