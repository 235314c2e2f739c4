# shellcheck shell=bash
# Kube Toolbox: rc file of `make shell` (bash --rcfile; zsh reaches it through build/toolbox-zsh/.zshrc).
# The user's own rc file first, then the project environment, so that a `conda activate base` in
# ~/.bashrc cannot hide it. Which environment is decided in Python (devtools/shell.py) and passed in
# TOOLBOX_VENV, TOOLBOX_CONDA_SH + TOOLBOX_CONDA_ENV, or TOOLBOX_PYTHON_DIR (a folder whose `python` is the
# interpreter make chose); .env values are already in the environment.

if [ -n "${ZSH_VERSION:-}" ]; then
    ZDOTDIR="${TOOLBOX_USER_ZDOTDIR:-$HOME}"
    unset TOOLBOX_USER_ZDOTDIR
    # shellcheck source=/dev/null
    [ -f "$ZDOTDIR/.zshrc" ] && . "$ZDOTDIR/.zshrc"
else
    # shellcheck source=/dev/null
    [ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"
fi

if [ -n "${TOOLBOX_VENV:-}" ] && [ -f "$TOOLBOX_VENV/bin/activate" ]; then
    # shellcheck source=/dev/null
    . "$TOOLBOX_VENV/bin/activate"
elif [ -n "${TOOLBOX_VENV:-}" ]; then
    export VIRTUAL_ENV="$TOOLBOX_VENV"
    export PATH="$TOOLBOX_VENV/bin:$PATH"
elif [ -n "${TOOLBOX_CONDA_ENV:-}" ] && [ -f "${TOOLBOX_CONDA_SH:-}" ]; then
    # shellcheck source=/dev/null
    . "$TOOLBOX_CONDA_SH" && conda activate "$TOOLBOX_CONDA_ENV"
elif [ -n "${TOOLBOX_PYTHON_DIR:-}" ]; then
    export PATH="$TOOLBOX_PYTHON_DIR:$PATH"
fi
unset TOOLBOX_VENV TOOLBOX_CONDA_SH TOOLBOX_CONDA_ENV TOOLBOX_PYTHON_DIR

# `make` inside this shell: no "Entering directory" noise.
alias make='make --no-print-directory'
