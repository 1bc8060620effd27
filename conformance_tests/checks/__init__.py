"""The checks, one module per area; importing this package registers them (run order: ``AREAS``)."""

from conformance_tests.checks import (  # noqa: F401  (imported for registration)
    bundles,
    capabilities,
    conditional,
    errors,
    referrals,
    regional,
    rest,
    search,
)
