"""schemathesis hooks for scripts/fuzz.py (loaded through the `hooks` key of its config file).

They supply what docs/openapi.yaml states but OpenAPI cannot express, so that schema-valid
requests are valid for the server too; they never touch a value the fuzzer made invalid on
purpose (a non-UUID id, a malformed time stays as generated):

- format `page-cursor` (the `cursor` of GET /api/v1/devices): a value the API could have
  returned as `next_cursor`, i.e. base64 of a device id;
- POST /api/v1/devices/{id}/heartbeat: the body's `device_id` equals the path id
  (400 `device_id_mismatch` otherwise);
- GET /api/v1/devices/{id}/uptime: `from` before `to`, where `to` defaults to now
  (400 `invalid_query` otherwise).
"""
from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta, timezone

import schemathesis
from hypothesis import strategies as st

UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
# The RFC 3339 texts the server parses (`t`, `z` or a space allowed); its year range is checked by the caller.
DATE_TIME = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))$")
LATEST = "9999-12-31T23:59:59.999Z"  # the latest time the server accepts

schemathesis.openapi.format(
    "page-cursor", st.uuids().map(lambda uuid: base64.b64encode(str(uuid).encode()).decode()))


def parse_time(value: object) -> datetime | None:
    """The instant an RFC 3339 text names, or None when it is not one the server would accept."""
    if not isinstance(value, str):
        return None
    match = DATE_TIME.fullmatch(value)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    # milliseconds, as the server keeps them (finer digits are dropped)
    fraction = (match.group(7) or "0")[:3].ljust(3, "0") + "000"
    try:
        local = datetime(year, month, day, hour, minute, min(second, 59), int(fraction))
        offset = timedelta(0)
        if match.group(9):
            offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
            if match.group(9) == "-":
                offset = -offset
        return (local - offset).replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        return None


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation
    method = case.method.upper()
    if method == "POST" and operation.path == "/api/v1/devices/{id}/heartbeat":
        path_id = (case.path_parameters or {}).get("id")
        body = case.body
        if (isinstance(path_id, str) and UUID.fullmatch(path_id) and isinstance(body, dict)
                and isinstance(body.get("device_id"), str) and UUID.fullmatch(body["device_id"])):
            body["device_id"] = path_id
    elif method == "GET" and operation.path == "/api/v1/devices/{id}/uptime":
        query = case.query
        if not isinstance(query, dict) or "from" not in query:
            return
        start = parse_time(query.get("from"))
        if start is None:
            return
        if "to" not in query:
            # `to` defaults to now: a later `from` needs a `to`, or none itself
            if start >= datetime.now(timezone.utc) - timedelta(seconds=5):
                if start < parse_time(LATEST):
                    query["to"] = LATEST
                else:
                    del query["from"]
            return
        end = parse_time(query.get("to"))
        if end is None or start < end:
            return
        if start > end:
            query["from"], query["to"] = query["to"], query["from"]
        else:
            del query["from"]  # equal: `from` defaults to a day before `to`
