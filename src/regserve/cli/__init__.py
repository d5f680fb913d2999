"""The ``regserve`` command."""
