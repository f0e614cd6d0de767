"""A JSON answer that any text survives.

Reports of uploaded files quote the lines they rejected; a line that was not UTF-8 is held as
lone surrogates, which UTF-8 cannot encode, so the default JSON answer would fail (a 500).
Escaping non-ASCII (`\\u00e9`) gives the same document in a form every input survives.
"""
from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


class AsciiJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
