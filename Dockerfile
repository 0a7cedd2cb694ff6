# The imgclf pipeline in a container (see docs/docker.md).
#   docker compose run --rm app                        # dvc repro (the default command)
#   docker compose run --rm app imgclf --help          # or any imgclf / dvc command
# A GPU image: docker build --build-arg TF_EXTRA=and-cuda -t imgclf:gpu .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# "and-cuda": install tensorflow[and-cuda] (TensorFlow's CUDA libraries, from PyPI)
ARG TF_EXTRA=""
# the user's uid: make it yours so that the folders mounted from the host are writable
ARG UID=1000

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    DVC_NO_ANALYTICS=1

# git: DVC keeps the pipeline's state in a git repository. The project folder belongs to
# the (non-root) user, who writes data/, models/, metrics/, dvc.lock and the DVC cache.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/* \
 && git config --system --add safe.directory '*' \
 && useradd --create-home --uid "${UID}" --user-group imgclf \
 && install -d -o imgclf -g imgclf /app

WORKDIR /app

# The pinned dependencies in a layer of their own, before the code: changing the code
# does not reinstall TensorFlow. The GPU extra is held to the locked versions.
COPY requirements.lock ./
# hadolint ignore=DL3013
RUN pip install -r requirements.lock \
 && if [ -n "${TF_EXTRA}" ]; then pip install -c requirements.lock "tensorflow[${TF_EXTRA}]"; fi

COPY --chown=imgclf:imgclf . .
RUN pip install --no-deps --no-build-isolation -e .

# The build context has no .git (.dockerignore): the image's copy of the project becomes
# a git repository of its own, one commit, so that every dvc command works as usual.
USER ${UID}
RUN git config --global user.name imgclf \
 && git config --global user.email imgclf@localhost \
 && git init -q -b main \
 && git add -A \
 && git commit -q -m "imgclf image" \
 && dvc config --local cache.type reflink,copy
# Above, the last line: the outputs (data/, models/) and the DVC cache are separate
# mounts from the host, and Linux refuses hard links across mounts (EXDEV) even on one
# filesystem; DVC then fell back to symlinks to /app/.dvc/cache/..., which dangle on the
# host. So in the image DVC copies (or clones, where the filesystem can): real files on
# the host. .dvc/config.local is the image's own (git-ignored; .dockerignore keeps the
# host's out).

# imgclf serve's port: docker compose run --service-ports app imgclf serve --host 0.0.0.0
EXPOSE 8000

CMD ["dvc", "repro"]
