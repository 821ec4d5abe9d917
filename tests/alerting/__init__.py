"""Tests of cvmkeeper.alerting: events, alerters, and the real sentry-sdk against a capture server."""
