"""Test helpers: a rag service under a harness, called as any org."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

from pypdf import PdfReader, PdfWriter

from mcpmesh.service.testing import ServiceHarness, ToolFailed

RW = ["rag:read", "rag:write", "llm:read"]


@dataclass
class Rag:
    harness: ServiceHarness
    llm: ServiceHarness | None = None  # the mcp-llm beside it, to configure an org's models

    async def call(
        self, org: str, tool: str, args: dict[str, Any] | None = None, *, scopes: list[str] | None = None
    ) -> Any:
        return await self.harness.call_tool(org, tool, args or {}, scopes=scopes or RW)

    async def fails(
        self, org: str, tool: str, args: dict[str, Any] | None = None, *, scopes: list[str] | None = None
    ) -> ToolFailed:
        try:
            result = await self.call(org, tool, args, scopes=scopes)
        except ToolFailed as exc:
            return exc
        raise AssertionError(f"{tool} was expected to fail but returned {result!r}")


def org() -> str:
    return f"org-rag-{uuid.uuid4().hex[:10]}"


def pdf_file(pages: list[str], *, password: str | None = None) -> bytes:
    """A real PDF with one page per item (its lines in Helvetica), written by hand; with
    `password`, encrypted (AES-256) by pypdf so that it opens only with that password."""
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for text in pages:
        lines = [
            line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in text.split("\n")
        ]
        stream = " ".join(f"BT /F1 12 Tf 72 {720 - 16 * i} Td ({line}) Tj ET" for i, line in enumerate(lines))
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{at:010d} 00000 n \n" for at in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    if password is None:
        return bytes(out)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(bytes(out))))
    writer.encrypt(user_password=password, algorithm="AES-256")
    encrypted = io.BytesIO()
    writer.write(encrypted)
    return encrypted.getvalue()
