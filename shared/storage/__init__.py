"""PostgreSQL storage: pool, migrations, batched idempotent COPY writer."""

from shared.storage.db import Database, StorageUnavailable, migrations
from shared.storage.writer import CopyWriter, ns_to_datetime

__all__ = ["CopyWriter", "Database", "StorageUnavailable", "migrations", "ns_to_datetime"]
