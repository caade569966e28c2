"""docs/deployment.md stays in step with the command: every agenda-decl command line in it
parses, the probes and health checks ask /healthz on the port --metrics-port serves, stop
timeouts cover the drain, and the systemd unit passes `systemd-analyze verify` where that is
installed (it is on our machines; the Dockerfile and the manifests were checked by hand with
hadolint and kubernetes-validate, as the page says)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agenda_decl.cli.parser import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(), re.S)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCKS if lang == language]


def parsed(arguments: list[str]) -> Any:
    return build_parser().parse_args(arguments)


def unit() -> str:
    (text,) = blocks("ini")
    return text


def dockerfile() -> str:
    (text,) = blocks("dockerfile")
    return text


def yaml_docs() -> list[dict[str, Any]]:
    """The manifests, and the init container fragment."""
    return [doc for text in blocks("yaml") for doc in yaml.safe_load_all(text) if doc]


def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml_docs() if "kind" in doc]


def test_every_command_line_parses() -> None:
    lines = [line.split("agenda-decl", 1)[1] for text in [*blocks("sh"), unit()]
             for line in text.splitlines() if "bin/agenda-decl " in line or
             line.strip().startswith("agenda-decl ")]
    assert len(lines) >= 3
    for line in lines:
        parsed(shlex.split(line))
    for instruction in ("CMD", "ENTRYPOINT"):
        match = re.search(rf"^{instruction} (\[.*\])$", dockerfile(), re.M)
        assert match, instruction
    cmd = yaml.safe_load(re.search(r"^CMD (\[.*\])$", dockerfile(), re.M)[1])  # type: ignore[index]
    assert parsed(cmd).metrics_port == 9464
    containers = _containers()
    assert len(containers) == 3  # apply (Job), worker, apply (init container)
    for container in containers:
        parsed(container["args"])


def _containers() -> list[dict[str, Any]]:
    found = []
    for doc in yaml_docs():
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        found += spec.get("containers", []) + spec.get("initContainers", [])
        found += doc.get("initContainers", [])
    return found


def test_probes_ask_healthz_on_the_metrics_port_and_grace_covers_the_drain() -> None:
    (deployment,) = [doc for doc in manifests() if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    args = parsed(worker["args"])
    (port,) = worker["ports"]
    assert port["containerPort"] == args.metrics_port and port["name"] == "metrics"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    startup = worker["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > args.wait_for_store / 1000
    assert pod["terminationGracePeriodSeconds"] > args.drain_timeout / 1000 + 3
    assert {doc["kind"] for doc in manifests()} >= {"Secret", "Job", "Deployment"}


def test_docker_health_check_and_systemd_stop_timeout_fit_the_worker() -> None:
    text = dockerfile()
    cmd = parsed(yaml.safe_load(re.search(r"^CMD (\[.*\])$", text, re.M)[1]))  # type: ignore[index]
    assert f"EXPOSE {cmd.metrics_port}" in text
    assert f"127.0.0.1:{cmd.metrics_port}/healthz" in text
    worker = re.search(r"^ExecStart=\S+ (.*)$", unit(), re.M)
    assert worker
    args = parsed(shlex.split(worker[1]))
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit(), re.M)[1])  # type: ignore[index]
    assert stop > args.drain_timeout / 1000 + 3


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "agenda-decl"
    path = tmp_path / "agenda-decl-worker.service"
    path.write_text(unit().replace("/srv/app/.venv/bin/agenda-decl", str(cli)))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
