"""``identity``: which member of which cluster a data dir belongs to.

A data dir holds one member's log, term and vote. Started under another member id it gives two
members one history (and the vote of one to the other); started under another cluster id its
log, if its last term is higher, wins an election there and replicates a foreign history into
that cluster. Nothing on disk used to say whose a data dir was, so both started without a word
(found by an adversarial review). A node now writes this file at its first start and refuses
to start on a data dir whose file names another member or cluster.

32 bytes: 8-byte magic ``AERPYIDN``, u32 version (1), i32 member id, i64 cluster id, u32
reserved (0), u32 CRC-32C of bytes [0, 28). Written to ``identity.tmp``, fsynced, renamed,
directory fsynced. A data dir from a version before this file adopts the identity it is
started with (there is nothing to check it against).
"""
from __future__ import annotations

import os
import struct

from aeronpy._crc import crc32c
from aeronpy.errors import ConfigError

IDENTITY_FILE = "identity"
_MAGIC = b"AERPYIDN"
_VERSION = 1
_LAYOUT = struct.Struct("<8sIiqII")


def check_identity(data_dir: str, cluster_id: int, member_id: int) -> None:
    """Refuse (ConfigError) a data dir that belongs to another member or cluster; record this
    one's identity when the data dir has none yet."""
    path = os.path.join(data_dir, IDENTITY_FILE)
    found = _read(path)
    if found is None:
        _write(data_dir, cluster_id, member_id)
        return
    their_cluster, their_member = found
    if (their_cluster, their_member) != (cluster_id, member_id):
        raise ConfigError(
            "data_dir", f"{data_dir} belongs to member {their_member} of cluster {their_cluster}, "
            f"not member {member_id} of cluster {cluster_id}: a data dir holds one member's log "
            "and vote, and starting it as another would give two members one history. Start "
            f"it with --member-id {their_member} and that cluster's config, or give this member "
            f"an empty data dir. (If the data dir really moved, delete {path}.)")


def _read(path: str):
    from aeronpy.archive.fs import NotARegularFileError, read_regular
    try:
        raw = read_regular(path, _LAYOUT.size + 1, what="identity file")
    except FileNotFoundError:
        return None
    except NotARegularFileError as exc:
        raise ConfigError("data_dir", str(exc)) from None
    except (OSError, ValueError) as exc:
        raise ConfigError("data_dir", f"cannot read {path}: {exc}") from None
    if len(raw) != _LAYOUT.size:
        raise ConfigError("data_dir", f"{path} has {len(raw)} bytes, expected {_LAYOUT.size}: "
                          "it is damaged; if you are sure this data dir is this member's, "
                          "delete the file")
    magic, version, member_id, cluster_id, _, crc = _LAYOUT.unpack(raw)
    if magic != _MAGIC or version != _VERSION or crc != crc32c(raw[:_LAYOUT.size - 4]):
        raise ConfigError("data_dir", f"{path} fails its checksum (or is of an unknown "
                          "version): it is damaged; if you are sure this data dir is this "
                          "member's, delete it")
    return cluster_id, member_id


def _write(data_dir: str, cluster_id: int, member_id: int) -> None:
    from aeronpy.archive.fs import OsFileSystem, write_replace
    body = _LAYOUT.pack(_MAGIC, _VERSION, member_id, cluster_id, 0, 0)[:_LAYOUT.size - 4]
    write_replace(OsFileSystem(), data_dir, IDENTITY_FILE, body + struct.pack("<I", crc32c(body)))
