"""Data: manifests, corpus preparers, audio I/O, batching."""
