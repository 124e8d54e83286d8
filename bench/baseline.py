"""BASELINE, NOT THE SERVICE: what a tutorial would have users write, measured so the
benchmark can say how much the real service gains. Flask's development server, the Keras
model loaded with TensorFlow, and `model.predict` on every request. Never deploy this.

    python bench/baseline.py MODEL_DIR PORT
"""
import sys
from pathlib import Path

import keras
import numpy as np
from flask import Flask, jsonify, request


def create_app(model_dir: Path) -> Flask:
    app = Flask(__name__)
    model = keras.models.load_model(model_dir / "model.keras")

    @app.get("/readyz")
    def readyz():
        return jsonify(status="ready")

    @app.post("/v1/models/<name>:predict")
    def predict(name):
        instances = request.get_json(force=True)["instances"]
        if isinstance(instances[0], dict):
            instances = [list(row.values()) for row in instances]
        x = np.array(instances, dtype=np.float32)
        return jsonify(predictions=model.predict(x, verbose=0).tolist())

    return app


if __name__ == "__main__":
    create_app(Path(sys.argv[1])).run(host="127.0.0.1", port=int(sys.argv[2]))
