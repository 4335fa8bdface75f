#!/usr/bin/env python3
"""Helper of side-by-side.sh: free local ports, and the entity-by-entity comparison of two Ports.

`free-ports N` prints N free TCP ports on 127.0.0.1, one a line.
`compare LEFT_URL RIGHT_URL` reads every blueprint and entity from both Ports (client id and
secret from PORT_CLIENT_ID / PORT_CLIENT_SECRET) and prints, blueprint by blueprint, how the
definitions differ, the entities only on one side and the field-by-field differences of the
others, then a summary line. Exit status 1 when anything differs (0 with --report-only).
`blueprints MAPPING URL...` creates, in each Port, every blueprint the mapping file names by a
jq string literal (`blueprint: '"x"'`), with one object property `raw`, as a user defines their
blueprints before installing an integration (needs PyYAML: run it with the integration's venv).
The other commands need the standard library only.
"""

import json
import os
import socket
import sys
import urllib.parse
import urllib.request

LEFT_NAME = "python"
RIGHT_NAME = "adoport"
# Bookkeeping Port writes itself: when and by whom, not what the integration mapped.
IGNORED_FIELDS = {"createdAt", "updatedAt", "createdBy", "updatedBy"}


def free_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Port:
    """A Port API reached with client credentials."""

    def __init__(self, base_url, client_id, client_secret):
        self.base = base_url.rstrip("/")
        answer = self._call(
            "POST",
            "/v1/auth/access_token",
            {"clientId": client_id, "clientSecret": client_secret},
        )
        self.token = answer["accessToken"]

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if getattr(self, "token", None):
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def blueprints(self):
        """identifier → the blueprint's definition."""
        return {b["identifier"]: b for b in self._call("GET", "/v1/blueprints")["blueprints"]}

    def create_blueprint(self, identifier):
        """Defines a blueprint with one object property, `raw`."""
        self._call(
            "POST",
            "/v1/blueprints",
            {
                "identifier": identifier,
                "title": identifier,
                "schema": {"properties": {"raw": {"type": "object", "title": "Raw"}}},
                "relations": {},
            },
        )

    def entities(self, blueprint):
        path = f"/v1/blueprints/{urllib.parse.quote(blueprint, safe='')}/entities"
        return {e["identifier"]: e for e in self._call("GET", path)["entities"]}


def flatten(value, prefix=""):
    """The leaves of an entity as `path → value`; lists stay whole (relations: sorted)."""
    if isinstance(value, dict) and value:
        leaves = {}
        for key, inner in value.items():
            if not prefix and key in IGNORED_FIELDS:
                continue
            leaves.update(flatten(inner, f"{prefix}.{key}" if prefix else key))
        return leaves
    if isinstance(value, list) and prefix.startswith("relations."):
        value = sorted(value, key=lambda v: json.dumps(v, sort_keys=True))
    return {prefix: value}


def same(left, right):
    """Equal, with numbers compared by value (1 == 1.0) at any depth."""
    numbers = (int, float)
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right if isinstance(left, bool) and isinstance(right, bool) else False
    if isinstance(left, numbers) and isinstance(right, numbers):
        return float(left) == float(right)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    return left == right


MISSING = object()


def show(value, limit=160):
    if value is MISSING:
        return "(absent)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def differences(a, b):
    """(path, left value, right value) of every leaf in which two objects differ."""
    a, b = flatten(a), flatten(b)
    return [
        (path, a.get(path, MISSING), b.get(path, MISSING))
        for path in sorted(a.keys() | b.keys())
        if path not in a or path not in b or not same(a[path], b[path])
    ]


