"""What the cluster trials (bench/*_trial) share: a cluster of
``aeronpy node`` processes running ApplyCountingService, the load client processes, the end of
a run (clients waited for, members settled and stopped), their results, the verdict's tail, a
run in a work directory (and inside an iptables chain) cleaned up whatever happens, and the
members' ports, errors and ``--node-config`` items."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from aeronpy.testing.process_cluster import ProcessCluster, child_env

from loss_trial import netfilter
from loss_trial.checker import ACKED, check_agreement, check_exactly_once
from loss_trial.service import DOUBLE_APPLY_ENV

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE = "loss_trial.service:ApplyCountingService"
CLIENT_MAIN = "import sys; from loss_trial.clients import client_main; client_main(sys.argv[1:])"
MEMBERS = 3
# (kind, tag, requests/s per client or per asyncio task; 0: closed loop); tags name the payloads
CLIENTS = (("sync", "s0", 200.0), ("sync", "s1", 200.0), ("sync", "b0", 0.0), ("async", "a0", 50.0))
CLIENT_LATE = "client {tag} still running 30 s after its end: killed"
NO_RESULT_HINT = "; see client-{tag}.log (--keep keeps it)"


class MissingPrerequisite(Exception):
    """What the trial needs is missing (gcc, a shim that works): exit status 2, not a finding."""


def raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def member_ports(base: int, members: int = MEMBERS) -> List[Dict[str, int]]:
    """Member i uses base + 10i (consensus), + 1 (ingress), + 2 (admin)."""
    return [{"consensus_port": base + 10 * i, "ingress_port": base + 10 * i + 1,
             "admin_port": base + 10 * i + 2} for i in range(members)]


def new_cluster(work_dir: str, out_dir: str, negative_control: bool, cluster_class=ProcessCluster,
                **kwargs) -> ProcessCluster:
    """The cluster (not started) whose members write what they applied into ``out_dir``;
    ``negative_control``: each applies its 100th message twice."""
    env = {"PYTHONPATH": BENCH_DIR, "AERONPY_HASH_DIR": out_dir}
    if negative_control:
        env[DOUBLE_APPLY_ENV] = "100"
    return cluster_class(members=MEMBERS, services=[SERVICE], base_dir=os.path.join(work_dir, "cluster"),
                         env=env, **kwargs)


def start_cluster(cluster: ProcessCluster, problems: List[str]) -> bool:
    """Start every member; False (and a problem) if no leader within 20 s."""
    cluster.start()
    if cluster.leader(timeout_s=20) is None:
        problems.append("no leader within 20 s")
        return False
    cluster.check_running(wait_up_s=10)
    return True


def start_clients(cluster: ProcessCluster, work_dir: str, out_dir: str, duration_s: float,
                  clients: Sequence[tuple] = CLIENTS) -> List[subprocess.Popen]:
    """One process per (kind, tag, rate) of ``clients``, sending for ``duration_s``; each writes
    ``client-<tag>.json`` into ``out_dir`` and logs to ``client-<tag>.log`` in ``work_dir``."""
    procs = []
    for kind, tag, rate in clients:
        with open(os.path.join(work_dir, f"client-{tag}.log"), "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", CLIENT_MAIN, kind, tag, cluster.ingress_endpoints,
                 str(duration_s), str(rate), os.path.join(out_dir, f"client-{tag}.json")],
                env=child_env(BENCH_DIR), cwd=work_dir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True))
    return procs


def wait_clients(clients: Sequence[subprocess.Popen], clients_end: float, problems: List[str],
                 late: str = CLIENT_LATE) -> None:
    """Wait for each client until 30 s past ``clients_end`` (monotonic); one still running is
    a problem (``late`` names it by {tag}) and is killed by :func:`close`."""
    for client in clients:
        try:
            client.wait(timeout=max(1.0, clients_end + 30 - time.monotonic()))
        except subprocess.TimeoutExpired:
            problems.append(late.format(tag=client.args[4]))


def end_run(cluster: ProcessCluster, clients: Sequence[subprocess.Popen], clients_end: float,
            problems: List[str]) -> None:
    """The clients finish, the members settle and stop with SIGTERM (each writes what it applied)."""
    cluster.check_running()                               # a member that died by itself: its log tail
    wait_clients(clients, clients_end, problems)
    try:
        cluster.wait_settled(timeout_s=30)
    except TimeoutError as e:
        problems.append(str(e))
    for member in range(cluster.members):
        cluster.kill(member, signal.SIGTERM, wait_s=30)


def close(cluster: Optional[ProcessCluster], clients: Sequence[subprocess.Popen]) -> None:
    """Kill what still runs; the cluster's directories stay (logs, counters)."""
    for client in clients:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=10)
    if cluster is not None:
        cluster.close(remove=False)


def load_records(out_dir: str, problems: List[str], clients: Sequence[tuple] = CLIENTS,
                 hint: str = NO_RESULT_HINT) -> List[list]:
    """[sent_at, latency_ns, outcome, payload, reply, paced] of every request of every client."""
    records = []
    for _, tag, _ in clients:
        try:
            with open(os.path.join(out_dir, f"client-{tag}.json")) as f:
                result = json.load(f)
        except (OSError, ValueError) as e:
            problems.append(f"client {tag}: no result ({e})" + hint.format(tag=tag))
            continue
        records += [r + [result["paced"]] for r in result["records"]]
    return records


