"""THE BARE FRAMEWORK, NOT THE SERVICE: the least a Flask app can do for this request, on the
same server and settings as the service (gunicorn with service/gunicorn_conf.py): parse the
same JSON body, answer a constant. Nothing else (no validation, model, metrics, logs or
request ids). The benchmark's overhead target is a fraction of its throughput.

    gunicorn -c service/gunicorn_conf.py 'bench.bare:create_app()'
"""
from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/readyz")
    def readyz():
        return jsonify(status="ready")

    @app.post("/v1/models/<name>:predict")
    def predict(name):
        request.get_json(force=True)
        return jsonify(predictions=[[0.5]])

    return app
