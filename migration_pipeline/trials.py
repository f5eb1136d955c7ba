"""Randomized fault trials: a small migration under random faults, re-run until done, then
checked for exactly-once (design §2: invariants 1, 4 and 5).

One trial is a world of its own under ``<work dir>/trial-<seed>/``: its data directory (a tiny
account generated from the seed, the DuckDB file, a fresh fake amoCRM), its ``DAGSTER_HOME``
and its logs. From the seed alone (:func:`choose_faults`) it

1. runs extract → cleanse → amoCRM setup → plan with relaxed limits and no faults;
2. loads every partition once under the faults drawn: injected 429s and bursts over the
   server's own limit, 5xx, timeouts, answers lost after the commit, a 403 ban (one injected
   answer, or a real one earned by too many 429s), the run process SIGKILLed mid-partition,
   another process holding the DuckDB file read-write for 1–5 s;
3. clears the faults and re-runs the failed and missing partitions, as a user would, for at
   most :data:`CLEAN_ROUNDS` rounds;
4. checks the outcome with :func:`check_trial`.

Every stage and load is the project's own job run with ``execute_in_process`` in a child
process (``python -m migration_pipeline.trials serve``, commands on stdin, JSON lines back on
stdout): the variables that select a world are read from the environment, a kill has to be a
real process dying, and the harness never caches a fake or a limiter it would leak over a
hundred trials. One child runs the stages and every load but the one to be killed, which
gets a child of its own; both start at once, so the second interpreter start overlaps the
stages.

One default is shortened: loads run with a 1 s claim lease (default 120 s), so a re-run takes
over a killed run's claims at once instead of after two minutes. Loads never overlap within a
trial, so a short lease cannot let two live loaders share a claim.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sandbox import SandboxSettings

FAULT_KINDS = ("429", "5xx", "timeout", "lost", "ban", "kill", "duckdb_lock")
"""Every fault a trial can draw; ``ban`` is a 403, ``duckdb_lock`` another process holding
the DuckDB file."""
STAGE_JOBS = ("extract_pipedrive", "cleanse", "amocrm_setup", "plan")
CLEAN_ROUNDS = 3
LEASE_SECONDS = 1.0
WAIT_SECONDS = 20.0
RELAXED_RPS = 1000
MAX_FAULT_RATE = 0.8  # of all injected kinds together: some requests must get through
RETRY_BACKOFF_SECONDS = 0.05  # 429s still wait 0.1 s (twice this); keeps a trial short
KILL_RUN_LATENCY = "40ms"  # stretches the killed run so the kill lands mid-partition
CHILD_TIMEOUT = 300.0  # a command that runs longer has hung: that is a finding, not a wait
MARK = "@@trial "  # prefix of the children's report lines on stdout
ENTITY_KINDS = (("company", "companies"), ("contact", "contacts"), ("lead", "leads"))
PARENT_KINDS = {"leads": "lead", "contacts": "contact", "companies": "company"}
# Variables that select a world or an account: a child gets exactly the trial's own.
WORLD_PREFIXES = ("MIGRATION_", "PIPEDRIVE_", "AMOCRM_")


# ----------------------------------------------------------------------------- the fault plan


@dataclass(frozen=True)
class FaultPlan:
    """What goes wrong in one trial; everything is drawn from the seed by
    :func:`choose_faults`, so a failing seed replays the same plan.

    ``rates`` are the fake amoCRM's injected per-request rates. ``server_rps`` (429 bursts and
    the earned ban) sets the fake's own limit below ``client_rps``, the rate the loader is
    told it may use, so real 429s come in bursts. The ``*_pick`` values in [0, 1) choose a
    partition once the plan is known.
    """

    seed: int
    kinds: tuple[str, ...]
    rates: dict[str, float]
    deals_per_partition: int
    contacts_per_partition: int
    server_rps: float | None = None
    client_rps: float | None = None
    ban_after: int = 0
    ban_seconds: float = 0.0
    kill_pick: float = 0.0
    kill_after_requests: int = 0
    kill_delay: float = 0.0
    holder_pick: float = 0.0
    holder_delay: float = 0.0
    holder_seconds: float = 0.0

    def spec(self) -> str:
        """The ``MIGRATION_SANDBOX_FAULTS`` value of the faulty round (amoCRM side only)."""
        pairs = [f"amocrm.{kind}={rate}" for kind, rate in self.rates.items()]
        return ",".join([*pairs, f"seed={self.seed}"]) if pairs else ""

    def describe(self) -> list[str]:
        """One line per planned fault, for reports."""
        lines = [f"amocrm.{kind}={rate}" for kind, rate in self.rates.items()]
        if self.server_rps is not None:
            lines.append(
                f"server limit {self.server_rps:g}/s, loader told {self.client_rps:g}/s "
                "(429 bursts)"
            )
        if self.ban_after:
            lines.append(f"ban after {self.ban_after} 429s within 10 s for {self.ban_seconds:g} s")
        if "kill" in self.kinds:
            lines.append(
                f"SIGKILL a run {self.kill_after_requests} requests + {self.kill_delay:.2f} s "
                "into its partition"
            )
        if "duckdb_lock" in self.kinds:
            lines.append(f"hold the DuckDB file read-write for {self.holder_seconds:.1f} s")
        return lines


def choose_faults(seed: int) -> FaultPlan:
    """The trial's faults and partition sizes, from ``seed`` alone.

    Each kind is drawn with probability 1/2 (at least one). Every parameter is drawn whether
    or not its kind is chosen, so changing how one kind is drawn never reshuffles the others.
    Rates are high (a tiny partition sends a dozen requests): high enough that a batch now and
    then stays in doubt through all of the loader's look-up-and-resend rounds, which is where
    exactly-once is tested hardest.
    """
    rng = random.Random(seed)
    chosen = [kind for kind in FAULT_KINDS if rng.random() < 0.5]
    pick = rng.choice(FAULT_KINDS)
    kinds = tuple(chosen or [pick])
    drawn = {
        "429": rng.uniform(0.1, 0.4),
        "5xx": rng.uniform(0.05, 0.3),
        "timeout": rng.uniform(0.05, 0.25),
        "lost": rng.uniform(0.05, 0.3),
        "ban": rng.uniform(0.02, 0.08),
    }
    server_rps = float(rng.randint(3, 5))
    client_rps = round(server_rps * rng.uniform(2.0, 4.0), 1)
    ban_by_limit = rng.random() < 0.5
    ban_after, ban_seconds = rng.randint(2, 6), round(rng.uniform(1.0, 2.5), 1)
    plan = {
        "deals_per_partition": rng.choice((4, 6, 10)),
        "contacts_per_partition": rng.choice((5, 10, 1000)),
        "kill_pick": rng.random(),
        "kill_after_requests": rng.randint(1, 8),
        "kill_delay": round(rng.uniform(0.0, 0.3), 3),
        "holder_pick": rng.random(),
        "holder_delay": round(rng.uniform(0.0, 0.5), 3),
        "holder_seconds": round(rng.uniform(1.0, 5.0), 2),
    }
    if "ban" in kinds and ban_by_limit:
        plan.update(ban_after=ban_after, ban_seconds=ban_seconds)
    if "429" in kinds or plan.get("ban_after"):
        plan.update(server_rps=server_rps, client_rps=client_rps)
    rates = {
        kind: rate
        for kind, rate in drawn.items()
        if kind in kinds and not (kind == "ban" and plan.get("ban_after"))
    }
    scale = min(1.0, MAX_FAULT_RATE / max(sum(rates.values()), MAX_FAULT_RATE))
    rates = {kind: round(rate * scale, 3) for kind, rate in rates.items()}
    return FaultPlan(seed=seed, kinds=kinds, rates=rates, **plan)


# ------------------------------------------------------------------------------------ worlds


@dataclass(frozen=True)
class TrialWorld:
    """The paths of one trial's world and the environment its children run in."""

    root: Path
    seed: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def duckdb(self) -> Path:
        return self.data_dir / "migration.duckdb"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def sandbox(self, **overrides: object) -> dict[str, str]:
        """Every ``MIGRATION_SANDBOX_*`` value a load depends on: relaxed limits and no faults
        unless overridden (``faults=…``, ``amocrm_rps=…``, ``ban_after=…``, …)."""
        values = {
            "scale": "tiny",
            "seed": self.seed,
            "pipedrive_burst": 10_000,
            "amocrm_rps": RELAXED_RPS,
            "ban_after": 0,
            "ban_seconds": 60,
            "faults": "",
            **overrides,
        }
        return {f"MIGRATION_SANDBOX_{name.upper()}": str(value) for name, value in values.items()}

    def env(self) -> dict[str, str]:
        """This process's environment without any world or account variable, plus this
        trial's world (relaxed, no faults)."""
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(WORLD_PREFIXES) and name != "DAGSTER_HOME"
        }
        env.update(
            MIGRATION_DATA_DIR=str(self.data_dir),
            DAGSTER_HOME=str(self.dagster_home),
            PYTHONUNBUFFERED="1",
            **self.sandbox(),
        )
        return env

    def settings(self) -> SandboxSettings:
        """The sandbox settings of the clean rounds (relaxed limits, no faults): what the
        harness reads the fake amoCRM with."""
        return SandboxSettings(
            data_dir=self.data_dir.resolve(),
            scale="tiny",
            seed=self.seed,
            amocrm_rps=RELAXED_RPS,
            pipedrive_burst=10_000,
            ban_after=0,
        )


