"""Turning stored documents into plain JSON values for tenant exports."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from bson import json_util


@dataclass(frozen=True)
class ExportedDocument:
    """One exported document. `kind` is the collection kind, or the control collection's
    name when `control` is true. `document` is JSON-serialisable."""

    kind: str
    document: dict[str, Any]
    control: bool = False


class TenantExport(TypedDict):
    """`Store.export_tenant_json`: documents per kind, and per control collection if asked."""

    org_id: str
    collections: dict[str, list[dict[str, Any]]]
    control: NotRequired[dict[str, list[dict[str, Any]]]]


def to_json_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """MongoDB Extended JSON, relaxed mode: ObjectId -> {"$oid"}, datetime -> {"$date": ISO-8601},
    bytes -> {"$binary"}; plain numbers and strings stay as they are. `bson.json_util.loads`
    turns the result back into the original BSON types."""
    text = json_util.dumps(document, json_options=json_util.RELAXED_JSON_OPTIONS)
    converted: dict[str, Any] = json.loads(text)
    return converted
