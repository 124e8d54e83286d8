"""What the service knows about itself: the model it loaded (or why it has none), and whether
it is shutting down. /readyz reads this; gunicorn_conf.py starts the shutdown on SIGTERM."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from service.config import Config
from service.metrics import MODEL, PredictionMetrics
from service.predictor import ModelError, Predictor
from service.validation import BatchParser

log = logging.getLogger("service")

# Per process: gunicorn's worker hook sets it on SIGTERM, so a load balancer sees /readyz
# fail while the requests in flight finish.
_shutting_down = threading.Event()


def begin_shutdown() -> None:
    _shutting_down.set()


def shutting_down() -> bool:
    return _shutting_down.is_set()


@dataclass(frozen=True)
class ServiceState:
    config: Config
    predictor: Predictor | None
    parser: BatchParser | None
    predictions: PredictionMetrics | None
    error: str | None

    @property
    def ready(self) -> bool:
        return self.predictor is not None and not shutting_down()


def load(config: Config, predictor: Predictor | None = None) -> ServiceState:
    """Load and check the model and predict one row with it; on any failure keep the reason,
    log it, and stay up unready (a crash loop would hide the reason from /readyz)."""
    started = time.perf_counter()
    try:
        predictor = predictor or Predictor(config.model_dir)
        output = predictor.warm_up()
    except ModelError as error:
        return _unready(config, str(error))
    except Exception as error:  # noqa: BLE001 - a model file can break LiteRT in many ways
        log.exception("model failed to load")
        return _unready(config, f"{type(error).__name__}: {error}")
    manifest = predictor.manifest
    MODEL.labels(config.model_name, predictor.version, manifest.model_sha256).set(1)
    log.info("model loaded", extra={
        "model_dir": str(config.model_dir), "model_name": config.model_name,
        "model_version": predictor.version, "sha256": manifest.model_sha256,
        "features": len(predictor.schema.features), "warm_up_output": output,
        "seconds": round(time.perf_counter() - started, 4)})
    return ServiceState(config, predictor, BatchParser(predictor.schema, config.max_rows),
                        PredictionMetrics(predictor.schema, manifest.threshold), None)


def _unready(config: Config, error: str) -> ServiceState:
    log.error("model not loaded: the service stays unready (/readyz 503): %s", error,
              extra={"model_dir": str(config.model_dir), "error": error})
    return ServiceState(config, None, None, None, error)
