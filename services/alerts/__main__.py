from services.alerts.service import main
from shared.runtime import run_service

raise SystemExit(run_service("alerts", main))
