"""The serving benchmark (`make bench`): this service against a baseline and the bare framework."""
