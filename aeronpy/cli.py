"""The ``aeronpy`` command: run a node, inspect and operate one, and start the demo/bench/backup.

    aeronpy node --config cluster.toml --member-id 0 [--data-dir DIR] [--cpu-affinity 0,2]
                 --service pkg.mod:Class ...
    aeronpy tool COMMAND --data-dir DIR [--json]
    aeronpy demo|bench|backup [ARGS...]

Errors that are the operator's (bad config, bad --service, missing data) print one line naming
the cause and exit with status 2; nothing prints a traceback for them. Ctrl-C is one line
too, and status 130. A node that fails
(a service raised, while starting or running) exits with status 4: its last stderr line names
the cause, and errors.log in its data dir holds the traceback (``aeronpy tool errors``).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import json
import logging
import os
import signal
import sys
import threading
from typing import Callable, Optional, Sequence

from aeronpy.errors import AeronpyError, ConfigError

EXIT_OK, EXIT_NO, EXIT_USAGE, EXIT_NOT_AVAILABLE, EXIT_NODE_FAILED = 0, 1, 2, 3, 4
_DISK_FULL_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
EXIT_INTERRUPTED = 130                  # 128 + SIGINT, as a shell reports a Ctrl-C
TIMEOUT_MAX_S = 3600.0                  # --timeout: above an hour is a typo (milliseconds?)


class ServiceLoadError(AeronpyError):
    """A ``--service module:Class`` could not be imported, found or constructed."""


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _import_optional(module: str) -> Optional[object]:
    """Import ``module``, or None when it (not something it imports) does not exist."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module == missing or module.startswith(missing + "."):
            return None
        raise


# -- node -----------------------------------------------------------------------------------------

def load_service(spec: str) -> object:
    """Import ``pkg.module:ClassName`` and construct it; it must be a ClusteredService subclass."""
    from aeronpy.service import ClusteredService

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ServiceLoadError(f"--service {spec!r}: expected module:ClassName, "
                               "e.g. myapp.matching:MatchingEngine")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: services next to the config
    try:
        module = _import_optional(module_name)
    except Exception as exc:  # the service's own module failed while importing
        raise ServiceLoadError(f"--service {spec!r}: importing {module_name} failed: "
                               f"{type(exc).__name__}: {exc}") from exc
    if module is None:
        raise ServiceLoadError(f"--service {spec!r}: no module named {module_name!r} "
                               f"(is it on PYTHONPATH? working directory: {os.getcwd()})")
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ServiceLoadError(f"--service {spec!r}: module {module_name} has no {attr!r}")
        target = getattr(target, part)
    if not isinstance(target, type) or not issubclass(target, ClusteredService):
        raise ServiceLoadError(f"--service {spec!r}: {module_name}:{attr} is not a subclass of "
                               "aeronpy.ClusteredService")
    try:
        return target()
    except Exception as exc:
        raise ServiceLoadError(f"--service {spec!r}: {attr}() raised "
                               f"{type(exc).__name__}: {exc}") from exc


def _cluster_node_class() -> Optional[type]:
    module = _import_optional("aeronpy.cluster.node")
    return None if module is None else getattr(module, "ClusterNode", None)


def freeze_start_up_objects() -> None:
    """Keep full collections off a running node's request path (call once start-up is done).

    ``gc.freeze()`` moves every object alive after start-up (modules, config, recovered
    state) to a generation the collector never scans: a full collection then walks only what
    the node made since (measured on a 3-node process cluster: the start-up full collection
    takes 26-31 ms; steady-state request handling makes about one young collection per 2,000
    requests, so the generation thresholds are left alone)."""
    import gc

    gc.collect()      # what start-up left as cyclic garbage is freed, not frozen forever
    gc.freeze()


