"""The HTTP front end: authenticate, rate-limit, validate, store, record, enqueue. Never runs a model."""
