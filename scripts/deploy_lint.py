#!/usr/bin/env python3
"""Consistency checks of the deployment files that no off-the-shelf validator makes.

    scripts/deploy_lint.py alerts       every alert: severity, summary, description, a runbook_url
                                        whose anchor is a heading of docs/operations.md, and a
                                        promtool unit test where it fires and one where it does not
    scripts/deploy_lint.py dockerfile   deploy/container/Dockerfile (parsed with BuildKit's parser,
                                        Python package `dockerfile`): the runtime stage installs
                                        exactly deploy/container/runtime-packages.txt, builds from
                                        swift:*-bookworm, runs debian:bookworm-slim as non-root
                                        with SWIFT_BACKTRACE and both executables in /usr/local/bin
    scripts/deploy_lint.py settings     every variable the deployment files set for the two
                                        executables is one README.md or docs/DESIGN.md documents
                                        in its configuration table (typos caught)
    scripts/deploy_lint.py compose FILE the output of `docker-compose config`: every bind-mounted
                                        file and every secret file exists
    scripts/deploy_lint.py runtime-packages
                                        print deploy/container/runtime-packages.txt's packages

Exit status 1 and one line per problem on stderr when a check fails.
"""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SEVERITIES = {"critical", "warning", "info"}


def fail(problems):
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def check_alerts():
    problems = []
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    tests = yaml.safe_load((DEPLOY / "prometheus" / "rules.test.yml").read_text())
    operations = (ROOT / "docs" / "operations.md").read_text()
    anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", operations, re.M)}

    alerts = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            alerts.add(name)
            severity = rule.get("labels", {}).get("severity")
            if severity not in SEVERITIES:
                problems.append(f"rules.yml: {name}: severity {severity!r} not one of {sorted(SEVERITIES)}")
            annotations = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not annotations.get(key):
                    problems.append(f"rules.yml: {name}: no {key} annotation")
            url = annotations.get("runbook_url", "")
            if not url.startswith("docs/operations.md#"):
                problems.append(f"rules.yml: {name}: runbook_url {url!r} is not docs/operations.md#<anchor>")
            elif url.split("#", 1)[1] not in anchors:
                problems.append(f"rules.yml: {name}: runbook_url anchor #{url.split('#', 1)[1]} is no heading of docs/operations.md")

    fires, quiet = set(), set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    for name in sorted(alerts):
        if name not in fires:
            problems.append(f"rules.test.yml: no test where {name} fires")
        if name not in quiet:
            problems.append(f"rules.test.yml: no test where {name} must not fire")
    for name in sorted((fires | quiet) - alerts):
        problems.append(f"rules.test.yml: tests an alert rules.yml does not define: {name}")
    return fail(problems)


def runtime_packages():
    lines = (DEPLOY / "container" / "runtime-packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def apt_install_packages(command):
    """Package names of every `apt-get install` in a shell command line."""
    packages = []
    for part in re.split(r"&&|;|\|\|", command):
        words = part.split()
        if "apt-get" in words and "install" in words:
            packages += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return packages


def check_dockerfile():
    import dockerfile  # BuildKit's Dockerfile parser (Python package `dockerfile`)

    problems = []
    path = DEPLOY / "container" / "Dockerfile"
    try:
        commands = dockerfile.parse_file(str(path))
    except dockerfile.GoParseError as error:
        return fail([f"{path}: {error}"])

    args = {}
    stages = []  # [(base image, [commands])]
    for command in commands:
        if command.cmd == "ARG" and not stages:
            for value in command.value:
                if "=" in value:
                    key, default = value.split("=", 1)
                    args[key] = default
        elif command.cmd == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), command.value[0])
            stages.append((image, []))
        elif stages:
            stages[-1][1].append(command)
    if len(stages) < 2:
        return fail([f"{path}: not a multi-stage build ({len(stages)} stage)"])

    build_image, build = stages[0]
    runtime_image, runtime = stages[-1]
    if not re.fullmatch(r"swift:6\.\d+(\.\d+)?-bookworm", build_image):
        problems.append(f"{path}: build stage image {build_image!r} is not swift:6.x-bookworm")
    if runtime_image != "debian:bookworm-slim":
        problems.append(f"{path}: runtime image {runtime_image!r} is not debian:bookworm-slim")

    build_runs = " && ".join(c.value[0] for c in build if c.cmd == "RUN")
    for product in ("heartbeat-ingest", "heartbeat-monitor"):
        if not re.search(rf"swift build -c release --static-swift-stdlib --product {product}\b", build_runs):
            problems.append(f"{path}: build stage does not run swift build -c release --static-swift-stdlib --product {product}")
    for package in ("libhiredis-dev", "libpq-dev", "librdkafka-dev", "pkg-config"):
        if package not in apt_install_packages(build_runs):
            problems.append(f"{path}: build stage does not install {package}")

    installed = []
    for command in runtime:
        if command.cmd == "RUN":
            installed += apt_install_packages(command.value[0])
    listed = runtime_packages()
    if sorted(installed) != sorted(listed):
        problems.append(
            f"{path}: runtime stage installs {sorted(installed)}, deploy/container/runtime-packages.txt lists {sorted(listed)}")

    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"{path}: runtime stage does not switch to a non-root USER")
    env = {}
    for command in runtime:
        if command.cmd == "ENV":
            values = list(command.value)
            env.update(zip(values[0::2], values[1::2]))
    backtrace = env.get("SWIFT_BACKTRACE", "")
    for setting in ("enable=yes", "sanitize=yes", "threads=all", "images=all", "interactive=no"):
        if setting not in backtrace.split(","):
            problems.append(f"{path}: SWIFT_BACKTRACE lacks {setting}")
    copied = " ".join(" ".join(c.value) for c in runtime if c.cmd == "COPY")
    for product in ("heartbeat-ingest", "heartbeat-monitor"):
        if product not in copied or "/usr/local/bin/" not in copied:
            problems.append(f"{path}: runtime stage does not copy {product} to /usr/local/bin/")
    return fail(problems)


