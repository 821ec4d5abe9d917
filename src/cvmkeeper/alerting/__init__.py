"""Alerts (Sentry events) and missed-run detection (Sentry Crons check-ins)."""
