"""Loading and validating the daemon config and the policy files into core values."""
