"""The prediction service: TensorFlow Serving's REST API for one LiteRT model, on Flask.

Production: `gunicorn -c service/gunicorn_conf.py 'service:create_app()'` (see gunicorn_conf.py).
"""
from service.app import create_app

__all__ = ["create_app"]
