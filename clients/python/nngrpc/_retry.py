"""Retries and endpoint health: the policy and the pure functions the
client core (_core.py) decides with.

A call is retried only when all of these hold:

- it is idempotent: its method is marked ``NO_SIDE_EFFECTS`` or
  ``IDEMPOTENT`` in the .proto (the generated stubs pass that on), or the
  raw ``channel.call(..., idempotent=True)``.  A request may have run on
  the server even when its reply never came (the server died after
  running it), so only a call that may run twice is sent twice;
- the attempt failed with a code in ``RetryPolicy.retryable_codes``
  (UNAVAILABLE: the server answered UNAVAILABLE because it is draining or
  not serving, or the connection failed: refused, reset, closed before the
  reply);
- attempts are left (``max_attempts`` counts the first one), and the
  backoff sleep ends before the caller's deadline.  A retry never extends
  the deadline: the last error is raised instead.

The sleep before retry n (n = 1, 2, ...) is drawn uniformly from
``[0, min(initial_backoff * backoff_multiplier**(n-1), max_backoff)]``
("full jitter", as gRPC's retry design A6 does), so clients that failed
together do not come back together.

Endpoint health is separate from retries (it also applies with
``retry=None``): an endpoint that refused a connection is tried last for a
growing backoff, and one that answered UNAVAILABLE (a draining server) is
tried last for a short while, so the next call, and the retry, go to
another endpoint.  "Tried last" never means "not tried": with every
endpoint down, calls still try them, soonest-up first.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import FrozenSet, List, Optional, Protocol, Sequence, TypeVar

from nngrpc._status_table import StatusCode


@dataclass(frozen=True)
class RetryPolicy:
    """How a channel retries idempotent calls.

    Pass it as ``Channel(..., retry=RetryPolicy(...))``; ``retry=None``
    turns retries off.  The default policy (``DEFAULT_RETRY_POLICY``) is
    ``RetryPolicy()``.

    - ``max_attempts``: attempts in all, the first one included (>= 1).
    - ``initial_backoff``, ``backoff_multiplier``, ``max_backoff``: the
      sleep bound before retry n is ``min(initial_backoff *
      backoff_multiplier**(n-1), max_backoff)`` seconds; the sleep is a
      uniform draw below it (full jitter).
    - ``retryable_codes``: the status codes worth another attempt.  The
      client maps every connection failure to UNAVAILABLE.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.01
    max_backoff: float = 1.0
    backoff_multiplier: float = 2.0
    retryable_codes: FrozenSet[StatusCode] = field(
        default_factory=lambda: frozenset({StatusCode.UNAVAILABLE})
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1, got %r" % self.max_attempts)
        if self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoffs must be >= 0")
        if self.backoff_multiplier < 1:
            raise ValueError("backoff_multiplier must be >= 1")

    def backoff(self, retry: int) -> float:
        """Returns the sleep (seconds) before retry number retry (1-based)."""
        bound = self.initial_backoff * self.backoff_multiplier ** (retry - 1)
        return random.uniform(0.0, min(bound, self.max_backoff))


#: The policy channels use unless told otherwise.
DEFAULT_RETRY_POLICY = RetryPolicy()


class _HasRetryAt(Protocol):
    retry_at: float


E = TypeVar("E", bound=_HasRetryAt)


def order_endpoints(
    endpoints: Sequence[E], start: int, now: float, avoid: Optional[E] = None
) -> List[E]:
    """Returns the endpoints in the order a call tries them: the ones up,
    round-robin from turn start (a ring of the up ones only, so that each
    gets the same share while others are down); then the ones in backoff,
    soonest up first; avoid (the endpoint the previous attempt failed on)
    goes last."""
    n = len(endpoints)
    up = [e for e in endpoints if e.retry_at <= now and e is not avoid]
    if up:
        k = start % len(up)
        up = up[k:] + up[:k]
    if len(up) < n:
        down = [e for e in endpoints if e.retry_at > now and e is not avoid]
        down.sort(key=lambda e: e.retry_at)
        up += down
        if avoid is not None:
            up.append(avoid)
    return up


def connect_backoff(failures: int, backoff: float, backoff_max: float) -> float:
    """Returns how long an endpoint that failed to connect failures times
    in a row is tried last: backoff growing 1.6x per failure up to
    backoff_max, +-20% jitter."""
    delay = min(backoff * 1.6 ** min(failures - 1, 64), backoff_max)  # 1.6**64: past any max
    return delay * random.uniform(0.8, 1.2)


def retry_delay(
    policy: Optional[RetryPolicy],
    code: StatusCode,
    retryable: bool,
    attempt: int,
    deadline: Optional[float],
) -> Optional[float]:
    """Returns the sleep before attempt number attempt + 1, or None: do not
    retry (no policy, not retryable, a code the policy does not retry, no
    attempts left, or the sleep would end past the deadline)."""
    if (
        policy is None
        or not retryable
        or attempt >= policy.max_attempts
        or code not in policy.retryable_codes
    ):
        return None
    delay = policy.backoff(attempt)
    if deadline is not None and time.monotonic() + delay >= deadline:
        return None
    return delay
