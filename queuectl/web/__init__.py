"""``queuectl dashboard``: a web page of one queue, its JSON API and Prometheus metrics.

A front end beside the console script and the notebook: its pages and ``/api/`` run the same
click commands and serialize their ``Result`` objects. Only ``command`` is light; the rest
needs the ``web`` extra (starlette, uvicorn, jinja2, sse-starlette, prometheus-client).
"""
