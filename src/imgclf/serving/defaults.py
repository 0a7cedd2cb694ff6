"""The defaults of ``imgclf serve``, in a module that imports nothing.

The CLI shows them in ``--help``; it must not import the server (or NumPy and Pillow)
to do so, since every pipeline stage builds the same parser.
"""

HOST = "127.0.0.1"  # loopback: only this machine, unless --host says otherwise
PORT = 8000
MAX_UPLOAD_MB = 16.0
MAX_FILES = 64
BATCH_IMAGES = 32  # most images in one model call
BATCH_WINDOW_MS = 5.0  # how long a batch waits for requests already being received
TOKEN_ENV = "IMGCLF_SERVE_TOKEN"
