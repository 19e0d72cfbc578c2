"""`abflow web`: the dashboard and HTTP API over the result tables (issue 16, SPEC §9).

`abflow.web.app.create_app()` builds the FastAPI application; the pages share their layout and
the report's sections with `abflow report` (abflow.reporting). Nothing here imports Prefect
unless an analysis run is requested (abflow.web.runs).
"""
