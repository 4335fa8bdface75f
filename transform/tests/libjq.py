"""Runs jq expressions through libjq, the way the Python integration evaluates its mappings.

The Python integration (azure-devops 0.12.2 on port-ocean 0.48.12) evaluates every mapping
expression with the PyPI package `jq` 1.12.0 (pinned in its poetry.lock), which embeds libjq.
tests/jq_differential.rs runs this script to compare jaq (with adoport's prelude) against it.

Input (stdin): one JSON object {"exprs": [...], "inputs": [...]}.
Output (stdout): one JSON array, an element per expression, in order:
  {"compile_error": "<message>"}              libjq refused the expression
  {"outcomes": [{"first": <value>} | {"none": true} | {"error": true}, ...]}
                                              one outcome per input: its first output, no
                                              output at all, or an error
The environment is emptied first: the Python integration hides it from jq.
"""

import json
import os
import sys

os.environ.clear()

import jq  # noqa: E402  (imported after the environment is cleared)
from importlib.metadata import version as installed_version  # noqa: E402

EXPECTED_VERSION = "1.12.0"


def main() -> None:
    version = installed_version("jq")
    if version != EXPECTED_VERSION:
        sys.exit(f"PyPI package jq {EXPECTED_VERSION} is the reference, found {version}")
    request = json.load(sys.stdin)
    inputs = request["inputs"]
    answers = []
    for expr in request["exprs"]:
        try:
            program = jq.compile(f"try ([limit(1; ({expr}))] | {{ok: .}}) catch {{err: true}}")
        except ValueError as error:
            answers.append({"compile_error": str(error)})
            continue
        outcomes = []
        for item in inputs:
            try:
                result = program.input_value(item).first()
            except ValueError:
                result = {"err": True}
            if "ok" in result:
                first = result["ok"]
                outcomes.append({"first": first[0]} if first else {"none": True})
            else:
                outcomes.append({"error": True})
        answers.append({"outcomes": outcomes})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
