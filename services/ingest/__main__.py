from services.ingest.service import main
from shared.runtime import run_service

raise SystemExit(run_service("ingest", main))
