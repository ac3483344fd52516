"""deepscreen for the people who call it: the Python client (``deepscreen.client``).

Kept apart from the server packages (core, web, workers, ml, cli) so that a script or a bot can
``pip install deepscreen`` and import the client without Flask, SQLAlchemy, Celery or ONNX Runtime.
"""
