"""Members whose wall clocks differ or are stepped, on a real cluster: does cluster time do what
docs/operations.md ("Cluster time") promises?

    python bench/clock_trial [--scenarios ahead,behind,restart,step] [--base-port 38000]
                             [--json OUT] [--keep] [--negative-control]

Three ``aeronpy node`` processes on loopback run clock_trial.probe:ClockProbe (it records the
cluster time, its member's wall clock and the host's monotonic clock of every callback) with
session_timeout_ms = 5000. Each member runs under an LD_PRELOAD shim (clockshift.c, compiled
with gcc into a temporary directory at start) that adds an offset, read from a file, to
CLOCK_REALTIME only: a member started under an offset has a wrong clock from the start, and
writing its file while it runs steps its clock as NTP would; the monotonic clock stays true. The
driver (this process, true clock) keeps client sessions with pings every 250 ms and records the
cluster time of each reply. One cluster per scenario, one after the other:

  ahead    member 0 (true clock) leads; members 1 and 2 run 8 s ahead. Timers +3, +6, +14 s and
           a 1 s chain are scheduled, client 'quiet' falls silent, member 0 is SIGKILLed 2 s
           later. Checks: cluster time jumps to the new leader's clock; the timers due within
           the skew (+3, +6 s) fire at the takeover (within 1 s), the +14 s one when the new
           leader's clock reaches it (8 s early in real time); no session closes but the
           silent one, a session timeout after the takeover; no WARNING.
  behind   the same with members 1 and 2 8 s behind. Checks: cluster time stands still at the
           last stamp until the new leader's clock reaches it, then follows that clock; every
           timer fires when that clock reaches its deadline (8 s late), none while it stands
           still; sessions as above; the new leader logs the WARNING ('leads with its clock
           N s behind cluster time', N the skew less the time since the last stamp, +-0.5 s)
           and counts leader_clock_behind.
  restart  member 0 leads with timers +10, +50, +66 min. Member 1 is restarted 1 h behind,
           catches up (its commit index reaches the leader's within 15 s) and is made leader
           (aeronpy tool transfer-leadership): cluster time stands still, no timer fires, it
           warns ~3600 s behind and counts. Member 1 is restarted 1 h ahead and leads: cluster
           time runs 1 h ahead, the +10 and +50 min timers fire at its takeover, the +66 min one
           not, a +2 s timer fires 2 s later; no warning. Then member 0 (true clock) leads:
           cluster time stays ahead and stands still, it warns ~3600 s behind. No session closes.
  step     member 0 leads; its wall clock is stepped +1 h, then -1 h, then back (at 3, 8, 14 s).
           Checks: the leader's service reads the stepped clock (the shim took), while cluster
           time - real time stays within 0.25 s of its value before the steps and every timer
           fires within 0.25 s of its deadline in real time: cluster time is the wall clock read
           once at start plus the monotonic clock, which no step moves; 0.25 s covers the duty
           cycle, the reply's trip and the driver's 5 ms poll on 2 shared cores. No warning, no
           session closes.

Every scenario also checks that no timer fires before its deadline in cluster time, that no
client sees cluster time go backwards, and that no member logs an ERROR or a traceback.
Exit status: 0 every promise held; 1 one did not, or the run could not be checked; 2 a
prerequisite is missing (gcc, a working shim, a port in 38000-38999 free). ``--negative-control``
expects the opposite of every WARNING expectation (none where one is due, one where none is):
each scenario must then fail.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import List, Optional, Sequence

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(BENCH_DIR), BENCH_DIR]   # the repository's aeronpy; bench's packages

from clock_trial import checks, plan, shim  # noqa: E402
from loss_trial import harness  # noqa: E402

PORT_RANGE = (38000, 38999)
SCENARIO_PORT_STEP = 100              # each scenario its own ports: nothing of the last one lingers


def run_scenario(name: str, base_port: int, lib: str, work_dir: str, negative_control: bool) -> dict:
    from clock_trial.driver import Trial
    from clock_trial.scenarios import RUNNERS

    scenario_dir = os.path.join(work_dir, name)
    os.makedirs(scenario_dir)
    trial = Trial(scenario_dir, base_port, lib)
    problems: List[str] = []
    started = time.monotonic()
    try:
        RUNNERS[name](trial)
    except Exception as e:                                # a member exited, a client could not connect
        problems.append(f"run stopped: {type(e).__name__}: {e}")
    finally:
        trial.close()
    run = trial.run_data()
    figures, failures = checks.CHECKS[name](run, negative_control)
    return {"scenario": name, "what": plan.SCENARIOS[name], "seconds": round(time.monotonic() - started, 1),
            "figures": figures, "failures": problems + failures, "ok": not (problems or failures), "run": run}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=plan.DEFAULT_SCENARIOS,
                        help="comma-separated, run in that order: " + "; ".join(f"{k}: {v}" for k, v in plan.SCENARIOS.items()))
    parser.add_argument("--base-port", type=int, default=38000,
                        help="scenario i uses base + 100i; member m of it + 10m .. + 10m + 2 (all within 38000-38999)")
    parser.add_argument("--json", metavar="OUT", help="write figures, verdicts and every recorded event as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, records)")
    parser.add_argument("--negative-control", action="store_true",
                        help="expect no WARNING where one is due and one where none is: every scenario must fail")
    args = parser.parse_args(argv)
    try:
        names = plan.scenario_names(args.scenarios)
    except ValueError as e:
        parser.error(str(e))
    last_port = args.base_port + SCENARIO_PORT_STEP * (len(names) - 1) + 10 * 2 + 2
    if args.base_port < PORT_RANGE[0] or last_port > PORT_RANGE[1]:
        parser.error(f"--base-port: the scenarios need {args.base_port}..{last_port}, within "
                     f"{PORT_RANGE[0]}-{PORT_RANGE[1]}")
    taken = [p for i in range(len(names)) for p in harness.ports_in_use(args.base_port + SCENARIO_PORT_STEP * i)]
    if taken:
        print(f"clock_trial: ports {taken} are in use (another run?): choose another --base-port", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, harness.raise_exit)
    work_dir = tempfile.mkdtemp(prefix="aeronpy-clock-trial-")
    results = []
    try:
        try:
            lib = shim.build(work_dir)
        except shim.ShimUnavailable as e:
            print(f"clock_trial: {e}", file=sys.stderr)
            return 2
        for i, name in enumerate(names):
            print(f"== {name}: {plan.SCENARIOS[name]}", flush=True)
            result = run_scenario(name, args.base_port + SCENARIO_PORT_STEP * i, lib, work_dir, args.negative_control)
            results.append(result)
            for line in result["figures"]:
                print(f"  {line}")
            print(f"  {name}: {'held' if result['ok'] else 'FAILED'} ({result['seconds']:g} s)", flush=True)
            for line in result["failures"][:20]:
                print(f"    - {line}")
    except KeyboardInterrupt:
        print("clock_trial: interrupted", file=sys.stderr)
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)         # a second Ctrl-C must not skip the clean-up
        if args.keep:
            print(f"work directory kept: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    failed = [r["scenario"] for r in results if not r["ok"]]
    print("verdict: " + ("every scenario held" if not failed else f"FAILED: {', '.join(failed)}")
          + (" (negative control: every scenario must fail)" if args.negative_control else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"scenarios": names, "negative_control": args.negative_control, "ok": not failed,
                       "results": results}, f, indent=1)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
