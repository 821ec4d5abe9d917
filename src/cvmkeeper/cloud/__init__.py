"""The one interface through which cvmkeeper reaches Tencent Cloud, and its implementations."""
