"""Shared state in Redis (the ``breaker_store`` connection): every operation is one Lua script."""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilient_etl.resilience.stores.base import BreakerSnapshot, WindowCounts

if TYPE_CHECKING:
    import redis

_CLAIM = """
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
local slot = math.max(nxt, now)
redis.call('SET', KEYS[1], string.format('%.6f', slot + tonumber(ARGV[2])), 'EX', 3600)
return string.format('%.6f', slot)
"""
_DEFER = """
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('SET', KEYS[1], string.format('%.6f', math.max(nxt, tonumber(ARGV[1]))), 'EX', 3600)
return 1
"""


_B_READ = """
local v = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'probe_until', 'consecutive_failures', 'half_open_successes')
return {v[1] or 'closed', v[2] or '0', v[3] or '0', v[4] or '0', v[5] or '0'}
"""
_B_RECORD = """
local now, window, bucket = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local successes, failed = tonumber(ARGV[4]), ARGV[5] == '1'
local start = math.floor(now / bucket) * bucket
if successes > 0 then redis.call('HSET', KEYS[1], 'consecutive_failures', 0) end
local consecutive = tonumber(redis.call('HGET', KEYS[1], 'consecutive_failures') or '0')
if failed then consecutive = redis.call('HINCRBY', KEYS[1], 'consecutive_failures', 1) end
redis.call('HINCRBY', KEYS[2], tostring(start), successes + (failed and 1 or 0))
if failed then redis.call('HINCRBY', KEYS[3], tostring(start), 1) end
local calls, failures = 0, 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local b = tonumber(all[i])
  if b > now - window then
    calls = calls + tonumber(all[i + 1])
    failures = failures + tonumber(redis.call('HGET', KEYS[3], all[i]) or '0')
  elseif b <= now - window - bucket then
    redis.call('HDEL', KEYS[2], all[i])
    redis.call('HDEL', KEYS[3], all[i])
  end
end
return {calls, failures, consecutive}
"""
_B_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state ~= ARGV[1] then return 0 end
if ARGV[5] ~= '' and (redis.call('HGET', KEYS[1], 'opened_at') or '0') ~= ARGV[5] then return 0 end
local new, now, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'state', new, 'half_open_successes', 0)
if new == 'open' then
  redis.call('HSET', KEYS[1], 'opened_at', now, 'probe_until', 0)
elseif new == 'half-open' then
  redis.call('HSET', KEYS[1], 'probe_until', string.format('%.6f', tonumber(now) + lease))
else
  redis.call('HSET', KEYS[1], 'probe_until', 0, 'consecutive_failures', 0)
  redis.call('DEL', KEYS[2], KEYS[3])
end
return 1
"""
_B_PROBE = """
if (redis.call('HGET', KEYS[1], 'state') or 'closed') ~= 'half-open' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0') > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'probe_until', string.format('%.6f', tonumber(ARGV[1]) + tonumber(ARGV[2])))
return 1
"""
_B_PROBE_OK = """
if (redis.call('HGET', KEYS[1], 'state') or 'closed') ~= 'half-open' then return 0 end
redis.call('HSET', KEYS[1], 'probe_until', 0)
return redis.call('HINCRBY', KEYS[1], 'half_open_successes', 1)
"""


class RedisStore:
    """
    Pacing slots and breaker state in Redis, atomic across every worker.

    :param client: a redis client
    :param prefix: key prefix
    """

    def __init__(self, client: redis.Redis, prefix: str = "resilient_etl:") -> None:
        self.client = client
        self.prefix = prefix
        self.description = "RedisStore"
        self._claim = client.register_script(_CLAIM)
        self._defer = client.register_script(_DEFER)
        self._read = client.register_script(_B_READ)
        self._record = client.register_script(_B_RECORD)
        self._transition = client.register_script(_B_TRANSITION)
        self._probe = client.register_script(_B_PROBE)
        self._probe_ok = client.register_script(_B_PROBE_OK)

    def claim(self, key: str, *, interval: float, now: float) -> float:
        return float(self._claim(keys=[f"{self.prefix}pacing:{key}"], args=[repr(now), repr(interval)]))

    def defer(self, key: str, *, until: float) -> None:
        self._defer(keys=[f"{self.prefix}pacing:{key}"], args=[repr(until)])

    def _keys(self, name: str) -> list[str]:
        base = f"{self.prefix}breaker:{name}"
        return [base, base + ":calls", base + ":failures"]

    def read(self, name: str) -> BreakerSnapshot:
        state, opened_at, probe_until, consecutive, successes = self._read(keys=self._keys(name)[:1])
        return BreakerSnapshot(
            state.decode() if isinstance(state, bytes) else state, float(opened_at), float(probe_until), int(consecutive), int(successes)
        )

    def record(self, name: str, *, successes: int, failed: bool, now: float, window: float, bucket: float) -> WindowCounts:
        calls, failures, consecutive = self._record(
            keys=self._keys(name), args=[repr(now), repr(window), repr(bucket), str(successes), "1" if failed else "0"]
        )
        return WindowCounts(int(calls), int(failures), int(consecutive))

    def transition(self, name: str, *, expected: str, new: str, now: float, lease: float = 0.0, opened_at: float | None = None) -> bool:
        expected_opened = "" if opened_at is None else self._fmt(opened_at)
        return bool(self._transition(keys=self._keys(name), args=[expected, new, self._fmt(now), repr(lease), expected_opened]))

    def acquire_probe(self, name: str, *, now: float, lease: float) -> bool:
        return bool(self._probe(keys=self._keys(name)[:1], args=[repr(now), repr(lease)]))

    def probe_succeeded(self, name: str) -> int:
        return int(self._probe_ok(keys=self._keys(name)[:1]))

    @staticmethod
    def _fmt(value: float) -> str:
        # opened_at is compared as a string in the CAS: always write and compare one format
        return f"{value:.6f}"
