"""Tests of cvmkeeper.alerting: values, alerters, and the real sentry-sdk on a local server."""
