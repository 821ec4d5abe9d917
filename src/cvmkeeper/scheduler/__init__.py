"""The long-running scheduler and its systemd integration."""
