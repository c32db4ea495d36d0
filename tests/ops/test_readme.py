"""README.md's "A service and a client" runs as written: its service module, its cluster file
(on free ports), its three ``aeronpy node`` commands and its client snippet, whose comment
says what it prints. A change that breaks the first thing a user copies fails here."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _section_blocks(title: str) -> list:
    """(language, text) of each fenced block in README.md's section ``title``."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def test_the_readme_service_and_client_run_as_written(tmp_path):
    from aeronpy.testing.process_cluster import child_env, free_udp_ports
    blocks = _section_blocks("A service and a client")
    assert [lang for lang, _ in blocks] == ["python", "toml", "bash", "python"], blocks
    service, toml, commands, client = [text for _, text in blocks]

    # the cluster file's ports, each replaced by a free one
    ports = sorted(set(int(p) for p in re.findall(r"_port = (\d+)", toml)))
    assert len(ports) == 6
    free = free_udp_ports(len(ports))
    mapping = {str(old): str(new) for old, new in zip(ports, free)}
    renumber = lambda s: re.sub(r"\b(\d{5})\b", lambda m: mapping.get(m.group(1), m.group(1)), s)
    (tmp_path / "cluster.toml").write_text(renumber(toml))
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "counter.py").write_text(service)

    env = child_env(str(tmp_path))
    nodes = []
    try:
        for line in commands.strip().splitlines():
            argv = shlex.split(line.rstrip("& "))
            assert argv[0] == "aeronpy" and argv[1] == "node", line
            argv = [a.replace("/tmp/", f"{tmp_path}/") for a in argv]
            log = open(tmp_path / f"node{len(nodes)}.log", "wb")
            nodes.append((subprocess.Popen([sys.executable, "-m", "aeronpy"] + argv[1:],
                                           cwd=tmp_path, env=env, stdout=log,
                                           stderr=subprocess.STDOUT), log))
        expected = re.search(r"#\s*(b'[^']*')", client).group(1)
        done = subprocess.run([sys.executable, "-c", renumber(client)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr + _logs(tmp_path, len(nodes))
        assert done.stdout.strip() == expected, done.stdout
        assert all(p.poll() is None for p, _ in nodes), _logs(tmp_path, len(nodes))
    finally:
        for p, log in nodes:
            p.terminate()
        deadline = time.monotonic() + 15
        for p, log in nodes:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log.close()


def _logs(tmp_path, count: int) -> str:
    out = []
    for i in range(count):
        path = tmp_path / f"node{i}.log"
        out.append(f"\n--- node {i} ---\n" + (path.read_text(errors="replace")[-2000:]
                                              if path.exists() else "(no log)"))
    return "".join(out)


def test_the_readme_embedding_sentence_names_real_calls(tmp_path):
    """The paragraph after the client snippet: NodeConfig.from_toml(path, member_id=0) and
    ClusterNode(config, services=[...]) with start()/do_work()."""
    import aeronpy
    toml = [text for lang, text in _section_blocks("A service and a client") if lang == "toml"][0]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert 'aeronpy.ClusterNode(aeronpy.NodeConfig.from_toml("cluster.toml",\nmember_id=0), ' \
           'services=[Counter()])' in readme
    (tmp_path / "cluster.toml").write_text(toml)
    config = aeronpy.NodeConfig.from_toml(str(tmp_path / "cluster.toml"), member_id=0)
    assert config.member.id == 0
    assert callable(getattr(aeronpy.ClusterNode, "start")) and \
        callable(getattr(aeronpy.ClusterNode, "do_work"))
