"""The inference tables of one gateway, built from the settings: their storage (Parquet or the
PostgreSQL store, by the store's dialect), the writer, the capture the scoring path uses, and
the event that says a write failed."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from regserve.inference.capture import InferenceCapture
from regserve.inference.storage import TableStorage, storage_for
from regserve.inference.writer import TableWriter, WriterConfig
from regserve.metrics import CaptureMetrics
from regserve.redaction import PathRedactor
from regserve.settings import Settings
from regserve.store import StateStore

__all__ = ["WRITE_FAILED_EVENT", "InferenceTables"]

WRITE_FAILED_EVENT = "INFERENCE_TABLE_WRITE_FAILED"
REFRESH_SECONDS = 2.0
"""How often each gateway reads the models' capture tags from the store."""


@dataclass
class InferenceTables:
    capture: InferenceCapture
    writer: TableWriter

    @property
    def storage(self) -> TableStorage:
        return self.writer.storage

    @classmethod
    def build(
        cls, settings: Settings, store: StateStore, registry: CollectorRegistry
    ) -> InferenceTables:
        shown = PathRedactor.for_settings(settings)
        storage = storage_for(settings, store)

        def report(model: str, rows: int, error: str) -> None:
            message = (
                f"Could not write {rows} captured requests to the inference table "
                f"({shown(error)}); they are lost, the requests were answered as usual. Check "
                f"the space and permissions of {storage.where}."
            )
            store.add_event(model, WRITE_FAILED_EVENT, message)

        config = WriterConfig(
            queue_rows=settings.inference_table_queue_rows,
            flush_seconds=settings.inference_table_flush_seconds,
            retention_days=settings.inference_table_retention_days,
        )
        writer = TableWriter(config, storage, CaptureMetrics(registry), report)
        return cls(InferenceCapture(writer, settings.inference_table_max_body_bytes), writer)

    async def follow(self, store: StateStore) -> None:
        await self.capture.follow(store, REFRESH_SECONDS)
