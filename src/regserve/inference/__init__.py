"""Inference tables: scoring requests and their answers captured per model, written off the hot
path (as Parquet files under ``<data-dir>/inference``, or to the PostgreSQL store's
``inference_rows`` when that is the store) and read back (docs/api.md)."""
