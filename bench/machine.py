"""Machine state for bench/run: wait for an idle CPU before a run, and account for the CPU used during it."""
from __future__ import annotations

import os
import time


def cpu_times(with_irq: bool = True) -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat; idle and iowait count as not busy. Without `with_irq`,
    time in interrupts and softirqs (mostly the loopback network stack under load, which no process is charged
    for) is not counted as busy either."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    v += [0] * (8 - len(v))
    total = sum(v[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    idle = v[3] + v[4] + (0 if with_irq else v[5] + v[6])
    return total - idle, total


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def ncpu() -> int:
    return os.cpu_count() or 1


def wait_idle(min_idle_pct: float = 80.0, need: int = 3, timeout: float = 120.0, interval: float = 1.0) -> dict:
    """Poll /proc/stat every `interval` s until the whole machine has been at least `min_idle_pct` % idle for `need`
    consecutive samples, or `timeout` s have passed. Returns ok, the last sample's idle %, the seconds waited and
    the load average."""
    t0 = time.time()
    streak, last = 0, 0.0
    busy0, total0 = cpu_times()
    for _ in range(int(timeout / interval) + 2):
        time.sleep(interval)
        busy1, total1 = cpu_times()
        dt = total1 - total0
        last = 100.0 * (1 - (busy1 - busy0) / dt) if dt > 0 else 100.0
        busy0, total0 = busy1, total1
        streak = streak + 1 if last >= min_idle_pct else 0
        if streak >= need:
            return {"ok": True, "idle_pct": round(last, 1), "waited_s": round(time.time() - t0, 1),
                    "loadavg": loadavg()}
        if time.time() - t0 >= timeout:
            break
    return {"ok": False, "idle_pct": round(last, 1), "waited_s": round(time.time() - t0, 1), "loadavg": loadavg()}


def process_cpu() -> dict:
    """{pid: (comm, ppid, cpu seconds)} for every process now (a snapshot of /proc/<pid>/stat)."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                raw = f.read()
            comm = raw[raw.index("(") + 1:raw.rindex(")")]
            v = raw.rsplit(")", 1)[1].split()
            out[int(d)] = (comm, int(v[1]), (int(v[11]) + int(v[12])) / tck)
        except (OSError, ValueError, IndexError):
            continue
    return out


class CpuWindow:
    """CPU used during a run: the whole machine (in cores), the server process, and wrk (a waited-for child)."""

    def __init__(self, server_cpu_seconds):
        self.server_cpu_seconds = server_cpu_seconds

    def __enter__(self):
        import resource
        self.t0 = time.perf_counter()
        self.busy0, self.total0 = cpu_times()
        self.proc0, _ = cpu_times(with_irq=False)
        self.procs0 = process_cpu()
        self.srv0 = self.server_cpu_seconds()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.child0 = ru.ru_utime + ru.ru_stime
        return self

    def __exit__(self, *exc):
        import resource
        wall = max(time.perf_counter() - self.t0, 1e-6)
        busy1, total1 = cpu_times()
        proc1, _ = cpu_times(with_irq=False)
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        n = ncpu()
        dt = max(total1 - self.total0, 1)
        self.machine_cores = n * (busy1 - self.busy0) / dt
        self.irq_cores = self.machine_cores - n * (proc1 - self.proc0) / dt
        self.server_cores = (self.server_cpu_seconds() - self.srv0) / wall
        self.wrk_cores = (ru.ru_utime + ru.ru_stime - self.child0) / wall
        # the busiest other processes that lived through the whole window (not this process' children)
        me = os.getpid()
        top = []
        for pid, (comm, ppid, cpu) in process_cpu().items():
            if pid == me or ppid == me or pid not in self.procs0 or self.procs0[pid][0] != comm:
                continue
            d = (cpu - self.procs0[pid][2]) / wall
            if d >= 0.02:
                top.append((round(d, 2), f"{comm}[{pid}]"))
        self.top_other = [f"{name} {cores}" for cores, name in sorted(top, reverse=True)[:6]]
        # other processes: what the machine spent in processes, minus the server and wrk
        self.other_cores = max(0.0, self.machine_cores - self.irq_cores - self.server_cores - self.wrk_cores)
        self.wall = wall
        return False

    def as_dict(self) -> dict:
        return {"machine_cores": round(self.machine_cores, 2), "irq_cores": round(self.irq_cores, 2),
                "server_cores": round(self.server_cores, 2),
                "wrk_cores": round(self.wrk_cores, 2), "other_cores": round(self.other_cores, 2),
                "wall_s": round(self.wall, 2), "top_other_processes": self.top_other}
