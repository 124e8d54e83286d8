"""The container's health probe: exit 0 when this container's service answers /readyz with 200.

Runs inside the image (HEALTHCHECK) with the standard library only. With host networking two
containers can listen on one port during a deploy, so a probe of 127.0.0.1:$PORT may reach the
other one; when the deploy driver gave the container a private unix socket (HEALTH_SOCKET),
the probe asks through that socket instead.
"""
import http.client
import os
import socket
import sys


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def ready(environ=os.environ, timeout: float = 2.0) -> tuple[bool, str]:
    """Ask /readyz once; return (ready, what was seen)."""
    path = environ.get("HEALTH_SOCKET")
    if path:
        conn = UnixHTTPConnection(path, timeout)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", int(environ.get("PORT", "8501")),
                                          timeout=timeout)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        return response.status == 200, f"/readyz: {response.status} {response.read(200)!r}"
    except OSError as error:
        return False, f"/readyz: {error}"
    finally:
        conn.close()


def main() -> int:
    ok, seen = ready()
    print(seen)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
