#!/usr/bin/env python3
"""Print every PromQL expression of the Grafana dashboard, one per line.

    scripts/dashboard_queries.py [--raw] [--lint] [DASHBOARD.json]

Expressions come from every panel target (rows and collapsed rows included) and every
annotation query, in dashboard order, without duplicates. By default Grafana's interval
variables are replaced so each line runs as is against Prometheus' /api/v1/query:
$__rate_interval and $__interval become 5m and 1m, $__range 1h. --raw prints them untouched.

--lint checks the dashboard instead and prints problems (exit 1 if any): the `datasource`
variable of type prometheus exists, every panel and target uses ${datasource}, panel ids are
unique, every target has an expression and a unique refId within its panel, and no expression
uses a variable other than the interval ones.

Default dashboard: deploy/grafana/heartbeat.json.
"""

import argparse
import json
import re
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "heartbeat.json"

# Grafana's built-in interval variables and what they become for a plain Prometheus query.
SUBSTITUTIONS = {
    "$__rate_interval": "5m",
    "${__rate_interval}": "5m",
    "$__interval": "1m",
    "${__interval}": "1m",
    "$__range": "1h",
    "${__range}": "1h",
}
DATASOURCE_UID = "${datasource}"


def all_panels(panels):
    """Panels in order, descending into rows (a collapsed row keeps its panels inside)."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def expressions(dashboard):
    """(where, expr) for every PromQL expression, in dashboard order."""
    for panel in all_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f'panel {panel.get("id")} "{panel.get("title")}" {target.get("refId")}', target["expr"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield f'annotation "{annotation.get("name")}"', annotation["expr"]


def substitute(expr):
    for name, value in SUBSTITUTIONS.items():
        expr = expr.replace(name, value)
    return expr


def one_line(expr):
    return " ".join(expr.split())


def lint(dashboard):
    problems = []
    variables = dashboard.get("templating", {}).get("list", [])
    if not any(v.get("name") == "datasource" and v.get("type") == "datasource" and v.get("query") == "prometheus"
               for v in variables):
        problems.append('no variable "datasource" of type datasource with query "prometheus"')
    ids = {}
    for panel in all_panels(dashboard.get("panels", [])):
        title = panel.get("title")
        if panel.get("id") in ids:
            problems.append(f'panel id {panel.get("id")} used by "{ids[panel.get("id")]}" and "{title}"')
        ids[panel.get("id")] = title
        if "gridPos" not in panel:
            problems.append(f'panel "{title}": no gridPos')
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f'panel "{title}": datasource is not {DATASOURCE_UID}')
        if not panel.get("targets"):
            problems.append(f'panel "{title}": no targets')
        ref_ids = set()
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != DATASOURCE_UID:
                problems.append(f'panel "{title}" {target.get("refId")}: datasource is not {DATASOURCE_UID}')
            if not target.get("expr", "").strip():
                problems.append(f'panel "{title}" {target.get("refId")}: empty expression')
            if target.get("refId") in ref_ids:
                problems.append(f'panel "{title}": refId {target.get("refId")} repeated')
            ref_ids.add(target.get("refId"))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation and annotation.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f'annotation "{annotation.get("name")}": datasource is not {DATASOURCE_UID}')
    for where, expr in expressions(dashboard):
        left = re.findall(r"\$\{?\w+\}?", substitute(expr))
        if left:
            problems.append(f"{where}: variables other than the interval ones: {', '.join(left)}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dashboard", nargs="?", default=str(DEFAULT))
    parser.add_argument("--raw", action="store_true", help="keep Grafana's variables as they are")
    parser.add_argument("--lint", action="store_true", help="check the dashboard instead of printing")
    args = parser.parse_args()
    with open(args.dashboard, encoding="utf-8") as f:
        dashboard = json.load(f)
    if args.lint:
        problems = lint(dashboard)
        for problem in problems:
            print(f"{args.dashboard}: {problem}", file=sys.stderr)
        return 1 if problems else 0
    seen = set()
    for _, expr in expressions(dashboard):
        line = one_line(expr if args.raw else substitute(expr))
        if line not in seen:
            seen.add(line)
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
