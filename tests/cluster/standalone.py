"""A Spark standalone master and one worker on 127.0.0.1, started from the pyspark wheel's ``spark-class``.

Every process runs in its own session (process group), so stopping the worker also stops the executor JVMs
and Python workers it launched; all logs, work and scratch folders live under one temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.find_spark_home import _find_spark_home

HOST = "127.0.0.1"


def java_available() -> bool:
    java_home = os.environ.get("JAVA_HOME")
    return bool(shutil.which("java") or (java_home and (Path(java_home) / "bin" / "java").is_file()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def spark_env(root: Path) -> dict[str, str]:
    """The environment of every Spark process here: the wheel's Spark, this interpreter for Python
    workers, scratch folders under ``root``, no inherited PYTHONPATH (modules come from --py-files)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_CONF_DIR")}
    env.update(
        SPARK_HOME=_find_spark_home(),
        SPARK_LOCAL_IP=HOST,
        SPARK_LOG_DIR=str(root / "logs"),
        SPARK_WORKER_DIR=str(root / "work"),
        SPARK_LOCAL_DIRS=str(root / "local"),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        HF_HUB_OFFLINE="1",
    )
    return env


def tail(path: Path, chars: int = 4000) -> str:
    text = path.read_text(errors="replace") if path.is_file() else "<missing>"
    return f"--- {path} (last {chars} chars) ---\n{text[-chars:]}"


@dataclass
class Cluster:
    root: Path
    master_url: str
    webui_url: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]]

    def state(self) -> dict[str, Any]:
        """The master's state (aliveworkers, completedapps, ...) from its web UI's JSON."""
        with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=5) as response:
            state: dict[str, Any] = json.load(response)
            return state

    def diagnostics(self) -> str:
        """Tails of the master and worker logs and of every executor's stderr (work/app-*/<id>/stderr)."""
        logs = [self.root / "logs" / f"{name}.log" for name in self.processes]
        logs += sorted((self.root / "work").glob("app-*/*/stderr"))
        return "\n".join(tail(path) for path in logs)

    def wait_for_worker(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise DaemonExited(f"{name} exited with {process.returncode}\n{self.diagnostics()}")
            try:
                if self.state().get("aliveworkers", 0) >= 1:
                    return
            except (OSError, ValueError):
                pass  # web UI not up yet, or not answering JSON yet
            time.sleep(1)
        raise TimeoutError(f"no worker registered within {timeout:.0f} s\n{self.diagnostics()}")

    def stop(self) -> None:
        for process in reversed(self.processes.values()):  # worker (and its executors) first
            stop(process)


class DaemonExited(RuntimeError):
    """The master or the worker exited during start-up (e.g. a port taken since it was picked)."""


def stop(process: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM to the process group we started (the JVM and its children), SIGKILL after ``grace`` s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the group is gone
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_cluster(root: Path, cores: int, memory: str) -> Cluster:
    """Master + one worker on fresh free ports; returns once the worker has registered."""
    env = spark_env(root)
    # a taken port fails the daemon (DaemonExited) instead of Spark silently binding the next one
    daemon_env = {**env, "SPARK_DAEMON_JAVA_OPTS": "-Dspark.port.maxRetries=0"}
    for folder in ("logs", "work", "local"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    spark_class = str(Path(env["SPARK_HOME"]) / "bin" / "spark-class")
    port, webui = free_port(), free_port()
    master_url = f"spark://{HOST}:{port}"
    master = ["org.apache.spark.deploy.master.Master", "--host", HOST, "--port", str(port)]
    worker = ["org.apache.spark.deploy.worker.Worker", master_url, "--host", HOST, "--cores", str(cores)]
    worker += ["--memory", memory, "--work-dir", env["SPARK_WORKER_DIR"]]
    commands = {
        "master": [*master, "--webui-port", str(webui)],
        "worker": [*worker, "--webui-port", str(free_port())],
    }
    cluster = Cluster(root, master_url, f"http://{HOST}:{webui}", env, {})
    try:
        for name, args in commands.items():
            with open(root / "logs" / f"{name}.log", "wb") as log:
                cluster.processes[name] = subprocess.Popen(
                    [spark_class, *args], env=daemon_env, stdout=log, stderr=log, start_new_session=True
                )
        cluster.wait_for_worker(timeout=90)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def standalone_cluster(root: Path, *, cores: int = 2, memory: str = "3g") -> Iterator[Cluster]:
    """A running cluster (new ports, up to 3 tries, when a daemon exits during start-up); always stopped."""
    for attempt in (1, 2, 3):
        try:
            cluster = start_cluster(root / f"attempt-{attempt}", cores, memory)
            break
        except DaemonExited:
            if attempt == 3:
                raise
    try:
        yield cluster
    finally:
        cluster.stop()


def submit(
    cluster: Cluster, args: list[str], *, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``spark-submit --master <cluster> ARGS`` in its own process group, killed whole on timeout."""
    command = [str(Path(cluster.env["SPARK_HOME"]) / "bin" / "spark-submit"), "--master", cluster.master_url]
    process = subprocess.Popen(
        [*command, *args],
        env=cluster.env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        stderr += f"\n<spark-submit killed after {timeout:.0f} s>"
        return subprocess.CompletedProcess(process.args, -9, stdout, stderr)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
