"""SQL on the lakehouse: Databricks SQL parsed with sqlglot, governed like the REST API, run by
DuckDB over the tables (see :mod:`stratus.sql.service`)."""
