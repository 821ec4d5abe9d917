"""A CVM API 3.0 emulator: a state machine with an injected clock and a thin HTTP front."""
