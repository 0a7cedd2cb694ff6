"""``imgclf serve``: the prediction server (HTTP API and web page) and its parts.

``model`` loads the model behind one function (``load_predictor``: the one place to
switch to another model loader), ``batcher`` groups concurrent requests into one model
call, ``uploads`` reads the multipart body as it streams in, ``limits`` guards the
request (body size and time, tokens in URLs) and answers the requests shutdown cuts off,
``protocol`` times out a request's headers, ``report`` reads the evaluate stage's
outputs for the page, ``settings`` holds the options, ``app`` puts them together as a
FastAPI application (the page is in ``static/``) and ``server`` runs it with uvicorn.
"""
