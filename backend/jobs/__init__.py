"""Jobs: the run lifecycle (create, compute, finalise, go live), the Celery app and its tasks."""
