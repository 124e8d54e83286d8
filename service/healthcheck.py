"""The container's health probe: exit 0 when this container's service answers /readyz with 200.

Runs inside the image (HEALTHCHECK) with the standard library only. With host networking two
containers listen on one port during a deploy (SO_REUSEPORT), so a probe of 127.0.0.1:$PORT
may reach the other one; the deploy driver therefore also binds each container to a private
port of its own (HEALTH_PORT), and the probe asks there when it is set.
"""
import http.client
import os
import sys


def ready(environ=os.environ, timeout: float = 2.0) -> tuple[bool, str]:
    """Ask /readyz once; return (ready, what was seen)."""
    port = int(environ.get("HEALTH_PORT") or environ.get("PORT") or 8501)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        return response.status == 200, f"/readyz on port {port}: {response.status} " \
                                       f"{response.read(200).decode(errors='replace')}"
    except OSError as error:
        return False, f"/readyz on port {port}: {error}"
    finally:
        conn.close()


def main() -> int:
    ok, seen = ready()
    print(seen)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
