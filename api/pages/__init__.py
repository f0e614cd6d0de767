"""Server-rendered pages for the three kinds of user: campaign managers, compliance and agents.

Jinja2 templates (autoescaped) with htmx for partial updates and its SSE extension for what the
server pushes (live campaign counters, transfer offers). Both scripts are vendored under
`api/static/vendor/`: pages work without any CDN. One router module per role area; routers stay
thin and reuse the services the CLI and REST API use.
"""
