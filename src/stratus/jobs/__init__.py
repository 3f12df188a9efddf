"""Processing jobs: transformations submitted through the API that write Delta tables.

A job is queued in the metastore, run by a worker pool outside the request path on the embedded
engine (DuckDB over delta-rs) or on Apache Spark (Spark Connect), and commits its result to a
Delta table registered in the catalog, with lineage and an audit record.
"""
