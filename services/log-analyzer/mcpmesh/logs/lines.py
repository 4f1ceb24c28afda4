"""One log line → a typed record: App Service HTTP logs and console logs (JSON Lines).

HTTP lines carry their fields in `properties`, an object or (sometimes) a JSON string holding
one; numbers may come as strings. Console lines carry `level` and `resultDescription`. A line
that is not one JSON object, has no usable `time`, or an HTTP line without a status code, is
`Malformed` with the reason (never an exception).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

import msgspec


class HttpProps(msgspec.Struct):
    CsMethod: str = ""
    CsUriStem: str = ""
    CsHost: str = ""
    CIp: str = ""
    UserAgent: str = ""
    ScStatus: int = -1
    ScBytes: int = 0
    TimeTaken: float = 0.0


class Line(msgspec.Struct):
    time: str = ""
    category: str = ""
    level: str = ""
    resultDescription: str = ""
    properties: msgspec.Raw = msgspec.Raw(b"")


HTTP_CATEGORY: Final = "AppServiceHTTPLogs"
CONSOLE_CATEGORY: Final = "AppServiceConsoleLogs"

_line = msgspec.json.Decoder(Line)
_props = msgspec.json.Decoder(HttpProps, strict=False)
_text = msgspec.json.Decoder(str)


class Malformed(Exception):
    """A line that could not be read; `reason` says why (no library text)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode(raw: bytes) -> tuple[Line, HttpProps | None]:
    """The line and, for an HTTP line, its properties. Raises Malformed."""
    try:
        line = _line.decode(raw)
    except msgspec.ValidationError:
        raise Malformed(
            "a field has the wrong type (time, category, level and resultDescription are strings)"
        ) from None
    except msgspec.DecodeError:
        raise Malformed("not a JSON object") from None
    if not line.time:
        raise Malformed("no 'time'")
    props = line.properties
    if line.category == HTTP_CATEGORY or (line.category == "" and b"ScStatus" in raw):
        if not len(props):
            raise Malformed("HTTP line without 'properties'")
        try:
            if memoryview(props)[:1] == b'"':  # properties as a JSON string holding the object
                http = _props.decode(_text.decode(props).encode())
            else:
                http = _props.decode(props)
        except msgspec.ValidationError as exc:
            raise Malformed(f"HTTP properties: {_field_of(exc)} has the wrong type") from None
        except msgspec.DecodeError:
            raise Malformed("HTTP 'properties' is not a JSON object") from None
        if not 100 <= http.ScStatus <= 599:
            raise Malformed("HTTP line without a status code (ScStatus 100-599)")
        return line, http
    return line, None


def _field_of(exc: msgspec.ValidationError) -> str:
    found = re.search(r"`\$\.(\w+)`", str(exc))
    return found.group(1) if found else "a field"


class Minutes:
    """ISO 8601 times → Unix minutes, cached per minute prefix (lines of one minute share it)."""

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        prefix = text[:16]
        minute = self._cache.get(prefix)
        if minute is None:
            minute = self._parse(text)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[prefix] = minute
        return minute

    @staticmethod
    def _parse(text: str) -> int:
        try:
            if len(text) < 16 or text[10] not in "T ":
                raise ValueError
            moment = datetime.fromisoformat(text[:16])
        except ValueError:
            raise Malformed("'time' is not an ISO 8601 time") from None
        return int(moment.replace(tzinfo=UTC).timestamp()) // 60


def minute_iso(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%MZ")