def parse_cpu_list(text: str) -> list:
    """``--cpu-affinity 0,2``: comma-separated CPU ids (NodeConfig checks them further)."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and part.isascii() for part in parts):
        raise ConfigError("cpu_affinity", f"--cpu-affinity {text!r}: expected comma-separated "
                                          "non-negative CPU ids, e.g. 0,2")
    return [int(part) for part in parts]


def cmd_node(args: argparse.Namespace) -> int:
    from aeronpy.cluster.config import NodeConfig
    from aeronpy.cluster.logsetup import configure_cli_logging, node_logger

    overrides: dict = {}
    try:
        if args.data_dir is not None:     # an empty one is refused by NodeConfig, not ignored
            overrides["data_dir"] = args.data_dir
        if args.cpu_affinity is not None:
            overrides["cpu_affinity"] = parse_cpu_list(args.cpu_affinity)
        config = NodeConfig.from_toml(args.config, member_id=args.member_id, **overrides)
        services = [load_service(spec) for spec in args.service]
        config.check_startable()
    except ConfigError as exc:
        _err(f"aeronpy node: configuration error: {exc}")
        return EXIT_USAGE
    except ServiceLoadError as exc:
        _err(f"aeronpy node: {exc}")
        return EXIT_USAGE
    node_class = _cluster_node_class()
    if node_class is None:
        _err("aeronpy node: the node agent (aeronpy.cluster.node.ClusterNode) is not available "
             "in this build yet; the configuration and services above loaded fine")
        return EXIT_NOT_AVAILABLE
    configure_cli_logging(config.log_level)
    log = node_logger(config.member_id)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            # A second signal while closing: close() waits for the duty cycle, and a service
            # callback that never returns would hold it for ever. Exit now, as kill -9 would:
            # what the log holds stays (the page cache outlives the process), on_terminate
            # is not called, and the others elect a leader if this member led.
            log.warning("received %s again while closing: exiting at once, without finishing "
                        "the close (as kill -9 would)", name)
            logging.shutdown()
            os._exit(128 + signum)
        log.info("received %s: closing (send it again to exit at once)", name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    # a hang-up (the terminal or ssh session went away) closes in order too, as Aeron's JVM
    # does, instead of killing the node as kill -9 would; kept ignored when it is (nohup)
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is not None and signal.getsignal(sighup) is not signal.SIG_IGN:
        signal.signal(sighup, on_signal)
    try:
        node = node_class(config, services=services)
    except ConfigError as exc:
        _err(f"aeronpy node: configuration error: {exc}")
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - failed while starting: as a failure while running
        return _failed_at_start(config, exc, log)
    failure = None
    try:
        freeze_start_up_objects()
        node.start()
        while not stop.wait(0.2):
            if getattr(node, "closed", False):   # the node stopped itself (e.g. cluster shutdown)
                break
            # A failed node (a service callback raised, the archive could not write ...) has
            # stopped its duty cycle; the process exits too, non-zero, so a supervisor sees it.
            failure = getattr(node, "failure", None)
            if failure is not None:
                break
    finally:
        node.close()   # also stops its metrics server (metrics_http_port)
    # a failure met while closing (the final sync's EIO, a hand-over a service broke) counts too
    failure = failure or getattr(node, "failure", None)
    if failure is not None:
        _err(f"aeronpy node: member {config.member_id} failed and stopped: "
             f"{type(failure).__name__}: {failure} ({_where_the_traceback_is(config.data_dir)})")
        return EXIT_NODE_FAILED
    return EXIT_OK


def _where_the_traceback_is(data_dir: str) -> str:
    return (f"traceback in {os.path.join(data_dir, 'errors.log')}: "
            f"aeronpy tool errors --data-dir {data_dir}")


def _failed_at_start(config: object, exc: Exception, log: object) -> int:
    """The node raised while starting (recovery, a snapshot that does not fit the services, a
    service's on_start): as a node that fails while running, exit 4 with one line naming the
    cause, the traceback in errors.log and the counters saying FAILED."""
    from aeronpy.cluster.nodefiles import record_failed_start

    service_error = _import_optional("aeronpy.cluster.container")
    service_error = getattr(service_error, "ServiceError", ()) if service_error else ()
    snapshot_error = _import_optional("aeronpy.cluster.snapshotting")
    snapshot_error = getattr(snapshot_error, "SnapshotFileError", ()) if snapshot_error else ()
    logged = True
    disk_full = (isinstance(exc, OSError) and not isinstance(exc, AeronpyError)
                 and exc.errno in _DISK_FULL_ERRNOS)
    if isinstance(exc, service_error):
        pass          # the service container has logged it with the service's traceback
    elif isinstance(exc, (AeronpyError, snapshot_error)) or disk_full:
        log.debug("start-up failure", exc_info=exc)   # the message says it all
        logged = False
    else:
        log.error("node failed while starting", exc_info=exc)
    try:
        slots = _node_counter_layout()
        recorded = record_failed_start(config, exc, **slots)
    except Exception as record_exc:  # noqa: BLE001 - never hide the first failure behind this one
        log.warning("could not record the failure in %s: %r", config.data_dir, record_exc)
        recorded, logged = False, True
    where = (_where_the_traceback_is(config.data_dir) if recorded
             else "not recorded in the data dir" + (": see the log above" if logged else ""))
    hint = ""
    if isinstance(exc, snapshot_error) and "service streams" in str(exc):
        hint = ("; the snapshot was taken by members hosting another set of services: start "
                "this member with the --service list the cluster was started with (adding a "
                "service to an existing cluster: docs/operations.md, \"Changing the set of "
                "services\")")
    cause = f"{type(exc).__name__}: {exc}"
    if disk_full:     # a file of the data dir's the disk had no room for (counters.dat, ...)
        cause = (f"the disk is full under data dir {config.data_dir} ({cause}): free space "
                 "and start the node again")
    _err(f"aeronpy node: member {config.member_id} failed while starting and stopped: "
         f"{cause}{hint} ({where})")
    return EXIT_NODE_FAILED


def _node_counter_layout() -> dict:
    """The node's extra counter slots and enum names, so a failed start's counters file reads
    as the node's own would (standard slots only when those modules are missing)."""
    admin = _import_optional("aeronpy.cluster.node_admin")
    counters = _import_optional("aeronpy.cluster.node_counters")
    extra = (tuple(getattr(counters, "TRANSPORT_EXTRA_SLOTS", ()))
             + tuple(getattr(admin, "ADMIN_EXTRA_SLOTS", ()))
             + tuple(getattr(counters, "REFUSAL_EXTRA_SLOTS", ())))
    return {"extra_slots": extra, "enum_names": getattr(admin, "ENUM_NAMES", None)}


# -- tool -----------------------------------------------------------------------------------------

def _reader_gone() -> None:
    """stdout's reader went away (``aeronpy tool describe | head``): what is still to be
    written goes nowhere, with no traceback now or when Python flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _say(text: str, stream: object = None) -> None:
    """Print ``text`` and flush it at once, so a reader that went away is met here (and the
    command still exits with its own status), not at exit."""
    stream = sys.stdout if stream is None else stream
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        if stream is sys.stdout:
            _reader_gone()


def _print_result(result: object, as_json: bool) -> int:
    if as_json:
        _say(json.dumps(result.data, indent=2, sort_keys=True, default=str))
    else:
        stream = sys.stdout if result.exit_code in (0, 1) else sys.stderr
        _say(result.text, stream)
    for warning in getattr(result, "warnings", ()):   # stdout stays the answer alone
        _err(warning)
    return result.exit_code


def cmd_tool(args: argparse.Namespace) -> int:
    from aeronpy.cluster import admin, tool

    command, data_dir = args.tool_command, args.data_dir
    if command == "metrics" and args.serve_metrics is not None:
        return _serve_metrics(data_dir, args.serve_metrics)
    if command == "errors":
        try:
            result = _errors_with_tracebacks(data_dir)
        except (AeronpyError, OSError) as exc:   # a FIFO or directory as errors.log, ...
            result = tool.read_failure(exc, data_dir)
        return _print_result(result, args.json)
    if command in tool.LOCAL_COMMANDS:
        return _print_result(tool.run_local(command, data_dir), args.json)
    kwargs = {}
    if getattr(args, "timeout", None) is not None:
        kwargs["timeout_s"] = args.timeout
    if getattr(args, "to", None) is not None:
        kwargs["to"] = args.to
    try:
        data = admin.COMMAND_FUNCTIONS[command](data_dir, **kwargs)
    except admin.AdminNotAvailableError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "available": False}))
        _err(str(exc))
        return EXIT_NOT_AVAILABLE
    except (AeronpyError, OSError) as exc:
        # AeronpyError: refused, no answer, a FIFO or a directory where a data dir file
        # belongs (named); OSError: a file of the data dir that cannot be read
        _err(f"aeronpy tool {command}: {tool.error_text(exc)}")
        return EXIT_USAGE
    _say(json.dumps(data, indent=2, sort_keys=True, default=str) if args.json
         else "\n".join(readable_lines(data)))
    # an action sent but not seen to take effect here within the timeout: a "no" answer
    if data.get("completed") is False or data.get("recorded") is False:
        return EXIT_NO
    if command == "recovery-plan" and "problem" in data:   # a node would not start as is
        return EXIT_NO
    return EXIT_OK


def readable_lines(data: dict, indent: str = "") -> list:
    """``key: value`` lines for people: a nested dict as indented lines under its key, a list
    of dicts as one ``- k: v, k: v`` line per item, a list of plain values comma-separated."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:" + ("" if value else " none"))
            lines += readable_lines(value, indent + "  ")
        elif isinstance(value, (list, tuple)):
            if not value:
                lines.append(f"{indent}{key}: none")
            elif all(isinstance(item, dict) for item in value):
                lines.append(f"{indent}{key}:")
                lines += [f"{indent}  - " + ", ".join(f"{k}: {_readable(v)}" for k, v in item.items())
                          for item in value]
            else:
                lines.append(f"{indent}{key}: " + ", ".join(_readable(v) for v in value))
        else:
            lines.append(f"{indent}{key}: {_readable(value)}")
    return lines


