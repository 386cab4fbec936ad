"""The HTTP API layer (docs/api.md), built on the core: each operation declared once
(`operations`), bound from any wire format (`binding`, `formats`), answered in
the negotiated one (`responses`), and described from the same declarations
(`metadata`: OpenAPI and ServiceStack's /types/python)."""
