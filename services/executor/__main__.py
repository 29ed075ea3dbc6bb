from services.executor.service import main
from shared.runtime import run_service

raise SystemExit(run_service("executor", main))
