"""A training budget in CPU seconds, for comparisons at equal compute (the Figure 3 analogue).

Wall time depends on what else runs on the machine; the CPU time of the training process
(:func:`time.process_time`, all of its threads) does not, so runs that share cores still get
the same compute. With ``threads: 1`` a CPU second is one core-second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class CpuBudget:
    """CPU seconds spent by this process on training, against an optional limit.

    Parameters
    ----------
    limit_s : float or None
        The budget in CPU seconds; ``None`` is unlimited (``spent`` is always False).
    used_before_s : float
        CPU seconds spent before this process started (restored from a resumable state).
    """

    limit_s: float | None
    used_before_s: float = 0.0
    _start: float = field(default_factory=time.process_time, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.limit_s is not None and not self.limit_s > 0:
            raise ValueError(f"cpu_budget_s must be positive (CPU seconds), got {self.limit_s}")

    def used_s(self) -> float:
        """CPU seconds spent so far, this process and earlier ones together."""
        return self.used_before_s + time.process_time() - self._start

    def spent(self) -> bool:
        """Whether the budget is used up."""
        return self.limit_s is not None and self.used_s() >= self.limit_s