def documented_settings():
    """Variable names in the configuration tables of README.md and docs/DESIGN.md."""
    names = set()
    for doc in (ROOT / "README.md", ROOT / "docs" / "DESIGN.md"):
        section = doc.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
        for line in section.splitlines():
            if line.startswith("| `"):
                names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def check_settings():
    documented = documented_settings()
    allowed = documented | {f"{n}_FILE" for n in documented} | {"SWIFT_BACKTRACE"}
    problems = []
    found = {}

    def note(where, name):
        found.setdefault(name, where)

    # systemd environment files and units
    for path in sorted((DEPLOY / "systemd").glob("*.env.example")):
        for line in path.read_text().splitlines():
            m = re.match(r"#?([A-Z][A-Z0-9_]+)=", line.strip())
            if m:
                note(path.name, m.group(1))
    for path in sorted((DEPLOY / "systemd").glob("*.service")):
        for m in re.finditer(r"^#?Environment=([A-Z][A-Z0-9_]+)=", path.read_text(), re.M):
            note(path.name, m.group(1))
    # Kubernetes: ConfigMaps and the containers' env
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc.get("kind") == "ConfigMap":
                for name in doc.get("data", {}):
                    note(path.name, name)
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                for item in container.get("env", []):
                    note(path.name, item["name"])
    # Compose: the heartbeat services (those running our image)
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        if "heartbeat" in str(service.get("command", "")):
            for key in service.get("environment", {}):
                note(f"compose.yaml {name}", key)

    for name, where in sorted(found.items()):
        if name not in allowed:
            problems.append(f"{where}: {name} is not a setting README.md or docs/DESIGN.md documents")
    if not found:
        problems.append("no settings found in the deployment files")
    return fail(problems)


def check_compose(config_output):
    """`docker-compose config` output: bind-mount sources and secret files must exist."""
    config = yaml.safe_load(Path(config_output).read_text())
    problems = []
    for name, service in config.get("services", {}).items():
        for volume in service.get("volumes", []):
            source = volume.get("source") if isinstance(volume, dict) else volume.split(":", 1)[0]
            if source and source.startswith("/") and not Path(source).exists():
                problems.append(f"compose service {name}: bind-mounted {source} does not exist")
    for name, secret in config.get("secrets", {}).items():
        if "file" in secret and not Path(secret["file"]).is_file():
            problems.append(f"compose secret {name}: {secret['file']} does not exist")
    return fail(problems)


def main(argv):
    if len(argv) >= 2 and argv[1] == "alerts":
        return check_alerts()
    if len(argv) >= 2 and argv[1] == "dockerfile":
        return check_dockerfile()
    if len(argv) >= 2 and argv[1] == "settings":
        return check_settings()
    if len(argv) == 3 and argv[1] == "compose":
        return check_compose(argv[2])
    if len(argv) >= 2 and argv[1] == "runtime-packages":
        print("\n".join(runtime_packages()))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
