from services.dashboard.service import main
from shared.runtime import run_service

raise SystemExit(run_service("dashboard", main))