def _readable(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _errors_with_tracebacks(data_dir: str) -> object:
    """``aeronpy tool errors``: the tool's list, each entry followed by the traceback recorded
    with its first occurrence (JSON: a ``traceback`` key per entry)."""
    from aeronpy.cluster import tool
    from aeronpy.cluster.counters import CountersUnavailableError
    from aeronpy.cluster.nodefiles import read_errors

    result = tool.errors(data_dir)
    if result.exit_code != EXIT_OK or not result.data:
        return result
    try:
        entries = read_errors(data_dir)
    except CountersUnavailableError:
        return result
    data, lines = [], []
    for e in entries:
        row = {"first": tool.iso_time(e.first_ns), "last": tool.iso_time(e.last_ns),
               "count": e.count, "text": e.text, "traceback": e.detail}
        data.append(row)
        lines.append(f"{row['first']}  x{row['count']:<5} {row['text']}" +
                     (f"  (last {row['last']})" if row["count"] > 1 else ""))
        lines += ["    " + line for line in e.detail.splitlines()]
    return tool.ToolResult(EXIT_OK, data, "\n".join(lines))


def _serve_metrics(data_dir: str, port: int) -> int:
    from aeronpy.cluster.metrics import MetricsServer

    try:
        server = MetricsServer(data_dir, port)
    except OSError as exc:
        _err(f"aeronpy tool metrics: --serve-metrics {port}: cannot listen on 127.0.0.1:{port}: "
             f"{exc.strerror or exc}")
        return EXIT_USAGE
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"serving {server.url} from {data_dir}; Ctrl-C to stop", flush=True)
    try:
        stop.wait()
    finally:
        server.close()
    return EXIT_OK


