"""gunicorn settings for the prediction service. Run it with:

    gunicorn -c service/gunicorn_conf.py 'service:create_app()'
    gunicorn --config python:service.gunicorn_conf 'service:create_app()'   # same, by module

(`make serve` does the first with MODEL_DIR, MODEL_NAME and PORT from the Makefile.)

Environment:
  PORT              listen on 0.0.0.0:PORT (default 8501, TF Serving's REST port)
  MODEL_DIR, MODEL_NAME, MAX_ROWS, MAX_BODY_BYTES, LOG_FEATURES   read by the app (config.py)
  WEB_CONCURRENCY   worker processes (default 2 on 2 cores: see bench/RESULTS.md)
  REUSE_PORT        1 to set SO_REUSEPORT, so a second server can take over the same port
                    (each worker then binds its own socket and the kernel spreads connections)
  GRACEFUL_TIMEOUT  seconds a worker gets after SIGTERM to finish its requests (default 30)
  PROMETHEUS_MULTIPROC_DIR  where the workers' metrics meet (default: a new directory under
                    $TMPDIR or /tmp, removed at exit; /tmp is a tmpfs in the read-only image)
GUNICORN_CMD_ARGS overrides any of these (the deploy driver sets its binds there).

On SIGTERM the master stops accepting, each worker finishes the requests it holds (up to
GRACEFUL_TIMEOUT) and /readyz answers 503 from then on, so a load balancer drains the server.
The choices below (sync workers, two of them) come from measurements in bench/RESULTS.md.
"""
import glob
import os
import shutil
import signal
import tempfile


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


bind = [f"0.0.0.0:{os.environ.get('PORT') or 8501}"]
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
worker_class = "sync"
reuse_port = _flag("REUSE_PORT")
# A request takes milliseconds; a worker silent for this long is stuck and gets replaced.
timeout = 30
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT") or 30)
# Behind a load balancer idle connections stay open this long (gthread/async workers only).
keepalive = 5
# The app logs one JSON line per request; gunicorn's access log would repeat it.
accesslog = None
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "service.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["stderr"],
                                   "propagate": False}},
}
# Each worker builds its own app and LiteRT interpreter after the fork (never shared).
preload_app = False


def _metrics_directory() -> str | None:
    """prometheus_client chooses its multiprocess mode when it is imported, so this runs
    as the config loads, before anything imports it. Returns the directory made here."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="prometheus-multiproc-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        return directory
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)  # numbers of an earlier run would be added to ours
    return None


_created_metrics_dir = _metrics_directory()


def on_starting(server):
    """In the master, before any worker: import the service once (libraries only, no model),
    so that each worker starts from a warm copy instead of importing them again."""
    import service.app  # noqa: F401


def post_worker_init(worker):
    """Chain gunicorn's SIGTERM handler: /readyz turns 503 the moment shutdown begins."""
    from service.state import begin_shutdown
    graceful = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        begin_shutdown()
        graceful(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn has it: requests run on


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
