"""What the web and the workers share: settings, database, object store, job states, status cache.

Imports neither Flask nor Celery.
"""
