"""Re-running failed load partitions from the Dagster UI finishes the migration exactly once.

The README's recovery path ("open ``ledger/entities``, *Launch backfill*, *Failed and missing
partitions*") exercised for real: the project's own ``workspace.yaml`` served by the real
``dagster-webserver``, backfill runs launched by the real ``dagster-daemon`` under the instance's
own ``dagster.yaml`` (queued run coordinator, ``amocrm`` pool), every request made over HTTP to
the webserver's GraphQL endpoint, as the UI makes them.

The test plans the tiny sandbox account into several partitions and loads them in-process: the
first one with amoCRM answering its fifth request with the 403 ban page, so that it fails
half-loaded (its companies, contacts and leads exist, the rest does not), the others cleanly.
The fault is the run's own, so the world is healthy afterwards. Then it

1. reads the failed partitions from GraphQL (``assetPartitionStatuses``), the list the UI offers;
2. launches a partition backfill of exactly those (``launchPartitionBackfill``);
3. polls ``partitionBackfillOrError`` until the backfill is ``COMPLETED_SUCCESS``;

and proves that every partition is now materialized, that the backfill ran only the failed one,
and that the fake amoCRM holds each planned entity exactly once: the half-loaded partition was
finished, not loaded twice.

The daemon is started after the backfill is requested: its backfill loop runs every 30 s
(hard-coded in Dagster), so its first iteration picks the backfill up at once and the second one
marks it complete, instead of up to 30 s of waiting before the first.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from migration_pipeline.instance import get_instance
from migration_pipeline.settings import PROJECT_ROOT
from migration_pipeline_tests.conftest import World
from migration_pipeline_tests.load.test_load_assets import assert_each_planned_entity_exists_once
from migration_pipeline_tests.pipeline import FAST, plan, run_job

pytestmark = pytest.mark.usefixtures("set_up_world")

ASSET_PATH = ["ledger", "entities"]
BIN = Path(sys.executable).parent  # the environment's console scripts live beside its python
# One draw per request from random.Random(6): 0.79, 0.82, 0.49, 0.26, 0.003, … so the first
# four requests of the partition go through and the fifth is answered with the ban page.
BAN_AFTER_FOUR_REQUESTS = "amocrm.ban=0.1,seed=6"
STARTUP_TIMEOUT = 120.0
BACKFILL_TIMEOUT = 180.0
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""

PARTITION_STATUSES_QUERY = """
query PartitionStatuses($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      partitionKeys
      assetPartitionStatuses {
        __typename
        ... on DefaultPartitionStatuses {
          materializedPartitions
          failedPartitions
          unmaterializedPartitions
          materializingPartitions
        }
      }
    }
  }
}
"""

LAUNCH_BACKFILL_MUTATION = """
mutation LaunchBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""

BACKFILL_QUERY = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      status
      numPartitions
      runs(limit: 100) { runId status tags { key value } }
    }
    ... on Error { message }
  }
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """End the process's whole group (it and the code servers and runs it started)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever ignored SIGTERM or outlived its parent
    except ProcessLookupError:
        pass
    process.wait()


@contextmanager
def dagster_process(
    script: str, args: list[str], log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """One of the environment's Dagster console scripts, in its own process group."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / script), *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop(process)


