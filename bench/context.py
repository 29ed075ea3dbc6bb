"""What every benchmark module gets: the servers' URLs and a scratch folder."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shared.embedded import EmbeddedPostgres, EmbeddedRedis


@dataclass
class BenchContext:
    redis_url: str
    database_url: str
    work_dir: Path

    @classmethod
    @contextmanager
    def start(cls) -> Iterator[BenchContext]:
        with tempfile.TemporaryDirectory(prefix="tradewind-bench-") as tmp:
            work = Path(tmp)
            servers: list[EmbeddedRedis | EmbeddedPostgres] = []
            try:
                redis_url = os.environ.get("REDIS_URL")
                if not redis_url:
                    r = EmbeddedRedis(work / "redis")
                    servers.append(r)
                    redis_url = r.start()
                database_url = os.environ.get("DATABASE_URL")
                if not database_url:
                    pg = EmbeddedPostgres(work / "pg")
                    servers.append(pg)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        database_url = pg.start()
                yield cls(redis_url, database_url, work)
            finally:
                for s in reversed(servers):
                    s.stop()
