"""Release tooling: build, smoke-test and push the serving image, deploy it and roll it back.

`python -m deploy --help` is the command line. Not in the serving image, which ships only the
service and the contract.
"""