def compare(left_url, right_url, report_only):
    client_id = os.environ.get("PORT_CLIENT_ID", "")
    client_secret = os.environ.get("PORT_CLIENT_SECRET", "")
    left = Port(left_url, client_id, client_secret)
    right = Port(right_url, client_id, client_secret)
    left_defs, right_defs = left.blueprints(), right.blueprints()
    left_bps, right_bps = set(left_defs), set(right_defs)
    totals = dict.fromkeys(
        ("compared", "only_left", "only_right", "differing", "fields", "definitions"), 0
    )
    for name, missing in ((LEFT_NAME, right_bps - left_bps), (RIGHT_NAME, left_bps - right_bps)):
        for blueprint in sorted(missing):
            other = RIGHT_NAME if name == LEFT_NAME else LEFT_NAME
            print(f"blueprint {blueprint}: only on {name}'s Port ({other} did not create it)")
    differing_blueprints = 0
    for blueprint in sorted(left_bps | right_bps):
        ours = left.entities(blueprint) if blueprint in left_bps else {}
        theirs = right.entities(blueprint) if blueprint in right_bps else {}
        lines = []
        if blueprint in left_bps and blueprint in right_bps:
            definition = differences(left_defs[blueprint], right_defs[blueprint])
            if definition:
                totals["definitions"] += 1
                lines.append("  the blueprint's definition:")
                for path, x, y in definition:
                    lines.append(f"    {path}: {LEFT_NAME} {show(x)} | {RIGHT_NAME} {show(y)}")
        only_left = sorted(ours.keys() - theirs.keys())
        only_right = sorted(theirs.keys() - ours.keys())
        for name, only, entities in ((LEFT_NAME, only_left, ours), (RIGHT_NAME, only_right, theirs)):
            if only:
                lines.append(f"  only on {name} ({len(only)}): {', '.join(only)}")
                # What the first few are, so that the reason can be seen without a Port.
                for identifier in only[:3]:
                    lines.append(f"    {identifier}: {show(entities[identifier], 600)}")
        for identifier in sorted(ours.keys() & theirs.keys()):
            diffs = differences(ours[identifier], theirs[identifier])
            if diffs:
                totals["differing"] += 1
                totals["fields"] += len(diffs)
                lines.append(f"  {identifier}:")
                for path, x, y in diffs:
                    lines.append(f"    {path}: {LEFT_NAME} {show(x)} | {RIGHT_NAME} {show(y)}")
        totals["compared"] += len(ours.keys() & theirs.keys())
        totals["only_left"] += len(only_left)
        totals["only_right"] += len(only_right)
        status = "differs" if lines else "same"
        print(
            f"blueprint {blueprint}: {len(ours)} on {LEFT_NAME}, {len(theirs)} on {RIGHT_NAME}"
            f" -- {status}"
        )
        for line in lines:
            print(line)
        differing_blueprints += bool(lines)
    blueprint_gap = len(left_bps ^ right_bps)
    print(
        f"Summary: {len(left_bps | right_bps)} blueprints ({differing_blueprints} differ,"
        f" {blueprint_gap} on one side only, {totals['definitions']} defined differently);"
        f" {totals['compared']} entities on both sides,"
        f" {totals['differing']} of them differing in {totals['fields']} fields;"
        f" {totals['only_left']} only on {LEFT_NAME}, {totals['only_right']} only on {RIGHT_NAME}"
    )
    differs = differing_blueprints or blueprint_gap
    return 0 if report_only or not differs else 1


def mapped_blueprints(mapping_path):
    """The blueprint identifiers a port-app-config file names by jq string literals."""
    import yaml  # the integration's venv has it; the other commands do not need it

    with open(mapping_path, encoding="utf-8") as f:
        mapping = yaml.safe_load(f)
    found = []
    for resource in mapping.get("resources", []):
        expression = resource["port"]["entity"]["mappings"]["blueprint"].strip()
        if len(expression) >= 2 and expression[0] == expression[-1] == '"':
            if expression[1:-1] not in found:
                found.append(expression[1:-1])
    return found


def create_blueprints(mapping_path, urls):
    client_id = os.environ.get("PORT_CLIENT_ID", "")
    client_secret = os.environ.get("PORT_CLIENT_SECRET", "")
    blueprints = mapped_blueprints(mapping_path)
    for url in urls:
        port = Port(url, client_id, client_secret)
        for identifier in blueprints:
            port.create_blueprint(identifier)
    print(f"{len(blueprints)} blueprints created in {len(urls)} Ports", file=sys.stderr)
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "free-ports":
        print("\n".join(str(p) for p in free_ports(int(argv[1]))))
        return 0
    if len(argv) >= 3 and argv[0] == "compare":
        return compare(argv[1], argv[2], "--report-only" in argv[3:])
    if len(argv) >= 3 and argv[0] == "blueprints":
        return create_blueprints(argv[1], argv[2:])
    print(
        "usage: side_by_side.py free-ports N | compare LEFT_URL RIGHT_URL [--report-only]"
        " | blueprints MAPPING URL...",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
