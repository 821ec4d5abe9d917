"""The pure core: values in, decisions (with reasons) out.

Nothing in this package performs I/O, reads the clock, or keeps global state; every
function takes ``now`` and the inventory as arguments. That is what makes it safe to
property-test and to replay a simulated year in seconds.
"""
