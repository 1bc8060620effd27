"""Helpers for testing the kit itself (a deliberately broken FHIR server)."""
