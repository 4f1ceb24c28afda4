"""Who is calling: org ids, the tenant stamp (internal JWT), scopes and API keys."""

from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id
from mcpmesh.tenancy.apikeys import ApiKey, check_key_tags, hash_api_key, new_api_key, parse_api_key
from mcpmesh.tenancy.scopes import covers, scope_for
from mcpmesh.tenancy.stamp import Stamp, StampSigner, StampVerifier

__all__ = [
    "ApiKey",
    "InvalidIdentifier",
    "Stamp",
    "StampSigner",
    "StampVerifier",
    "check_key_tags",
    "covers",
    "hash_api_key",
    "new_api_key",
    "parse_api_key",
    "scope_for",
    "validate_org_id",
]
