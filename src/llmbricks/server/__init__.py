"""``llmbricks serve``: an OpenAI-compatible HTTP server over the continuous-batching engine.

Needs the ``serve`` extra (FastAPI and uvicorn): ``pip install 'llmbricks[serve]'``.
"""
