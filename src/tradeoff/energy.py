"""What running something spent on this machine: wall time, CPU seconds and energy.

Energy is read from RAPL (Linux powercap, /sys/class/powercap/intel-rapl:*/energy_uj) where its counters are
readable, and is then labelled "measured"; elsewhere (no powercap, another CPU, or counters only root may read,
as Linux has made them since 5.10) it is estimated from the CPU seconds and labelled "estimated", its method said
in words. An estimate is never shown as a measurement.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

POWERCAP = Path("/sys/class/powercap")
# What a busy core draws, for the estimate: Cloud Carbon Footprint's average maximum watts per vCPU on AWS (from
# SPECpower results; https://www.cloudcarbonfootprint.org/docs/methodology/). A task sets its own with
# cost.watts_per_core.
WATTS_PER_CORE = 3.5
WATTS_SOURCE = "Cloud Carbon Footprint's average maximum for an AWS vCPU"

EnergySource = Literal["measured", "estimated"]


def cpu_seconds() -> float:
    """User and system CPU time of this process (all its threads) and of its finished children."""
    return sum(u.ru_utime + u.ru_stime
               for u in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


@dataclass(frozen=True)
class RaplZone:
    """One CPU package's RAPL counter: microjoules that wrap to 0 past `range_uj`."""

    counter: Path
    range_uj: int

    def read(self) -> int:
        return int(self.counter.read_text())


def rapl_zones(powercap: Path = POWERCAP) -> list[RaplZone]:
    """The package-level RAPL zones (intel-rapl:0, intel-rapl:1, ...) whose counters this process can read; [] where
    any cannot be read (a sum over some packages would pass for the whole). Subzones (intel-rapl:0:0, the cores,
    the DRAM) are parts of a package or beside it, and are left out so that nothing is counted twice."""
    zones = []
    for folder in sorted(powercap.glob("intel-rapl:*")):
        if folder.name.count(":") != 1:
            continue
        try:
            zone = RaplZone(folder / "energy_uj", int((folder / "max_energy_range_uj").read_text()))
            zone.read()
        except (OSError, ValueError):
            return []
        zones.append(zone)
    return zones


class EnergyCounter:
    """Joules the RAPL zones counted since it was made. A counter that wrapped (now below the last reading) counted
    up to its range and on from 0; `read` at least once per wrap period (minutes at full power) to miss none."""

    def __init__(self, zones: list[RaplZone]) -> None:
        self.zones = zones
        self._last = [zone.read() for zone in zones]
        self._total_uj = 0

    def read(self) -> float:
        for i, zone in enumerate(self.zones):
            now = zone.read()
            last = self._last[i]
            self._total_uj += now - last if now >= last else zone.range_uj - last + now
            self._last[i] = now
        return self._total_uj / 1e6


@dataclass(frozen=True)
class Spent:
    """What a stretch of work spent: `energy_j` None where no RAPL counter was readable."""

    wall_s: float
    cpu_s: float
    energy_j: float | None


class Meter:
    """Wall time, CPU seconds and RAPL energy from when it is made until `spent()`; `tick()` reads the energy
    counters in between, which a long stretch needs to count their wrap-arounds."""

    def __init__(self, powercap: Path = POWERCAP) -> None:
        zones = rapl_zones(powercap)
        self._energy = EnergyCounter(zones) if zones else None
        self._wall, self._cpu = time.perf_counter(), cpu_seconds()

    def tick(self) -> None:
        if self._energy is not None:
            self._energy.read()

    def spent(self) -> Spent:
        energy = self._energy
        return Spent(wall_s=time.perf_counter() - self._wall, cpu_s=cpu_seconds() - self._cpu,
                     energy_j=energy.read() if energy is not None else None)


@dataclass(frozen=True)
class Energy:
    joules: float
    source: EnergySource
    method: str  # how it was found, in words


def energy_of(cpu_s: float, energy_j: float | None, watts_per_core: float, share: float = 1.0) -> Energy:
    """The energy of work that spent `cpu_s` CPU seconds, measured where RAPL counted `energy_j`, else estimated as
    the CPU seconds times a busy core's watts; `share` divides it (per prediction: 1 / predictions made)."""
    if energy_j is not None:
        return Energy(energy_j * share, "measured",
                      f"RAPL package counters in {POWERCAP}: the whole CPU package, other processes on it included")
    source = WATTS_SOURCE if watts_per_core == WATTS_PER_CORE else "cost.watts_per_core"
    return Energy(cpu_s * watts_per_core * share, "estimated",
                  f"CPU seconds x {watts_per_core:g} W per busy core ({source}); no RAPL counter readable in "
                  f"{POWERCAP}")
