"""THE SERVICE WITH A CONSTANT MODEL, NOT THE SERVICE: the same app, gunicorn settings, JSON
parsing, validation, metrics and logs, with the model call replaced by a constant. What the
service would do if inference were free: the model's share of the time per request.

    MODEL_DIR=... gunicorn -c service/gunicorn_conf.py 'bench.constant:create_app()'
"""
import numpy as np

import service
from service.config import Config
from service.predictor import Predictor


class ConstantPredictor(Predictor):
    """The real model's manifest and schema (the loading checks run too), no inference."""

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.full((len(rows), len(self.schema.outputs)), 0.5, dtype=np.float32)


def create_app():
    config = Config.from_env()
    return service.create_app(config, ConstantPredictor(config.model_dir))
