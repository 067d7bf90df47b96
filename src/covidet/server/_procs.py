"""A Triton server's process tree from /proc: backend stubs, memory (RSS and PSS) and CPU time."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from covidet import _contract as C

__all__ = [
    "PeakMemory",
    "Proc",
    "StubInfo",
    "listening_pid",
    "process_memory_mib",
    "process_tree",
    "python_stubs",
    "tree_cpu_seconds",
    "tree_memory_mib",
]

_PROC = Path("/proc")
_STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class Proc:
    """One live process: its id, parent, resident memory and command line."""

    pid: int
    ppid: int
    rss_kib: int
    cmdline: tuple[str, ...]


@dataclass(frozen=True)
class StubInfo:
    """A Python-backend stub: the model it serves and its instance name (e.g. ``lung_seg_0_1``)."""

    pid: int
    model: str
    instance: str


def _read(pid_dir: Path) -> Proc | None:
    try:
        status = (pid_dir / "status").read_text()
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:  # the process went away while we looked
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields.get("State", "").strip().startswith("Z"):
        return None  # a zombie is dead: its parent has not reaped it yet
    rss = int(fields["VmRSS"].split()[0]) if "VmRSS" in fields else 0
    cmd = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return Proc(int(pid_dir.name), int(fields.get("PPid", "0").strip()), rss, cmd)


def process_tree(root: int) -> list[Proc]:
    """``root`` and all its live descendants (empty if ``root`` is gone)."""
    procs = [p for d in _PROC.iterdir() if d.name.isdigit() and (p := _read(d)) is not None]
    children: dict[int, list[Proc]] = {}
    by_pid = {p.pid: p for p in procs}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    if root not in by_pid:
        return []
    out, stack = [], [by_pid[root]]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p.pid, []))
    return out


def _stub_model(p: Proc) -> str | None:
    """The model a Python-backend stub serves, or None for another process.

    A stub's command line is ``stub <repo>/<model>/<version>/model.py <shm> ... <instance> <kind>``.
    """
    if len(p.cmdline) >= 3 and Path(p.cmdline[0]).name == _STUB:
        return Path(p.cmdline[1]).parent.parent.name
    return None


def python_stubs(root: int) -> list[StubInfo]:
    """The live Python-backend stub processes under a Triton server."""
    return [
        StubInfo(p.pid, model, p.cmdline[-2])
        for p in process_tree(root)
        if (model := _stub_model(p)) is not None
    ]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads), 0 if it is gone."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, utime 14
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds used so far by a server's process tree, by process: the server (``root``, by
    its program's name: ``tritonserver``), each Python-backend stub's model summed over its
    instances, and ``other``.

    The difference of two readings over a load level, divided by the scans answered, is the CPU
    a scan costs the server, and where it goes (on a GPU node: the host cores a scan/s needs).
    Processes that ended between the readings are not counted.
    """
    out: dict[str, float] = {}
    for p in process_tree(root):
        if p.pid == root:
            key = Path(p.cmdline[0]).name if p.cmdline else "server"
        else:
            key = _stub_model(p) or "other"
        out[key] = out.get(key, 0.0) + _cpu_s(p.pid)
    return out


def _pss_kib(pid: int) -> tuple[int, int]:
    """(PSS of the process, the part of it in clients' CT shared-memory regions), KiB."""
    try:
        text = (_PROC / str(pid) / "smaps").read_text()
    except OSError:
        return 0, 0
    total = client = 0
    in_client = False
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "Pss:":
            kib = int(fields[1])
            total += kib
            client += kib if in_client else 0
        elif not fields[0].endswith(":"):  # a mapping's header: range perms offset dev inode [path]
            in_client = len(fields) >= 6 and Path(fields[5]).name.startswith(C.CLIENT_SHM_PREFIX)
    return total, client


