"""The meta-tile pipeline: runs, per-meta-tile computation, finalisation and catalog registration."""