def load_applied(out_dir: str, members: int = MEMBERS) -> Dict[int, Optional[dict]]:
    """What each member applied (payload -> times), None for a member that wrote nothing."""
    applied: Dict[int, Optional[dict]] = {}
    for member in range(members):
        try:
            with open(os.path.join(out_dir, f"member-{member}.json")) as f:
                applied[member] = json.load(f)["applied"]
        except (OSError, ValueError):
            applied[member] = None
    return applied


def verdict(records: Sequence[list], applied: Mapping[int, Optional[dict]],
            members: int = MEMBERS) -> Tuple[int, int, List[str]]:
    """(acknowledged, sent, violations of exactly-once and agreement)."""
    requests = [(r[3], r[2], r[4]) for r in records]
    acked = sum(1 for _, outcome, _ in requests if outcome == ACKED)
    return acked, len(requests), check_exactly_once(requests, applied, range(members)) + check_agreement(applied)


def finish_report(args, acked: int, held: str, failures: List[str], work_dir: str,
                  json_fields: Mapping[str, object]) -> int:
    """Print the verdict line and the failures (at most 30), write ``--json`` (``json_fields``
    then ok and failures); the exit status: 0 held, 1 not."""
    print(f"{acked} acknowledged requests; " + (held if not failures else
          f"FAILED, {len(failures)} violations or problems:"))
    for line in failures[:30]:
        print("  " + line)
    if len(failures) > 30:
        print(f"  ... and {len(failures) - 30} more")
    if args.keep:
        print(f"work directory kept: {work_dir}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**json_fields, "ok": not failures, "failures": failures}, f, indent=1)
    return 0 if not failures else 1


def run_in_work_dir(name: str, args, run_trial: Callable, report: Callable, *, load: bool = True,
                    clean_up: Callable[[], None] = lambda: None) -> int:
    """Run ``run_trial(args, work_dir, problems)`` in a fresh work directory (removed at the end
    unless ``args.keep``), with SIGTERM and SIGHUP raising SystemExit into the ``finally``s; with
    ``load``, load what the clients and members wrote; call ``clean_up`` whatever happens, then
    return ``report(args, trial, problems, work_dir)``. Ctrl-C: 130; MissingPrerequisite: 2."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_exit)
    work_dir = tempfile.mkdtemp(prefix=f"aeronpy-{name.replace('_', '-')}-")
    problems: List[str] = []
    trial: Dict[str, object] = {}
    try:
        try:
            trial = run_trial(args, work_dir, problems)
            if trial and load:
                trial["loaded"] = load_records(trial["out_dir"], problems), load_applied(trial["out_dir"])
        except MissingPrerequisite as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{name}: interrupted", file=sys.stderr)
            return 130
        except RuntimeError as e:                         # a member exited, iptables refused a rule
            problems.append(f"run stopped: {e}")
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)     # a second Ctrl-C must not skip the clean-up
            clean_up()
        return report(args, trial, problems, work_dir)
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)


def run_in_chain(name: str, args, run_trial: Callable, report: Callable, *, chain: str, verb: str,
                 probe_statistic: bool, load: bool = True) -> int:
    """Install the iptables ``chain`` (exit 2 if it cannot be), then :func:`run_in_work_dir`,
    removing the chain at the end (also on an error, Ctrl-C or SIGTERM)."""
    why_not = netfilter.missing_prerequisite(chain, verb)
    if why_not is None:
        why_not = netfilter.install_chain(chain, probe_statistic)
        if why_not:
            netfilter.remove_chain(chain)                 # ours, half installed
    if why_not:
        print(f"{name}: {why_not}", file=sys.stderr)
        return 2

    def remove_chain() -> None:
        if not netfilter.remove_chain(chain):
            print(f"{name}: could not remove the chain; run: {netfilter.remove_chain_command(chain)}",
                  file=sys.stderr)

    return run_in_work_dir(name, args, run_trial, report, load=load, clean_up=remove_chain)


def ports_in_use(base_port: int) -> List[int]:
    """The cluster's ports (UDP consensus and ingress, TCP and UDP admin) that cannot be bound now."""
    taken = []
    for ports in member_ports(base_port):
        for port in ports.values():
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError:
                        taken.append(port)
                        break
    return taken


def config_item(item: str) -> Tuple[str, object]:
    """"key=123" -> ("key", 123); "key=text" -> ("key", "text") (``--node-config``)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {item!r}")
    try:
        return key.strip(), int(value)
    except ValueError:
        return key.strip(), value.strip()


def member_errors(cluster: ProcessCluster) -> List[str]:
    """The errors each member recorded (``aeronpy tool errors``) and its log's error lines."""
    found = []
    for member in range(cluster.members):
        tool = subprocess.run([sys.executable, "-m", "aeronpy", "tool", "errors", "--data-dir",
                               cluster.data_dir(member), "--json"], capture_output=True, text=True,
                              timeout=30, env=child_env(BENCH_DIR))
        try:
            found += [f"member {member} errors: {json.dumps(e)[:400]}" for e in json.loads(tool.stdout)]
        except ValueError:
            found.append(f"member {member}: aeronpy tool errors failed: {(tool.stdout + tool.stderr)[:300]}")
        try:
            with open(cluster.log_path(member), errors="replace") as f:
                found += [f"member {member} log: {line.rstrip()[:400]}" for line in f
                          if "Traceback" in line or " ERROR " in line or "CRITICAL" in line]
        except OSError:
            pass
    return found
