"""An outside Bulk Data client (plain ``requests``): kick off an export, poll as the server says, fetch
and check every NDJSON file, and report the export rate.

    python bench/bulk_export_client.py BASE_URL TOKEN [KICK-OFF PATH] [--out manifest.json]

The kick-off path defaults to ``$export``; e.g. ``Patient/$export?_type=Patient,Task``. Each line of
each file is parsed as the manifest's type with ``fhir.resources`` (R4B models). Prints one JSON line:
resources, files, seconds from kick-off to manifest, resources per second, and the counts per type.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import requests


def run(base: str, token: str, path: str) -> dict:
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
    started = time.monotonic()
    kick = session.get(f"{base.rstrip('/')}/{path}", headers={"Prefer": "respond-async"}, timeout=60)
    if kick.status_code != 202:
        raise SystemExit(f"kick-off answered {kick.status_code}: {kick.text[:500]}")
    status_url = kick.headers["Content-Location"]
    while True:
        poll = session.get(status_url, timeout=60)
        if poll.status_code == 200:
            manifest = poll.json()
            break
        if poll.status_code not in (202, 429):
            raise SystemExit(f"status answered {poll.status_code}: {poll.text[:500]}")
        time.sleep(float(poll.headers.get("Retry-After", "1")))
    elapsed = time.monotonic() - started
    from fhir.resources.R4B import get_fhir_model_class

    counts: dict[str, int] = {}
    ids: set[tuple[str, str]] = set()
    for output in manifest["output"]:
        body = session.get(output["url"], headers={"Accept": "application/fhir+ndjson"}, timeout=120)
        body.raise_for_status()
        lines = [line for line in body.text.splitlines() if line.strip()]
        if len(lines) != output["count"]:
            raise SystemExit(f"{output['url']}: {len(lines)} lines, the manifest says {output['count']}")
        model = get_fhir_model_class(output["type"])
        for line in lines:
            resource = json.loads(line)
            if resource["resourceType"] != output["type"]:
                raise SystemExit(f"{output['url']}: a {resource['resourceType']} in a {output['type']} file")
            model.model_validate(resource) if hasattr(model, "model_validate") else model.parse_obj(resource)
            key = (resource["resourceType"], resource["id"])
            if key in ids:
                raise SystemExit(f"{key} exported twice")
            ids.add(key)
        counts[output["type"]] = counts.get(output["type"], 0) + len(lines)
    total = sum(counts.values())
    return {
        "resources": total,
        "files": len(manifest["output"]),
        "seconds": round(elapsed, 2),
        "resources_per_second": round(total / elapsed, 1) if elapsed else None,
        "counts": counts,
        "transactionTime": manifest["transactionTime"],
        "requiresAccessToken": manifest["requiresAccessToken"],
        "ids": sorted(f"{t}/{i}" for t, i in ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("token")
    parser.add_argument("path", nargs="?", default="$export")
    parser.add_argument("--out", help="write the full result (with every exported id) here")
    args = parser.parse_args()
    result = run(args.base, args.token, args.path)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump(result, out)
    print(json.dumps({k: v for k, v in result.items() if k != "ids"}), file=sys.stdout)


if __name__ == "__main__":
    main()
