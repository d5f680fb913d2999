"""Tests of :mod:`regserve.restart` in process: the inherited listening socket and the drain
gate, on real sockets. No fixture of its own: each test binds what it needs."""
