"""Keys that Flink's ``key_by`` sends to a chosen subtask.

PyFlink's ``key_by(..., key_type=Types.INT())`` hashes ``Row.of(k).hashCode()``, which is
``62 + k`` for a non-negative int key, then Flink assigns
``subtask = (murmur(hash) % max_parallelism) * parallelism // max_parallelism``
(``KeyGroupRangeAssignment``). Porting the formula lets every node of a role get exactly
one key that lands on its own subtask, so rows can be routed to node *i* deliberately.
"""

from __future__ import annotations

from flink_dl.errors import ConfigError

DEFAULT_MAX_PARALLELISM = 128
_MASK = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK


def murmur_hash(code: int) -> int:
    """Flink's ``MathUtils.murmurHash(int)``."""
    code &= _MASK
    code = (code * 0xCC9E2D51) & _MASK
    code = _rotl(code, 15)
    code = (code * 0x1B873593) & _MASK
    code = _rotl(code, 13)
    code = (code * 5 + 0xE6546B64) & _MASK
    code ^= 4
    code ^= code >> 16
    code = (code * 0x85EBCA6B) & _MASK
    code ^= code >> 13
    code = (code * 0xC2B2AE35) & _MASK
    code ^= code >> 16
    if code & 0x80000000:
        code -= 1 << 32
    if code >= 0:
        return code
    return -code if code != -(1 << 31) else 0


def subtask_of_key(key: int, parallelism: int,
                   max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> int:
    """The subtask PyFlink's ``key_by`` with an INT key sends ``key`` to."""
    key_group = murmur_hash(62 + key) % max_parallelism
    return key_group * parallelism // max_parallelism


def keys_for_subtasks(parallelism: int,
                      max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> list[int]:
    """The smallest non-negative key landing on each subtask 0..parallelism-1."""
    if not 1 <= parallelism <= max_parallelism:
        raise ConfigError(f"parallelism {parallelism} must be in 1..{max_parallelism}")
    keys: list[int | None] = [None] * parallelism
    missing, key = parallelism, 0
    while missing:
        subtask = subtask_of_key(key, parallelism, max_parallelism)
        if keys[subtask] is None:
            keys[subtask] = key
            missing -= 1
        key += 1
    return [k for k in keys if k is not None]