def tree_memory_mib(root: int) -> dict[str, float]:
    """Summed RSS and PSS of a process tree in MiB, and the server's own PSS.

    RSS counts pages shared between processes (the torch and ORT libraries every stub maps) once per
    process; PSS splits them between the sharers, so the PSS sum is the tree's real footprint.
    ``client_shm_pss_mib`` is the part of that PSS in the CT regions clients created in /dev/shm
    and registered (Triton maps them to read the CT; the client owns and frees them):
    ``own_pss_mib`` is the rest, the memory the server itself holds.
    """
    tree = process_tree(root)
    pss = [_pss_kib(p.pid) for p in tree]
    total, client = sum(t for t, _ in pss) / 1024, sum(c for _, c in pss) / 1024
    return {
        "rss_mib": sum(p.rss_kib for p in tree) / 1024,
        "pss_mib": total,
        "client_shm_pss_mib": client,
        "own_pss_mib": total - client,
    }


def _label(p: Proc, root: int) -> str:
    """A stable name for a server's process: the server's program, a stub's instance, or the pid."""
    if p.pid == root:
        return Path(p.cmdline[0]).name if p.cmdline else "server"
    if _stub_model(p) is not None:
        return p.cmdline[-2]  # the instance name, e.g. covidet_pipeline_0_0
    return f"pid{p.pid}"


def process_memory_mib(root: int) -> dict[str, dict[str, float]]:
    """RSS, PSS and own PSS (PSS less clients' CT regions) of each process of a server's tree, in
    MiB, keyed by :func:`_label` (the server's program name, each stub's instance name).

    Per process, because a leak lives in one of them (the server, or one model's stub) and the sum
    hides a slow one beside another that shrinks.
    """
    out: dict[str, dict[str, float]] = {}
    for p in process_tree(root):
        total, client = _pss_kib(p.pid)
        out[_label(p, root)] = {
            "rss_mib": p.rss_kib / 1024,
            "pss_mib": total / 1024,
            "own_pss_mib": (total - client) / 1024,
        }
    return out


_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "[::1]"}


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (IPv4 and IPv6), from /proc/net."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()  # sl local_address rem_address st ... inode
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listening_pid(url: str) -> int | None:
    """The pid of the process on this machine listening at ``url`` (``host:port``, or
    ``http://host:port``) when the host is local and that process may be inspected (same user or
    root); None otherwise. Lets bench account the memory and CPU of a server it did not start."""
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if host not in _LOCAL_HOSTS or not port.isdigit():
        return None
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(int(port))}
    if not wanted:
        return None
    for pid_dir in _PROC.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    return int(pid_dir.name)
            except OSError:
                continue
    return None


class PeakMemory:
    """Samples a server tree's memory in a thread while a block runs: the own PSS (PSS less the
    clients' CT regions) of the tree and of each process, at the start and at its peak.

    ``with PeakMemory(pid) as peak: ...`` then ``peak.baseline_mib``, ``peak.peak_mib`` and
    ``peak.peak_by_process``. Sampling reads every process's smaps, a few ms each; the interval
    keeps that off the cores the server needs.
    """

    def __init__(self, root: int, interval_s: float = 0.25) -> None:
        self.root, self.interval_s = root, interval_s
        self.baseline_mib = self.peak_mib = 0.0
        self.baseline_by_process: dict[str, float] = {}
        self.peak_by_process: dict[str, float] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def _sample(self) -> tuple[float, dict[str, float]]:
        per = {name: m["own_pss_mib"] for name, m in process_memory_mib(self.root).items()}
        return sum(per.values()), per

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            total, per = self._sample()
            self.samples += 1
            self.peak_mib = max(self.peak_mib, total)
            for name, mib in per.items():
                self.peak_by_process[name] = max(self.peak_by_process.get(name, 0.0), mib)

    def __enter__(self) -> PeakMemory:
        self.baseline_mib, self.baseline_by_process = self._sample()
        self.peak_mib, self.peak_by_process = self.baseline_mib, dict(self.baseline_by_process)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        total, per = self._sample()  # the last moment counts too
        self.peak_mib = max(self.peak_mib, total)
        for name, mib in per.items():
            self.peak_by_process[name] = max(self.peak_by_process.get(name, 0.0), mib)

    @property
    def growth_mib(self) -> float:
        """Peak less baseline: what the block added to the server's own memory at most."""
        return self.peak_mib - self.baseline_mib