class GraphQL:
    """The webserver's GraphQL endpoint, called the way the UI calls it."""

    def __init__(self, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.process = process
        self.log = log
        self.http = httpx.Client(timeout=60)

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.http.post(self.url, json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def wait_until_loaded(self) -> None:
        """Until the webserver answers and has loaded the project's code location."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert self.process.poll() is None, f"webserver exited:\n{tail(self.log)}"
            assert time.monotonic() < deadline, f"webserver not ready:\n{tail(self.log)}"
            try:
                workspace = self(WORKSPACE_QUERY)["workspaceOrError"]
            except httpx.HTTPError:
                time.sleep(0.25)
                continue
            assert workspace["__typename"] == "Workspace", workspace
            entries = workspace["locationEntries"]
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                (entry,) = entries
                location = entry["locationOrLoadError"]
                assert location["__typename"] == "RepositoryLocation", location
                return
            time.sleep(0.25)

    def partition_statuses(self) -> dict[str, Any]:
        node = self(PARTITION_STATUSES_QUERY, assetKey={"path": ASSET_PATH})["assetNodeOrError"]
        assert node["__typename"] == "AssetNode", node
        statuses = node["assetPartitionStatuses"]
        assert statuses["__typename"] == "DefaultPartitionStatuses", statuses
        return {"partitionKeys": node["partitionKeys"], **statuses}


def load_with_faults(instance: dg.DagsterInstance, key: str, faults: str | None) -> bool:
    amocrm = {**FAST, "sandbox_faults": faults} if faults else FAST
    result = run_job(instance, "load", partition_key=key, resources={"amocrm": amocrm})
    if faults:  # it must fail, and for the fault's reason
        failure = next((event for event in result.all_events if event.is_step_failure), None)
        assert failure is not None, f"{key} loaded despite {faults}"
        error = failure.step_failure_data.error
        assert error is not None and "blocked the account" in str(error.cause or error)
    return result.success


def test_a_ui_backfill_of_the_failed_partitions_finishes_the_load_exactly_once(
    world: World, tmp_path: Path
) -> None:
    port = free_port()
    with ExitStack() as stack:
        instance = stack.enter_context(get_instance())  # writes DAGSTER_HOME/dagster.yaml
        env = dict(os.environ)  # the world: MIGRATION_* and DAGSTER_HOME, no fault spec
        assert "MIGRATION_SANDBOX_FAULTS" not in env
        assert Path(env["DAGSTER_HOME"]).is_relative_to(tmp_path)
        webserver_log = tmp_path / "webserver.log"
        webserver = stack.enter_context(
            dagster_process(
                "dagster-webserver",
                ["-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                webserver_log,
                env,
            )
        )
        graphql = GraphQL(port, webserver, webserver_log)
        stack.callback(graphql.http.close)

        # While the webserver starts: plan, then load every partition; the first one is banned
        # half-way (loaded first, so that it sends all of its requests and has its fifth).
        keys = plan(instance, deals_per_partition=5)
        assert len(keys) >= 3, keys
        failing = keys[0]
        assert not load_with_faults(instance, failing, BAN_AFTER_FOUR_REQUESTS)
        assert sum(world.amocrm.entity_counts().values()) > 0, "nothing of it was loaded"
        for key in keys[1:]:
            assert load_with_faults(instance, key, None)

        # What the UI's "Failed and missing partitions" offers: failed or never materialized.
        graphql.wait_until_loaded()
        before = graphql.partition_statuses()
        assert sorted(before["partitionKeys"]) == keys
        assert before["failedPartitions"] == [failing], before
        failed = sorted(set(before["failedPartitions"]) | set(before["unmaterializedPartitions"]))
        assert failed == [failing], before
        assert sorted(before["materializedPartitions"]) == keys[1:], before

        launched = graphql(
            LAUNCH_BACKFILL_MUTATION,
            backfillParams={
                "partitionNames": failed,
                "assetSelection": [{"path": ASSET_PATH}],
                "title": "Re-run the failed load partitions",
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        daemon_log = tmp_path / "daemon.log"
        daemon = stack.enter_context(
            dagster_process("dagster-daemon", ["run", "-w", "workspace.yaml"], daemon_log, env)
        )
        deadline = time.monotonic() + BACKFILL_TIMEOUT
        while True:
            backfill = graphql(BACKFILL_QUERY, backfillId=backfill_id)["partitionBackfillOrError"]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            if backfill["status"] in BACKFILL_DONE:
                break
            assert daemon.poll() is None, f"daemon exited:\n{tail(daemon_log)}"
            assert time.monotonic() < deadline, (
                f"backfill still {backfill['status']} after {BACKFILL_TIMEOUT:.0f} s: "
                f"{backfill['runs']}\n{tail(daemon_log)}"
            )
            time.sleep(1)

        assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, tail(daemon_log))
        assert backfill["numPartitions"] == len(failed)
        runs = backfill["runs"]
        assert {run["status"] for run in runs} == {"SUCCESS"}, runs
        partitions_run = sorted(
            tag["value"] for run in runs for tag in run["tags"] if tag["key"] == "dagster/partition"
        )
        assert partitions_run == failed  # only the failed partitions, each once

        after = graphql.partition_statuses()
        assert sorted(after["materializedPartitions"]) == keys, after
        assert after["failedPartitions"] == [], after
        assert after["unmaterializedPartitions"] == [], after
    assert_each_planned_entity_exists_once(world)
