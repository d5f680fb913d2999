"""Inference tables: scoring requests and their answers captured per model, written off the hot
path as Parquet files under ``<data-dir>/inference`` and read back (docs/api.md)."""
