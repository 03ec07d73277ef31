"""The gateway's wire models and what its OpenAPI document shows of them, one module per kind: the request
bodies (`requests`), the answers (`responses`), the example bodies (`examples`) and the documented error
answers (`error_docs`). What the UI reads too (`/v1/models`, `/readyz`) lives in `contract.status`.
"""
