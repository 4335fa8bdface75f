#!/usr/bin/env python3
"""Renders a Helm chart offline, as `helm template` would, without a helm binary.

    scripts/helm-render.py CHART [--name RELEASE] [--namespace NS] [-f VALUES.yaml]... [--set K=V]...
    scripts/helm-render.py CHART --lint [-f VALUES.yaml]... [--set K=V]...

Values files and --set strings are merged in the order given, later ones winning, as helm
does. The manifests go to stdout as one multi-document YAML stream, in template order; a
template error goes to stderr with exit status 1. With --lint, the chart is linted instead (as
`helm lint --strict`): exit status 1 on any warning or error. Uses the helm-python-sdk package (Helm's Go
SDK through its C binding): `python3 -m pip install helm-python-sdk`.
"""

import argparse
import sys

try:
    import helm_python as helm
except ImportError:
    sys.exit("helm-python-sdk is not installed: python3 -m pip install helm-python-sdk")


def merge(base, overlay):
    """Deep-merges overlay into base (maps merge; anything else is replaced)."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart")
    parser.add_argument("--name", default="release-name")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--lint", action="store_true")
    parser.add_argument("-f", "--values", action="append", default=[], dest="layers",
                        type=lambda path: ("file", path))
    parser.add_argument("--set", action="append", default=[], dest="layers",
                        type=lambda text: ("set", text))
    args = parser.parse_args()

    values = {}
    for kind, item in args.layers:
        if kind == "file":
            with open(item, encoding="utf-8") as handle:
                merge(values, helm.values_from_yaml(handle.read()) or {})
        else:
            merge(values, helm.parse_set_string(item))

    if args.lint:
        report = helm.lint(args.chart, values=values, strict=True, namespace=args.namespace)
        # Helm's severities: 1 info, 2 warning, 3 error.
        findings = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
        for finding in findings + [{"error": e} for e in report.get("errors") or []]:
            print(f"{args.chart}: {finding.get('path', '')}: {finding['error']}", file=sys.stderr)
        sys.exit(1 if findings or report.get("errors") else 0)

    try:
        with helm.Chart.load(args.chart) as chart:
            manifests = chart.render(values, name=args.name, namespace=args.namespace,
                                     is_install=True)
    except helm.HelmError as error:
        sys.exit(f"{args.chart}: {error}")

    for path in sorted(manifests):
        text = manifests[path].strip()
        if not text or path.endswith("NOTES.txt") or not path.endswith((".yaml", ".yml")):
            continue
        print(f"---\n# Source: {path}\n{text}")


if __name__ == "__main__":
    main()
