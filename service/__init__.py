"""The prediction service: TensorFlow Serving's REST API for one LiteRT model, on Flask.

Production: `gunicorn -c service/gunicorn_conf.py 'service:create_app()'` (see gunicorn_conf.py).
`create_app` is imported on first use, so `python -m service.healthcheck` (the image's
HEALTHCHECK, every 15 s) loads the standard library only.
"""

__all__ = ["create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from service.app import create_app
        return create_app
    raise AttributeError(f"module 'service' has no attribute {name!r}")
