"""Conversions between Python values and the wire forms of times and
durations (docs/API.md, "Data types").

- Times are RFC 3339 strings with up to nanosecond precision.
- Durations are Go duration strings ("500ms", "1m30s"); the daemon refuses
  plain numbers.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from numbers import Real
from typing import Union

__all__ = ["format_duration", "parse_duration", "format_time", "parse_time", "DurationLike", "TimeLike"]

DurationLike = Union[timedelta, int, float, str]
TimeLike = Union[datetime, str]

_NS_PER_S = 10 ** 9


def format_duration(value: DurationLike) -> str:
    """Return the Go duration string for ``value``.

    ``value`` may be a :class:`datetime.timedelta`, a number of seconds
    (int or float; a float is rounded to the nanosecond) or a string, which
    is passed through unchanged (so "1d" and "1m30s" work; the daemon checks
    it). Negative values raise ValueError; booleans raise TypeError.

    >>> format_duration(30), format_duration(1.5), format_duration(timedelta(minutes=2))
    ('30s', '1500ms', '120s')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("a duration must be a timedelta, a number of seconds or a string, not a bool")
    if isinstance(value, timedelta):
        ns = ((value.days * 86400 + value.seconds) * 10 ** 6 + value.microseconds) * 1000
    elif isinstance(value, int):
        ns = value * _NS_PER_S
    elif isinstance(value, Real):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a duration must be finite, got %r" % (value,))
        ns = round(Fraction(value) * _NS_PER_S)
    else:
        raise TypeError("a duration must be a timedelta, a number of seconds or a string, not %s"
                        % type(value).__name__)
    if ns < 0:
        raise ValueError("a duration must not be negative, got %r" % (value,))
    if ns % _NS_PER_S == 0:
        return "%ds" % (ns // _NS_PER_S)
    if ns % 10 ** 6 == 0:
        return "%dms" % (ns // 10 ** 6)
    if ns % 1000 == 0:
        return "%dus" % (ns // 1000)
    return "%dns" % ns


_UNIT = {
    "ns": Fraction(1, 10 ** 9),
    "us": Fraction(1, 10 ** 6),
    "\u00b5s": Fraction(1, 10 ** 6),  # micro sign, what Go prints
    "\u03bcs": Fraction(1, 10 ** 6),  # Greek mu
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}
_NUM = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PART = re.compile("(" + _NUM + ")(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DAYS = re.compile("(" + _NUM + ")d")


def parse_duration(text: Union[str, timedelta]) -> timedelta:
    """Parse a Go duration string ("1m30s", "1.5\u00b5s", "0s"; also "0" and
    "1d", which requests accept) into a timedelta, rounded to the
    microsecond. A timedelta is returned unchanged. Raises ValueError for
    anything else."""
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str):
        raise TypeError("a duration string is needed, not %s" % type(text).__name__)
    s = text
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return timedelta(0)
    if not s:
        raise ValueError("invalid duration %r" % (text,))
    m = _DAYS.fullmatch(s)
    if m:
        total = Fraction(m.group(1)) * 86400
    else:
        total = Fraction(0)
        pos = 0
        while pos < len(s):
            m = _PART.match(s, pos)
            if not m:
                raise ValueError("invalid duration %r" % (text,))
            total += Fraction(m.group(1)) * _UNIT[m.group(2)]
            pos = m.end()
    return timedelta(microseconds=sign * round(total * 10 ** 6))


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def parse_time(text: Union[str, datetime]) -> datetime:
    """Parse an RFC 3339 time ("2030-01-02T03:04:05.123456789Z") into a
    timezone-aware datetime. Digits past the microsecond are dropped. A
    datetime is returned unchanged. Raises ValueError for anything else."""
    if isinstance(text, datetime):
        return text
    if not isinstance(text, str):
        raise TypeError("a time string is needed, not %s" % type(text).__name__)
    m = _RFC3339.fullmatch(text)
    if not m:
        raise ValueError("invalid RFC 3339 time %r" % (text,))
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or ""
    micro = int((frac + "000000")[:6])
    if m.group(8):
        tz = timezone.utc
    else:
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        if m.group(9) == "-":
            offset = -offset
        tz = timezone.utc if not offset else timezone(offset)
    if second == 60:  # a leap second; Python has no room for it
        second = 59
        micro = 999999
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def format_time(value: TimeLike) -> str:
    """Return the RFC 3339 form of ``value``.

    A timezone-aware datetime keeps its offset (UTC is written with "Z"); a
    naive datetime is taken as local time, as Python's own
    ``datetime.timestamp()`` does. A string is passed through unchanged."""
    if isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        raise TypeError("a time must be a datetime or an RFC 3339 string, not %s" % type(value).__name__)
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.astimezone()
    text = value.isoformat()
    if value.utcoffset() == timedelta(0) and text.endswith("+00:00"):
        text = text[: -len("+00:00")] + "Z"
    return text
