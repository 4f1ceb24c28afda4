"""PDF text through pypdf: the text of each page, in page order.

A PDF encrypted with a user password is refused (one with only an owner password, which
readers open without asking, is read); anything pypdf cannot parse is "not a readable PDF"."""

from __future__ import annotations

import io

from pypdf import PdfReader

from mcpmesh.proto.errors import ErrorCode, MeshException


def page_texts(data: bytes) -> list[str]:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise MeshException(
                ErrorCode.INVALID_REQUEST,
                "the PDF is encrypted with a password: send a copy saved without one",
            )
        return [page.extract_text() or "" for page in reader.pages]
    except MeshException:
        raise
    except Exception:  # pypdf raises many kinds on a damaged file; none of their text is useful here
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            "the content is not a readable PDF (damaged or truncated): send the whole file, base64-encoded",
        ) from None
