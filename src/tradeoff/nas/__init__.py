"""Neural architecture search, in the three parts the field names, each swappable: the space (`space`), the
strategy that samples it (`strategies`, Optuna samplers beside Optuna's random and TPE), and cheap evaluation
before training (`proxy`: zero-cost scores; `latency`: a per-block latency table). The trial loop that trains and
measures candidates is the tuner's."""

from tradeoff.nas.latency import LatencyCheck, LatencyTable
from tradeoff.nas.proxy import Candidate, Ranked, naswot, proxy_batch, rank_by_proxy, sample_candidates, synflow
from tradeoff.nas.space import Architecture, ArchitectureSpace, BlockSpace, UserSpace, load_space
from tradeoff.nas.strategies import RegularizedEvolution, Reinforce

__all__ = ["Architecture", "ArchitectureSpace", "BlockSpace", "Candidate", "LatencyCheck", "LatencyTable", "Ranked",
           "RegularizedEvolution", "Reinforce", "UserSpace", "load_space", "naswot", "proxy_batch", "rank_by_proxy",
           "sample_candidates", "synflow"]
