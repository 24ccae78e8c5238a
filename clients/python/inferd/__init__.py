"""Python client for the inferd inference daemon.

``pipeline()`` works like Hugging Face's ``transformers.pipeline()``, but the
model runs in the daemon: the call goes over gRPC and the result has the same
shape and keys as the one ``transformers`` would return::

    from inferd import pipeline

    classifier = pipeline("sentiment-analysis", address="localhost:50051")
    classifier("I love this!")   # [{'label': 'POSITIVE', 'score': 0.99...}]

``Client`` holds the connection. It makes pipelines, manages models, and
exposes the generated gRPC stubs as ``client.inference`` and
``client.models``. The generated messages live in ``inferd.v1``.
"""

from .client import Client, InferdError, Pipeline, pipeline

__all__ = ["Client", "InferdError", "Pipeline", "pipeline"]
