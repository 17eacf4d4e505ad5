#!/usr/bin/env python3
"""Writes reference.tsv: RFC 3339 timestamps and the instant Python's datetime gives each one,
the outside reference that tests/unit/common_test.cpp checks workflowd::ParseRfc3339 against.

Each line is `text<TAB>nanoseconds since the epoch`, or `text<TAB>invalid` for a timestamp Python's
datetime.fromisoformat rejects (impossible dates: 30 February, 29 February of a common year, day 31
of a 30-day month; hour 24, minute 60). The timestamps are drawn with a fixed
seed over the years ParseRfc3339 accepts (1678..2261), with every spelling RFC 3339 allows (`T`,
`t` or a space between date and time, `Z`, `z` or a numeric offset, 0 to 9 fraction digits).
Python's datetime keeps microseconds, so it is handed the text with the fraction cut to 6 digits
and the letters upper-cased, and the 7th to 9th fraction digits are added as nanoseconds. (Python also takes an offset minute of
60, which RFC 3339 does not: the table has no such offset.)

    python3 tests/unit/testdata/rfc3339/generate.py   (rewrites reference.tsv beside it)
"""
import calendar
import datetime
import os
import random

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def python_instant(text):
    """Nanoseconds since the epoch of RFC 3339 `text` by datetime.fromisoformat, or None."""
    date, time = text[:10], text[11:]
    zone_at = max(time.rfind('Z'), time.rfind('z'), time.rfind('+'), time.rfind('-'))
    clock, zone = time[:zone_at], time[zone_at:]
    extra_ns = 0
    if '.' in clock:
        whole, fraction = clock.split('.')
        extra_ns = int(fraction[6:9].ljust(3, '0')) if len(fraction) > 6 else 0
        clock = whole + '.' + fraction[:6].ljust(6, '0')
    zone = '+00:00' if zone in ('Z', 'z') else zone
    try:
        instant = datetime.datetime.fromisoformat(date + 'T' + clock + zone)
    except ValueError:
        return None
    delta = instant - EPOCH
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000 + extra_ns


def spelling(rng, year, month, day, hour, minute, second):
    separator = rng.choice('TTTt ')
    digits = rng.choice([0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 9])
    fraction = '.' + ''.join(rng.choice('0123456789') for _ in range(digits)) if digits else ''
    kind = rng.randrange(4)
    if kind == 0:
        zone = 'Z'
    elif kind == 1:
        zone = 'z'
    else:
        zone = '%s%02d:%02d' % (rng.choice('+-'), rng.randrange(24), rng.randrange(60))
    return '%04d-%02d-%02d%s%02d:%02d:%02d%s%s' % (year, month, day, separator, hour, minute, second,
                                                    fraction, zone)


def main():
    rng = random.Random(20261207)
    lines = []
    for _ in range(400):
        year = rng.randint(1678, 2261)
        month = rng.randint(1, 12)
        day = rng.randint(1, calendar.monthrange(year, month)[1])
        text = spelling(rng, year, month, day, rng.randrange(24), rng.randrange(60), rng.randrange(60))
        lines.append(text)
    # Leap years of the Gregorian calendar (1700, 1800, 1900, 2100, 2200 are common years; 2000 is
    # a leap year), the ends of months, and the ends of the accepted range.
    for year in (1678, 1700, 1800, 1900, 1970, 2000, 2024, 2100, 2200, 2261):
        for month, day in ((2, 28), (2, 29), (2, 30), (4, 30), (4, 31), (12, 31), (1, 1)):
            lines.append(spelling(rng, year, month, day, 23, 59, 59))
    lines.append('2026-01-30T24:00:00Z')
    lines.append('2026-01-30T23:60:00Z')
    out = []
    for text in lines:
        ns = python_instant(text)
        out.append('%s\t%s\n' % (text, 'invalid' if ns is None else ns))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference.tsv')
    with open(path, 'w', encoding='ascii') as f:
        f.write(''.join(out))


if __name__ == '__main__':
    main()
