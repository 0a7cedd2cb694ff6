"""``imgclf serve``: the prediction server (HTTP API and web page) and its parts.

``model`` loads the model behind one function, ``batcher`` groups concurrent requests
into one model call, ``limits`` guards the request body, ``report`` reads the evaluate
stage's outputs for the page, ``app`` puts them together as a FastAPI application and
``server`` runs it with uvicorn.
"""