# -- demo / bench / backup ------------------------------------------------------------------------

def _dispatch(what: str, candidates: Sequence[str], argv: list) -> int:
    for module_name in candidates:
        module = _import_optional(module_name)
        entry: Optional[Callable] = getattr(module, "main", None) if module else None
        if entry is not None:
            result = entry(argv)
            return result if isinstance(result, int) else EXIT_OK
    _err(f"aeronpy {what}: not available in this build (looked for "
         f"{', '.join(c + ':main' for c in candidates)})")
    return EXIT_NOT_AVAILABLE


def cmd_demo(args: argparse.Namespace) -> int:
    return _dispatch("demo", ["aeronpy.demo"], args.args)


def cmd_bench(args: argparse.Namespace) -> int:
    return _dispatch("bench", ["bench.cluster_bench", "aeronpy.bench"], args.args)


def cmd_backup(args: argparse.Namespace) -> int:
    return _dispatch("backup", ["aeronpy.cluster.backup"], args.args)


# -- parser ---------------------------------------------------------------------------------------

TOOL_HELP = {
    "describe": "all counters, members, leader, term, liveness and recent errors",
    "list-members": "the members and which one leads",
    "is-leader": "exit code 0 if this node is running and leads, 1 otherwise",
    "pid": "the node's pid, also a hung node's (exit 1 if it is not running)",
    "errors": "the distinct errors recorded, with timestamps and counts",
    "metrics": "Prometheus text format from the counters (--serve-metrics PORT to serve it)",
    "snapshot": "take a snapshot on every member (through the log)",
    "suspend": "stop sequencing client messages until resume",
    "resume": "resume sequencing after suspend",
    "shutdown": "orderly shutdown with a final snapshot on every member",
    "abort": "stop every member without a snapshot",
    "transfer-leadership": "hand the leadership to another member (--to ID, default the most "
                           "up-to-date follower)",
    "recording-log": "the recording log: term starts and snapshots",
    "recovery-plan": "what a node started on this data dir would load and replay",
    "new-member": "prepare an empty data dir for a member that has never run (never for one that ran)",
}