# -------------------------------------------------------------------------- child processes


@dataclass
class LoadRun:
    """One run of the ``load`` job for one partition, as the harness saw it."""

    round: int
    partition: str
    outcome: str  # ok, failed, killed, lost (the child died or hung before reporting)
    error: str = ""
    metadata: dict[str, int] = field(default_factory=dict)


@dataclass
class _Seen:
    """What the loads of a trial did: runs, when a load command was under way, the kills that
    landed and the DuckDB holds that overlapped a load (seconds held)."""

    runs: list[LoadRun] = field(default_factory=list)
    busy: list[tuple[float, float]] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    holds: list[float] = field(default_factory=list)


class _Child:
    """A child process of this module: commands go in as lines on stdin, report lines come
    back on a queue; its stderr (the Dagster log) goes to a file under the trial's ``logs``."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "migration_pipeline.trials", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,  # its own process group: a kill takes nothing else
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(MARK):
                self.events.put(json.loads(line[len(MARK) :]))
        self.events.put(None)

    def send(self, command: object) -> None:
        """One command line; a child that has already exited is not an error here (its
        missing report is)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def events_until(self, last: str) -> Iterator[dict[str, Any]]:
        """Report lines up to and including one whose event is ``last`` (or the child's end).
        A command running over :data:`CHILD_TIMEOUT` kills the child: :class:`TimeoutError`."""
        deadline = time.monotonic() + CHILD_TIMEOUT
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise TimeoutError(f"a command ran over {CHILD_TIMEOUT:.0f} s") from None
            if event is None:
                self.events.put(None)  # stays ended for the next caller
                return
            yield event
            if event["event"] == last:
                return

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the child's process group (the child started it; nothing else is in it)."""
        if self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)

    def close(self) -> int:
        """End the child (EOF on stdin; killed if it does not exit within a minute)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        self._log.close()
        return code


class _Session(_Child):
    """A child that runs the project's jobs in the trial's Dagster instance on command."""

    def __init__(self, world: TrialWorld, name: str) -> None:
        super().__init__(["serve"], world.env(), world.logs / f"{name}.log")

    def stages(self, plan: FaultPlan) -> list[str]:
        """Extract → cleanse → setup → plan; the planned partition keys."""
        self.send(
            {
                "do": "stages",
                "deals_per_partition": plan.deals_per_partition,
                "contacts_per_partition": plan.contacts_per_partition,
            }
        )
        keys, failure = None, "the child exited during the stages"
        for event in self.events_until("idle"):
            if event["event"] == "planned":
                keys = event["partitions"]
            elif event["event"] == "stage_failed":
                failure = f"{event['job']} failed: {event['error']}"
        if keys is None:
            raise RuntimeError(failure)
        return keys

    def verify(self, sandbox: dict[str, str]) -> None:
        """Run the ``verify`` job (read-back and report) with the faults cleared."""
        self.send({"do": "verify", "sandbox": sandbox})
        for event in self.events_until("idle"):
            if event["event"] == "verify_failed":
                raise RuntimeError(f"verify failed: {event['error']}")

    def load(
        self,
        keys: Sequence[str],
        sandbox: dict[str, str],
        *,
        round_number: int,
        seen: _Seen,
        client_rps: float | None = None,
        on_start: Callable[[str], None] = lambda key: None,
    ) -> None:
        """Run the ``load`` job for each of ``keys`` in order with ``sandbox`` set in the
        child's environment; ``on_start`` runs as each partition's run begins (the kill and
        the DuckDB holder hook in there)."""
        if not keys:
            return
        self.send({"do": "load", "keys": list(keys), "sandbox": sandbox, "client_rps": client_rps})
        started, reported, error = time.time(), set(), ""
        try:
            for event in self.events_until("idle"):
                if event["event"] == "start":
                    on_start(event["key"])
                elif event["event"] == "done":
                    reported.add(event["key"])
                    outcome = "ok" if event["success"] else "failed"
                    seen.runs.append(
                        LoadRun(
                            round_number, event["key"], outcome, event["error"], event["metadata"]
                        )
                    )
        except TimeoutError as exc:
            error = str(exc)
        seen.busy.append((started, time.time()))
        for key in keys:
            if key not in reported:
                if key in seen.kills:
                    seen.runs.append(LoadRun(round_number, key, "killed", "SIGKILL mid-partition"))
                else:
                    cause = error or f"the child exited with {self.process.wait(timeout=60)}"
                    seen.runs.append(LoadRun(round_number, key, "lost", cause))


class _Holder(_Child):
    """A child that holds the DuckDB file read-write for a while once told to go: started up
    front, so the lock follows the trigger at once instead of after an interpreter start."""

    def __init__(self, world: TrialWorld, seconds: float) -> None:
        args = ["hold-duckdb", str(world.duckdb), str(seconds)]
        super().__init__(args, world.env(), world.logs / "hold-duckdb.log")
        self.held: tuple[float, float] | None = None
        self._timer: threading.Timer | None = None

    def trigger(self, delay: float) -> None:
        if self._timer is None:
            self._timer = threading.Timer(delay, self.send, args=("go",))
            self._timer.start()

    def finish(self) -> None:
        """Wait for the hold to end; an untriggered holder exits without locking."""
        if self._timer is not None:
            self._timer.join()
        self.send("stop")
        for event in self.events_until("held"):
            self.held = (event["from"], event["to"])
        self.close()


# ------------------------------------------------------------------------------------ trials


@dataclass
class TrialResult:
    """What one trial did and found; ``problems`` empty means it passed.

    ``faults`` is the plan as drawn; ``occurred`` counts what really happened per kind of
    :data:`FAULT_KINDS` (a drawn rate may inject nothing in a short partition).
    """

    seed: int
    root: Path
    faults: list[str]
    occurred: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    partitions: int = 0
    runs: list[LoadRun] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems


def run_trial(seed: int, work_dir: Path, *, keep: bool = True) -> TrialResult:
    """Run the trial of ``seed`` in ``work_dir/trial-<seed>`` (replacing an earlier one) and
    return what happened. Harness errors (a stage failing, a child hanging) are problems too:
    such a trial proves nothing and must not pass. ``keep=False`` deletes a passing trial's
    directory (a hundred worlds take gigabytes); a failing one is always kept as evidence."""
    started = time.monotonic()
    world = TrialWorld(work_dir.resolve() / f"trial-{seed}", seed)
    shutil.rmtree(world.root, ignore_errors=True)
    world.dagster_home.mkdir(parents=True)
    plan = choose_faults(seed)
    result = TrialResult(seed, world.root, plan.describe())
    session = _Session(world, "session")
    doomed = _Session(world, "killed") if "kill" in plan.kinds else None
    try:
        keys = session.stages(plan)
        result.partitions = len(keys)
        seen = _faulty_round(world, plan, keys, session, doomed)
        # Before anyone retries: an earned ban has ended and a killed run's claims are past
        # their lease, as they would be for a user re-running later.
        time.sleep(max(plan.ban_seconds, LEASE_SECONDS) + 0.2)
        last = {run.partition: run for run in seen.runs}
        for round_number in range(2, CLEAN_ROUNDS + 2):
            pending = [key for key in keys if last[key].outcome != "ok"]
            if not pending:
                break
            session.load(pending, world.sandbox(), round_number=round_number, seen=seen)
            last.update({run.partition: run for run in seen.runs if run.round == round_number})
        session.verify(world.sandbox())
    except (RuntimeError, TimeoutError) as exc:
        result.problems.append(f"harness: the trial did not finish: {exc}")
        result.seconds = time.monotonic() - started
        return result
    finally:
        session.close()
        if doomed is not None:
            doomed.close()
    result.runs = seen.runs
    result.occurred = _occurred(world, seen)
    result.problems = [
        f"partition {key} not loaded after {CLEAN_ROUNDS} clean rounds: "
        f"{last[key].outcome}: {last[key].error}"
        for key in keys
        if last[key].outcome != "ok"
    ]
    result.problems += check_trial(world)
    result.seconds = time.monotonic() - started
    if result.passed and not keep:
        shutil.rmtree(world.root, ignore_errors=True)
    return result


def _faulty_round(
    world: TrialWorld,
    plan: FaultPlan,
    keys: list[str],
    session: _Session,
    doomed: _Session | None,
) -> _Seen:
    """Round 1: every partition once, under the plan's faults. The partition to be killed
    runs first, in its own child; the rest follow in the session, and those that need a
    contact or company the dead run had claimed take its claims over once their lease ends."""
    from .sandbox.amocrm import AmoCrmFake

    seen = _Seen()
    overrides: dict[str, object] = {"faults": plan.spec()}
    if plan.server_rps is not None:
        overrides["amocrm_rps"] = plan.server_rps
    if plan.ban_after:
        overrides.update(ban_after=plan.ban_after, ban_seconds=plan.ban_seconds)
    kill_key = keys[int(plan.kill_pick * len(keys))] if doomed is not None else None
    rest = [key for key in keys if key != kill_key]
    holder, holder_key = None, None
    if "duckdb_lock" in plan.kinds:
        holder_key = (rest or keys)[int(plan.holder_pick * len(rest or keys))]
        holder = _Holder(world, plan.holder_seconds)

    def on_start(key: str) -> None:
        if holder is not None and key == holder_key:
            holder.trigger(plan.holder_delay)

    ended = threading.Event()  # the doomed partition's load command is over
    killers: list[threading.Thread] = []

    def kill_when_due(key: str) -> None:
        assert doomed is not None
        fake = AmoCrmFake(world.settings())
        target = fake.requests_served() + plan.kill_after_requests
        while fake.requests_served() < target:
            if ended.wait(0.01):
                return  # the partition ended first (it needed fewer requests): no kill
        if not ended.wait(plan.kill_delay):
            seen.kills.append(key)
            doomed.kill()

    def kill_mid_partition(key: str) -> None:
        # In a thread, so the events keep being read: the partition's end stops the wait.
        on_start(key)
        killers.append(threading.Thread(target=kill_when_due, args=(key,), daemon=True))
        killers[-1].start()

    faulty = {"round_number": 1, "seen": seen, "client_rps": plan.client_rps}
    if doomed is not None and kill_key is not None:
        slow = world.sandbox(**{**overrides, "faults": _with_latency(plan.spec())})
        doomed.load([kill_key], slow, on_start=kill_mid_partition, **faulty)
        ended.set()
        for killer in killers:
            killer.join()
        if kill_key in seen.kills and any(
            run.partition == kill_key and run.outcome != "killed" for run in seen.runs
        ):
            # Its end was reported, so a kill could only have hit the idle child afterwards.
            seen.kills.remove(kill_key)
    session.load(rest, world.sandbox(**overrides), on_start=on_start, **faulty)
    if holder is not None:
        holder.finish()
        if holder.held and any(start <= holder.held[0] <= end for start, end in seen.busy):
            seen.holds.append(holder.held[1] - holder.held[0])
    return seen


def _with_latency(spec: str) -> str:
    return ",".join(filter(None, [spec, f"amocrm.latency={KILL_RUN_LATENCY}"]))


def _occurred(world: TrialWorld, seen: _Seen) -> dict[str, int]:
    """How often each fault really happened: answers the fake injected, 429s the loader
    counted (injected or over the server's limit), runs a 403 stopped, kills that landed
    mid-run and DuckDB holds that overlapped a load."""
    from .sandbox.amocrm import AmoCrmFake

    injected = AmoCrmFake(world.settings()).faults_injected()
    counted_429 = sum(run.metadata.get("rate_limited_429", 0) for run in seen.runs)
    counts = {
        "429": max(injected.get("429", 0), counted_429),
        "5xx": injected.get("5xx", 0),
        "timeout": injected.get("timeout", 0),
        "lost": injected.get("lost", 0),
        "ban": sum("blocked the account" in run.error for run in seen.runs),
        "kill": len(seen.kills),
        "duckdb_lock": len(seen.holds),
    }
    return {kind: n for kind, n in counts.items() if n}


# ------------------------------------------------------------------------------------ checks


@dataclass
class Evidence:
    """Everything the checks compare, read once after the last run: the plan, the ledger,
    Dagster's view of the partitions and the fake amoCRM read back through the API."""

    world: TrialWorld
    partitions: list[str]
    registered: list[str]
    status: dict[str, str]
    planned: dict[str, dict[str, dict[str, Any]]]
    ledger: dict[str, dict[str, tuple[str, int | None, str | None]]]
    per_pipedrive_id: dict[str, dict[str, int]]
    found: dict[str, dict[str, list[int]]]
    children: dict[str, list[dict[str, Any]]]
    company_links: dict[int, set[int]]
    counts: dict[str, int]

    def amo_id(self, kind: str, key: str) -> int | None:
        state, amo_id, _ = self.ledger.get(kind, {}).get(key, ("", None, None))
        return amo_id if state == "created" else None


class _Unlimited:
    """The read-back's limiter: checks run after every load, against a fake whose limit is
    relaxed, so they need no share of the account's budget."""

    def acquire(self) -> None:
        return None


@contextmanager
def _read_back_client(world: TrialWorld) -> Iterator[Any]:
    from .clients.amocrm import AmoCrmClient, make_http_client
    from .sandbox import AMOCRM_URL
    from .sandbox.amocrm import AmoCrmFake
    from .sandbox.transport import SandboxTransport

    settings = world.settings()
    fake = AmoCrmFake(settings)
    http = make_http_client(
        AMOCRM_URL, settings.amocrm_token, transport=SandboxTransport(fake.handle)
    )
    try:
        yield fake, AmoCrmClient(http, limiter=_Unlimited(), backoff=0.01)
    finally:
        http.close()


def gather_evidence(world: TrialWorld) -> Evidence:
    """Read the plan, the ledger, Dagster's partition statuses and the fake amoCRM."""
    import dagster as dg

    from .db import connect, read_rows
    from .defs.load.assets import deal_batches

    with connect(world.duckdb, read_only=True) as con:
        partitions = [r["partition_key"] for r in read_rows(con, "select * from plan.partitions")]
        planned = {
            kind: {r["source_key"]: r for r in read_rows(con, f"select * from plan.{table}")}
            for kind, table in (*ENTITY_KINDS, ("task", "tasks"), ("note", "notes"))
        }
        ledger: dict[str, dict[str, tuple[str, int | None, str | None]]] = defaultdict(dict)
        for row in read_rows(con, "select * from ledger.entities"):
            ledger[row["kind"]][row["source_key"]] = (row["state"], row["amo_id"], row["error"])
        id_fields = dict(
            con.execute(
                "select entity, amo_field_id from map.fields where purpose = 'pipedrive_id'"
            ).fetchall()
        )
    with dg.DagsterInstance.from_config(str(world.dagster_home)) as instance:
        registered = sorted(instance.get_dynamic_partitions(deal_batches.name))
        statuses = instance.get_status_by_partition(
            dg.AssetKey(["ledger", "entities"]), partitions, deal_batches
        )
    status = {key: (s.value if s else "never materialized") for key, s in (statuses or {}).items()}
    evidence = Evidence(
        world, partitions, registered, status, planned, dict(ledger), {}, {}, {}, {}, {}
    )
    with _read_back_client(world) as (fake, client):
        evidence.counts = fake.entity_counts()
        for kind, entity in ENTITY_KINDS:
            evidence.per_pipedrive_id[entity] = fake.creations_per_pipedrive_id(entity)
            found = client.find_by_field(entity, id_fields[entity], list(planned[kind]))
            evidence.found[entity] = {
                str(key): sorted(int(r["id"]) for r in records) for key, records in found.items()
            }
        parents = {
            entity: [i for key in planned[kind] if (i := evidence.amo_id(kind, key)) is not None]
            for kind, entity in ENTITY_KINDS
        }
        evidence.children = {
            "task": [t for entity, ids in parents.items() for t in client.tasks(entity, ids)],
            "note": [
                {**note, "entity_type": entity}
                for entity, ids in parents.items()
                for note in client.notes(entity, ids)
            ],
        }
        for link in client.links("contacts", parents["contacts"]):
            if link.to_entity_type == "companies":
                evidence.company_links.setdefault(link.entity_id, set()).add(link.to_entity_id)
    return evidence


def _some(keys: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(str(key) for key in list(keys)[:limit])
    return shown + (f" … ({len(keys)} in all)" if len(keys) > limit else "")


def _check_partitions(e: Evidence) -> list[str]:
    """Every planned partition is registered in Dagster and its latest run materialized it:
    none is left failed, in progress (a killed run nobody finished) or never run."""
    problems = []
    if e.registered != sorted(e.partitions):
        problems.append(f"Dagster's partitions {e.registered} differ from the plan's")
    for key in e.partitions:
        if e.status.get(key) != "MATERIALIZED":
            problems.append(f"partition {key} is {e.status.get(key)} in Dagster")
    return problems


def _check_ledger(e: Evidence) -> list[str]:
    """Every planned entity has a ``created`` ledger row, and no two share one amoCRM id."""
    problems = []
    for kind, rows in e.planned.items():
        states = e.ledger.get(kind, {})
        absent = [key for key in rows if states.get(key, ("",))[0] != "created"]
        if absent:
            seen = Counter(states.get(key, ("no row",))[0] for key in absent)
            problems.append(
                f"missing: {len(absent)} planned {kind}(s) not created in the ledger "
                f"({dict(seen)}): {_some(absent)}"
            )
        ids = Counter(amo_id for state, amo_id, _ in states.values() if state == "created")
        shared = [amo_id for amo_id, n in ids.items() if n > 1]
        if shared:
            problems.append(f"ledger: {kind} amoCRM ids recorded for several keys: {_some(shared)}")
    return problems


def _check_entities(e: Evidence) -> list[str]:
    """Companies, contacts and leads: each planned Pipedrive id exists in amoCRM exactly once,
    nothing unplanned carries one, and the ledger's id is the record amoCRM has."""
    problems = []
    for kind, entity in ENTITY_KINDS:
        planned = set(e.planned[kind])
        per_id = e.per_pipedrive_id[entity]
        duplicated = sorted(key for key, n in per_id.items() if n > 1)
        if duplicated:
            times = {key: per_id[key] for key in duplicated}
            problems.append(
                f"duplicates: {entity} created more than once: {_some(list(times.items()))}"
            )
        absent = sorted(planned - set(per_id))
        if absent:
            problems.append(
                f"missing: {len(absent)} planned {entity} not in amoCRM: {_some(absent)}"
            )
        unplanned = sorted(set(per_id) - planned)
        if unplanned:
            problems.append(f"{entity} in amoCRM that were never planned: {_some(unplanned)}")
        wrong = [
            key
            for key in sorted(planned)
            if (amo_id := e.amo_id(kind, key)) is not None
            and amo_id not in e.found[entity].get(key, [])
        ]
        if wrong:
            problems.append(f"ledger ids of {entity} that amoCRM does not show: {_some(wrong)}")
    return problems


def _task_signature(task: dict[str, Any]) -> tuple:
    return (task["entity_type"], int(task["entity_id"]), task["text"], int(task["complete_till"]))


def _note_signature(note: dict[str, Any]) -> tuple:
    text = (note.get("params") or {}).get("text")
    return (note["entity_type"], int(note["entity_id"]), note["note_type"], text)


def _check_children(e: Evidence) -> list[str]:
    """Tasks and notes carry no Pipedrive id, so each planned one is counted by its content
    on its parent: amoCRM must hold exactly as many records alike as the plan has, and every
    ledger id must be one of them. Totals must match too (a copy on an unplanned parent)."""
    problems = []
    for kind, signature in (("task", _task_signature), ("note", _note_signature)):
        table = f"{kind}s"
        expected: dict[tuple, list[str]] = defaultdict(list)
        for key, row in e.planned[kind].items():
            parent = e.amo_id(PARENT_KINDS[row["entity_type"]], row["entity_key"])
            if parent is not None:
                payload = json.loads(row["payload"])
                record = {**payload, "entity_type": row["entity_type"], "entity_id": parent}
                expected[signature(record)].append(key)
        actual: dict[tuple, list[int]] = defaultdict(list)
        for record in e.children[kind]:
            actual[signature(record)].append(int(record["id"]))
        extra = [
            (keys, len(actual[s])) for s, keys in expected.items() if len(actual[s]) > len(keys)
        ]
        if extra:
            problems.append(
                f"duplicates: {table} created more times than planned (planned keys, copies): "
                f"{_some(extra)}"
            )
        short = [keys for s, keys in expected.items() if len(actual[s]) < len(keys)]
        if short:
            problems.append(f"missing: planned {table} absent in amoCRM: {_some(short)}")
        stray = [ids for s, ids in actual.items() if s not in expected]
        if stray:
            problems.append(f"{table} in amoCRM matching nothing planned: {_some(stray)}")
        ids = {int(record["id"]) for record in e.children[kind]}
        unknown = [
            key
            for key in e.planned[kind]
            if (amo_id := e.amo_id(kind, key)) is not None and amo_id not in ids
        ]
        if unknown:
            problems.append(f"ledger ids of {table} that amoCRM does not show: {_some(unknown)}")
        if e.counts.get(table, 0) != len(e.planned[kind]):
            problems.append(
                f"amoCRM holds {e.counts.get(table, 0)} {table}, the plan {len(e.planned[kind])}"
            )
    return problems


def _check_links(e: Evidence) -> list[str]:
    """Every planned contact with a company is linked to that company in amoCRM."""
    unlinked = [
        key
        for key, row in e.planned["contact"].items()
        if row["company_key"]
        and (contact := e.amo_id("contact", key)) is not None
        and e.amo_id("company", row["company_key"]) not in e.company_links.get(contact, set())
    ]
    return [f"missing: contacts not linked to their company: {_some(unlinked)}"] if unlinked else []


def _check_report(e: Evidence) -> list[str]:
    """The migration report (group ``verify``, run after the last load) adds up, and its
    read-back found every record as planned: the asset check's own test."""
    from .db import connect
    from .verify.report import adds_up

    with connect(e.world.duckdb, read_only=True) as con:
        return [f"report: {problem}" for problem in adds_up(con)]


CHECKS: tuple[Callable[[Evidence], list[str]], ...] = (
    _check_partitions,
    _check_ledger,
    _check_entities,
    _check_children,
    _check_links,
    _check_report,
)
"""The checks :func:`check_trial` runs, in order. Each takes the :class:`Evidence` and
returns its problems."""


def check_trial(world: TrialWorld) -> list[str]:
    """Every problem with the outcome of a trial (empty: exactly once held, nothing is
    missing, no partition is left failed): the :data:`CHECKS` over its evidence."""
    evidence = gather_evidence(world)
    return [problem for check in CHECKS for problem in check(evidence)]


# ------------------------------------------------------------------------ the child commands


def _emit(event: str, **fields: Any) -> None:
    print(MARK + json.dumps({"event": event, **fields}, default=str), flush=True)


def _failure(result: Any) -> str:
    """The reason a run failed, as the UI shows it: the ``Failure`` description, else the
    error (for an exception raised in the step, its cause's message)."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data:
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                return data.user_failure_data.description
            error = data.error
            return (error.cause.message if error.cause else error.message).strip()
    return "the run failed before its step"


def _int_metadata(result: Any) -> dict[str, int]:
    """The integer metadata of a load run: its materialization's, else its failure's."""
    for event in result.all_events:
        if event.is_step_materialization:
            metadata = event.step_materialization_data.materialization.metadata
        elif event.is_step_failure and event.step_failure_data.user_failure_data:
            metadata = event.step_failure_data.user_failure_data.metadata
        else:
            continue
        return {k: v.value for k, v in metadata.items() if isinstance(v.value, int)}
    return {}


QUIET = {"console": {"config": {"log_level": "INFO"}}}  # on stderr, into the trial's logs


def _serve() -> int:
    """Run commands from stdin until EOF: ``stages`` (the stages before the load, reports
    the partitions) and ``load`` (each partition in order, with the given sandbox variables
    set first: the fake and its faults are built from the environment at each run)."""
    import dagster as dg

    from .definitions import defs
    from .instance import get_instance

    instance = None
    fast = {"config": {"retry_backoff_seconds": 0.01}}
    for line in sys.stdin:
        command = json.loads(line)
        # Not before the first command: a second child starts during the stages, and two
        # processes creating one instance's SQLite storage at once collide.
        instance = instance or get_instance()
        if command["do"] == "stages":
            plan = {
                "deals_per_partition": command["deals_per_partition"],
                "contacts_per_partition": command["contacts_per_partition"],
            }
            for name in STAGE_JOBS:
                job = defs.resolve_job_def(name)
                run_config: dict[str, Any] = {
                    "loggers": QUIET,
                    "resources": {
                        key: fast
                        for key in ("pipedrive", "amocrm")
                        if key in job.required_resource_keys
                    },
                }
                if name == "plan":
                    run_config["ops"] = {"load_plan": {"config": plan}}
                # Only the plan registers what later runs need (the partitions); the stages
                # before it run in memory, which saves a third of their time on the event log.
                result = job.execute_in_process(
                    instance=instance if name == "plan" else dg.DagsterInstance.ephemeral(),
                    run_config=run_config,
                    raise_on_error=False,
                )
                if not result.success:
                    _emit("stage_failed", job=name, error=_failure(result))
                    break
            else:
                _emit("planned", partitions=sorted(instance.get_dynamic_partitions("deal_batches")))
        elif command["do"] == "verify":
            os.environ.update(command["sandbox"])
            result = defs.resolve_job_def("verify").execute_in_process(
                instance=instance,
                run_config={"loggers": QUIET, "resources": {"amocrm": fast}},
                raise_on_error=False,
            )
            if not result.success:
                _emit("verify_failed", error=_failure(result))
        elif command["do"] == "load":
            os.environ.update(command["sandbox"])
            amocrm: dict[str, Any] = {"retry_backoff_seconds": RETRY_BACKOFF_SECONDS}
            if command["client_rps"]:
                amocrm["requests_per_second"] = command["client_rps"]
            ledger = {"lease_seconds": LEASE_SECONDS, "wait_seconds": WAIT_SECONDS}
            run_config = {
                "loggers": QUIET,
                "resources": {"amocrm": {"config": amocrm}},
                "ops": {"ledger__entities": {"config": ledger}},
            }
            job = defs.resolve_job_def("load")
            for key in command["keys"]:
                _emit("start", key=key)
                result = job.execute_in_process(
                    instance=instance,
                    run_config=run_config,
                    partition_key=key,
                    raise_on_error=False,
                )
                error = "" if result.success else _failure(result)
                metadata = _int_metadata(result)
                _emit("done", key=key, success=result.success, error=error, metadata=metadata)
        _emit("idle")
    return 0


def _hold_duckdb(path: str, seconds: float) -> int:
    """On "go" from stdin, open the DuckDB file read-write (waiting while a loader has it)
    and keep it for ``seconds``, as a user's ``duckdb`` shell would; anything else: exit."""
    import duckdb

    if json.loads(sys.stdin.readline() or '""') != "go":
        return 0
    while True:
        try:
            con = duckdb.connect(path)
            break
        except duckdb.Error as exc:
            if "lock" not in str(exc).lower():
                raise
            time.sleep(0.02)
    held_from = time.time()
    time.sleep(seconds)
    con.close()
    _emit("held", **{"from": held_from, "to": time.time()})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The child processes of a trial (not a user command: see ``benchmarks/bench_trials.py``)."""
    parser = argparse.ArgumentParser(prog="python -m migration_pipeline.trials")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run stages and loads as commanded on stdin")
    hold = sub.add_parser("hold-duckdb", help="hold the DuckDB file when told to")
    hold.add_argument("path")
    hold.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve()
    return _hold_duckdb(args.path, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
