"""MongoDB for mcpmesh: the only code that touches it and the only code that names collections."""

from mcpmesh.proto.ids import InvalidIdentifier
from mcpmesh.store.connection import (
    MISSING_URL,
    Collection,
    Database,
    MongoSettings,
    StoreNotConfigured,
    connect_database,
)
from mcpmesh.store.errors import UndeclaredKind
from mcpmesh.store.export import ExportedDocument, TenantExport, to_json_document
from mcpmesh.store.indexes import Index
from mcpmesh.store.naming import CONTROL_COLLECTIONS, ControlName, validate_kind
from mcpmesh.store.store import Store, TenantDrop, TenantStore

__all__ = [
    "CONTROL_COLLECTIONS",
    "MISSING_URL",
    "Collection",
    "ControlName",
    "Database",
    "ExportedDocument",
    "Index",
    "InvalidIdentifier",
    "MongoSettings",
    "Store",
    "StoreNotConfigured",
    "TenantDrop",
    "TenantExport",
    "TenantStore",
    "UndeclaredKind",
    "connect_database",
    "to_json_document",
    "validate_kind",
]
