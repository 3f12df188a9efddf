"""Generic governed tables: PII-aware writes (encrypt) and reads (decrypt or mask), ingest of any
file into any catalog table, and the PII lifecycle (tagging, untagging, key rotation)."""
