"""gunicorn settings for the prediction service. Run it with:

    gunicorn -c service/gunicorn_conf.py 'service:create_app()'
    gunicorn --config python:service.gunicorn_conf 'service:create_app()'   # same, by module

(`make serve` does the first with MODEL_DIR, MODEL_NAME and PORT from the Makefile.)

Environment:
  PORT              listen on 0.0.0.0:PORT (default 8501, TF Serving's REST port)
  MODEL_DIR, MODEL_NAME, MAX_ROWS, MAX_BODY_BYTES, LOG_FEATURES   read by the app (config.py)
  WEB_CONCURRENCY   worker processes (default: the CPUs this process may use, counting a
                    container's CPU quota; one per core measured best, bench/RESULTS.md)
  BODY_TIMEOUT      seconds a request's body may take to arrive after its headers (default
                    10; then 408). Headers must arrive within `keepalive` (5) seconds.
  REUSE_PORT        1 to set SO_REUSEPORT, so a second server can take over the same port
                    (each worker then binds its own socket and the kernel spreads connections)
  GRACEFUL_TIMEOUT  seconds a worker gets after SIGTERM to finish its requests (default 30)
  PROMETHEUS_MULTIPROC_DIR  where the workers' metrics meet (default: a new directory under
                    $TMPDIR or /tmp, removed at exit; /tmp is a tmpfs in the read-only image)
GUNICORN_CMD_ARGS overrides any of these (the deploy driver sets its binds there).

On SIGTERM the master stops accepting, each worker finishes the requests it holds (up to
GRACEFUL_TIMEOUT) and /readyz answers 503 from then on, so a load balancer drains the server.
The choices below (gevent workers, one per CPU, keep-alive) come from measurements in
bench/RESULTS.md: a sync or gthread worker is held by one client that sends slowly, a
greenlet per connection is not (service/worker.py).
"""
import glob
import math
import os
import shutil
import signal
import tempfile


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def cpus_available(cgroup: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may run on (its affinity), capped by its cgroup's CPU quota (what
    `docker run --cpus` and Kubernetes' CPU limits set): cgroup v2's cpu.max, or v1's
    cpu.cfs_quota_us and cpu.cfs_period_us. A fractional quota rounds up."""
    cpus = len(os.sched_getaffinity(0))
    quota = _read(f"{cgroup}/cpu.max")  # v2: "<quota> <period>", or "max <period>"
    if quota is None:
        v1 = [_read(f"{cgroup}/cpu/cpu.cfs_{name}_us") for name in ("quota", "period")]
        quota = " ".join(v1) if None not in v1 else None  # v1: quota -1 is none
    if quota:
        limit, period = quota.split()
        if limit not in ("max", "-1"):
            cpus = min(cpus, math.ceil(int(limit) / int(period)))
    return max(cpus, 1)


def _read(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return None


bind = [f"0.0.0.0:{os.environ.get('PORT') or 8501}"]
workers = int(os.environ.get("WEB_CONCURRENCY") or cpus_available())
# gevent's worker: a greenlet per connection, so a slow client holds only its own; plus the
# deadlines on the headers and the body (service/worker.py).
worker_class = "service.worker.ServiceWorker"
# Per worker; memory stays bounded: each holds at most MAX_BODY_BYTES of a body.
worker_connections = 1000
reuse_port = _flag("REUSE_PORT")
# A worker that does not check in with the master for this long is stuck and is replaced.
timeout = 30
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT") or 30)
# Idle kept-alive connections close after this many seconds, and a request's headers must
# arrive within it (gunicorn's rule for async workers); a stopping worker answers with
# "Connection: close".
keepalive = 5
# The app logs one JSON line per request; gunicorn's access log would repeat it.
accesslog = None
logger_class = "service.logs.GunicornLogger"
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
