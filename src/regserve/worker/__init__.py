"""The worker: runs inside a model's environment, loads one model version and answers scoring
requests framed by :mod:`regserve.worker.wire` over a Unix socket.

Everything in this package may import only the standard library, mlflow, numpy and pandas,
because it runs inside the model's own environment.
"""
