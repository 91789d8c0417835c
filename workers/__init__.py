"""Celery side of the receiver: tasks are thin wrappers over the plain functions in pipeline."""