def request_timeouts() -> dict:
    """The tool commands that send a request to a running member, with their default timeout
    (seconds): each gets ``--timeout``."""
    import inspect

    from aeronpy.cluster import admin

    timeouts = {}
    for name, func in admin.COMMAND_FUNCTIONS.items():
        param = inspect.signature(func).parameters.get("timeout_s")
        if param is not None:
            timeouts[name] = param.default
    return timeouts


def _member_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a member id (an integer)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a member id is 0 or more")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= TIMEOUT_MAX_S:     # NaN, inf, 0, negative, or an hour and more
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds above 0 and "
                                         f"at most {TIMEOUT_MAX_S:g}")
    return value


def _tcp_port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port number from 0 to 65535")
    return value


def _package_version() -> str:
    from aeronpy import __version__
    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aeronpy", description="aeronpy cluster node and tools")
    # members, tools and backups must run one version (docs/operations.md): say which
    parser.add_argument("--version", action="version", version=f"aeronpy {_package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    node = sub.add_parser("node", help="run one cluster node",
                          description="Run one cluster node until SIGTERM, SIGINT or SIGHUP.")
    node.add_argument("--config", required=True, help="TOML configuration file")
    node.add_argument("--member-id", type=int, default=None,
                      help="which [[members]] entry this node is (overrides member_id in the file)")
    node.add_argument("--data-dir", default=None, help="overrides data_dir in the file")
    node.add_argument("--cpu-affinity", default=None, metavar="CPUS",
                      help="pin the node's duty-cycle thread to these CPUs, e.g. 0,2 "
                           "(overrides cpu_affinity in the file; Linux only)")
    node.add_argument("--service", action="append", required=True, metavar="MODULE:CLASS",
                      help="a ClusteredService subclass to host; repeat for service ids 1, 2, ...")
    node.set_defaults(func=cmd_node)

    tool_parser = sub.add_parser("tool", help="inspect or operate a node through its data dir")
    tool_sub = tool_parser.add_subparsers(dest="tool_command", metavar="TOOL_COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", required=True, help="the node's data directory")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    timeouts = request_timeouts()
    for name, text in TOOL_HELP.items():
        p = tool_sub.add_parser(name, parents=[common], help=text, description=text)
        if name == "metrics":
            p.add_argument("--serve-metrics", type=_tcp_port, default=None, metavar="PORT",
                           help="serve http://127.0.0.1:PORT/metrics until interrupted "
                                "(0: a free port, printed)")
        if name == "transfer-leadership":
            p.add_argument("--to", type=_member_id, default=None, metavar="ID",
                           help="the member to hand it to (default: the follower most up to date)")
        if name in timeouts:
            p.add_argument("--timeout", type=_positive_seconds, default=None, metavar="SECONDS",
                           help="how long to wait for the cluster's answer and for the effect "
                                f"on this member (default {timeouts[name]:g})")
    tool_parser.set_defaults(func=cmd_tool)

    for name, func, text in (("demo", cmd_demo, "run the demo"),
                             ("bench", cmd_bench, "run the cluster benchmark"),
                             ("backup", cmd_backup, "back up a cluster member")):
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)
    return parser


_PASSTHROUGH = {"demo": cmd_demo, "bench": cmd_bench, "backup": cmd_backup}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASSTHROUGH:   # every later argument, options too, is theirs
        try:
            return _PASSTHROUGH[argv[0]](argparse.Namespace(args=argv[1:]))
        except KeyboardInterrupt:          # before its own handling (while importing it)
            _err(f"aeronpy {argv[0]}: interrupted")
            return EXIT_INTERRUPTED
    args = build_parser().parse_args(argv)
    code = EXIT_OK
    try:
        code = args.func(args)
        sys.stdout.flush()      # a reader gone now is met here, not by Python at exit
        return code
    except KeyboardInterrupt:   # Ctrl-C: one line, no traceback
        _err(_interrupted_text(args))
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (``aeronpy tool describe | head``): no traceback about it, and
        # none at exit when Python flushes stdout either
        _reader_gone()
        return code


def _interrupted_text(args: argparse.Namespace) -> str:
    tool_command = getattr(args, "tool_command", None)
    if tool_command is None:
        return f"aeronpy {args.command}: interrupted"
    text = f"aeronpy tool {tool_command}: interrupted"
    if tool_command in request_timeouts():
        text += (" (the request may have reached the cluster: see 'aeronpy tool describe "
                 f"--data-dir {args.data_dir}')")
    return text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
