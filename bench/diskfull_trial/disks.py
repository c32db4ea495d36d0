"""Small real file systems for the disk-full trial: one per member, mounted as root, filled
with a ballast file beside the member's data dir, emptied or grown again.

Every mount goes through :class:`Disks`, whose ``unmount_all()`` the trial runs in a
``finally``; a mount point must be an empty directory (never mounted over data)."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
from typing import Dict, List, Optional

BALLAST = "ballast.fill"            # at the file system's root, beside the data dir
CHUNK_BYTES = 64 * 1024


def _run(cmd: List[str], timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)


def free_bytes(path: str) -> int:
    """Bytes a writer can still take (root too: ext4 is made with no reserved blocks)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill_ballast(path: str, keep_bytes: int = 0) -> None:
    """Grow the file ``path`` until at most ``keep_bytes`` stay free on its file system (0:
    until a write fails with ENOSPC, the last partial pages too). Used by
    tests/process/test_disk_full_real.py as well."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        target = free_bytes(os.path.dirname(path)) - keep_bytes
        if target > 0:
            try:
                os.posix_fallocate(fd, os.lseek(fd, 0, os.SEEK_END), target)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
        block = CHUNK_BYTES
        while keep_bytes == 0 and block >= 1:         # unbuffered writes, smaller and smaller
            try:
                os.write(fd, b"\0" * block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                block //= 16
    finally:
        os.close(fd)


class MountError(RuntimeError):
    """A file system could not be made or mounted (not root, no loop device, no tmpfs)."""


class Disks:
    """Mount points ``<root>/disk<m>``; each member's data dir is ``<mount>/data``."""

    def __init__(self, root: str, kind: str, size_bytes: int):
        if kind not in ("tmpfs", "ext4"):
            raise ValueError(f"kind: tmpfs or ext4, got {kind!r}")
        self.root, self.kind, self.size_bytes = root, kind, size_bytes
        self.mounted: Dict[int, str] = {}
        self.loops: Dict[int, str] = {}          # member -> image file (ext4)

    def mount_point(self, member: int) -> str:
        return os.path.join(self.root, f"disk{member}")

    def data_dir(self, member: int) -> str:
        return os.path.join(self.mount_point(member), "data")

    def ballast(self, member: int) -> str:
        return os.path.join(self.mount_point(member), BALLAST)

    def mount(self, member: int) -> None:
        point = self.mount_point(member)
        os.makedirs(point, exist_ok=True)
        if os.listdir(point):
            raise MountError(f"{point} is not empty: refusing to mount over it")
        if self.kind == "tmpfs":
            r = _run(["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes}", "tmpfs", point])
        else:
            image = os.path.join(self.root, f"disk{member}.img")
            with open(image, "wb") as f:
                f.truncate(self.size_bytes)
            r = _run(["mkfs.ext4", "-q", "-F", "-m", "0", image])
            if r.returncode == 0:
                self.loops[member] = image
                r = _run(["mount", "-o", "loop", image, point])
        if r.returncode != 0:
            raise MountError(f"mount of {point} failed: {r.stderr.strip() or r.stdout.strip()}")
        self.mounted[member] = point
        os.makedirs(self.data_dir(member))

    def fill(self, member: int, keep_bytes: int = 0) -> int:
        """Grow the ballast until at most ``keep_bytes`` stay free (0: until a write fails
        with ENOSPC); returns the bytes left free."""
        fill_ballast(self.ballast(member), keep_bytes)
        return free_bytes(self.mount_point(member))

    def free(self, member: int) -> int:
        """Remove the ballast; returns the bytes free then."""
        try:
            os.remove(self.ballast(member))
        except FileNotFoundError:
            pass
        return free_bytes(self.mount_point(member))

    def grow(self, member: int, size_bytes: int) -> bool:
        """Grow a tmpfs in place (``remount,size=``); False for ext4 (not done live here)."""
        if self.kind != "tmpfs":
            return False
        r = _run(["mount", "-o", f"remount,size={size_bytes}", self.mount_point(member)])
        return r.returncode == 0

    def unmount_all(self, keep_copy_in: Optional[str] = None) -> List[str]:
        """Unmount every disk (a lazy unmount if a process still holds it), copying its data
        dir to ``keep_copy_in`` first when given; returns problems (empty: all gone)."""
        problems = []
        for member, point in sorted(self.mounted.items()):
            if keep_copy_in:
                try:
                    shutil.copytree(self.data_dir(member), os.path.join(keep_copy_in, f"node{member}"),
                                    dirs_exist_ok=True)
                except Exception as e:  # noqa: BLE001 - the copy is a courtesy
                    problems.append(f"copy of {point}: {e}")
            r = _run(["umount", point])
            if r.returncode != 0:
                r = _run(["umount", "-l", point])
                if r.returncode != 0:
                    problems.append(f"umount {point}: {r.stderr.strip()}")
                    continue
            try:
                os.rmdir(point)
            except OSError:
                pass
        self.mounted.clear()
        for image in self.loops.values():
            try:
                os.remove(image)
            except OSError:
                pass
        self.loops.clear()
        return problems
