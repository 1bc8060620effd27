"""``jsonio.copy_json`` (the copy normalise_referral and the write path make) is the copy
``copy.deepcopy`` makes, only faster."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

from fhir_server.core import jsonio
from fhir_server.domain.referral.mapping.fhir_aliases import normalise_referral

BUNDLE = Path(__file__).resolve().parents[2] / "data" / "referral-transaction.json"


def same_shape(a: object, b: object, seen: dict[int, int], seen_b: dict[int, int]) -> None:
    """Equal values, the same types, and the same sharing of dicts and lists (no container shared with the input)."""
    assert type(a) is type(b)
    if isinstance(a, dict | list):
        assert seen.setdefault(id(a), id(b)) == id(b)
        assert seen_b.setdefault(id(b), id(a)) == id(a)
        items = zip(a.items(), b.items(), strict=True) if isinstance(a, dict) else zip(a, b, strict=True)
        for x, y in items:
            same_shape(x, y, seen, seen_b)
    else:
        assert a == b or (a != a and b != b)


def test_the_copy_is_deepcopy_of_the_test_bundle() -> None:
    bundle = jsonio.loads(BUNDLE.read_bytes())
    fast, slow = jsonio.copy_json(bundle), copy.deepcopy(bundle)
    assert fast == slow == bundle
    same_shape(fast, slow, {}, {})
    assert json.dumps(fast, default=str) == json.dumps(slow, default=str)


def test_sharing_cycles_decimals_and_other_types_are_kept_as_deepcopy_keeps_them() -> None:
    shared = {"system": "urn:x", "value": "1"}
    odd = (1, [2])  # not JSON: deepcopy's business
    data: dict = {"a": [shared, shared], "b": shared, "d": Decimal("72.50"), "f": 0.5, "n": None, "t": True, "o": odd}
    data["self"] = data
    fast, slow = jsonio.copy_json(data), copy.deepcopy(data)
    assert fast["a"][0] is fast["a"][1] is fast["b"] and fast["a"][0] is not shared
    assert fast["self"] is fast
    assert fast["o"] == odd and fast["o"][1] is not odd[1]
    for key in ("d", "f", "n", "t"):
        assert fast[key] == slow[key] and type(fast[key]) is type(slow[key])
    assert str(fast["d"]) == "72.50"


def test_normalise_referral_never_mutates_its_input() -> None:
    bundle = jsonio.loads(BUNDLE.read_bytes())
    before = copy.deepcopy(bundle)
    out, _ = normalise_referral(bundle)
    out["entry"][0]["resource"]["identifier"][0]["value"] = "changed"
    out["entry"][0]["resource"].setdefault("meta", {})["profile"] = ["x"]
    assert bundle == before
