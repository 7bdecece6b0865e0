"""Value normalisation shared by indexing (write) and search (read)."""

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone

_DATE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<H>\d{2}):(?P<M>\d{2})(:(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def normalize_string(value: str) -> str:
    """Case- and accent-insensitive form used for string search (FHIR default)."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def _add_months(dt: datetime, months: int) -> datetime:
    year, month = divmod(dt.month - 1 + months, 12)
    return dt.replace(year=dt.year + year, month=month + 1)


def date_range(value: str) -> tuple[datetime, datetime]:
    """The [low, high) instant range a FHIR date/dateTime/instant covers (UTC when no zone).

    Raises ValueError for a malformed value.
    """
    match = _DATE.match(value.strip())
    if not match:
        raise ValueError(f"invalid date: {value!r}")
    g = match.groupdict()
    tz = UTC
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    year = int(g["y"])
    if g["m"] is None:
        low = datetime(year, 1, 1, tzinfo=tz)
        return low, _add_months(low, 12)
    month = int(g["m"])
    if g["d"] is None:
        low = datetime(year, month, 1, tzinfo=tz)
        return low, _add_months(low, 1)
    day = int(g["d"])
    if g["H"] is None:
        low = datetime(year, month, day, tzinfo=tz)
        return low, low + timedelta(days=1)
    if g["S"] is None:
        low = datetime(year, month, day, int(g["H"]), int(g["M"]), tzinfo=tz)
        return low, low + timedelta(minutes=1)
    micro = int(g["f"][1:7].ljust(6, "0")) if g["f"] else 0
    low = datetime(year, month, day, int(g["H"]), int(g["M"]), int(g["S"]), micro, tzinfo=tz)
    step = timedelta(microseconds=1) if g["f"] else timedelta(seconds=1)
    return low.astimezone(UTC), (low + step).astimezone(UTC)


def format_instant(dt: datetime) -> str:
    """FHIR instant text in UTC (microsecond precision keeps ordering exact)."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def split_reference(reference: str) -> tuple[str | None, str] | None:
    """'Patient/123' or 'http://x/fhir/Patient/123/_history/2' -> ('Patient', '123')."""
    ref = reference.split("/_history/")[0]
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    if len(parts) == 1 and parts[0]:
        return None, parts[0]
    return None


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(dt: datetime) -> str:
    """RFC 9110 HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`) of an aware datetime."""
    u = dt.astimezone(UTC)
    return (
        f"{_DAYS[u.weekday()]}, {u.day:02d} {_MONTHS[u.month - 1]} {u.year:04d} "
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d} GMT"
    )
