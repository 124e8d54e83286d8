"""Release tooling: build, smoke-test and push the serving image, deploy it and roll it back.

`python -m deploy --help` is the command line. The package stays import-light: the serving
image carries it only for `deploy.healthcheck`, which needs nothing but the standard library.
"""
