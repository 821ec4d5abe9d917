"""Restore and restore drills: bringing a backup back, by hand and on a schedule (issue #16).

The decisions (which image, where, what in-place takes) are pure and live in
:mod:`cvmkeeper.core.restore`; this package does the I/O: it finds the instance and its
images in the cloud, launches or resets, waits, and always cleans up what it started.
"""
