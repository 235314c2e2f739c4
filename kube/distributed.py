"""Multi-node cells in the cluster (`nodes: N` above 1): one Indexed Job of N pods and one headless Service.

Kubernetes itself is the distributed engine, with namespace rights only: the Job runs N pods at once
(`completionMode: Indexed`, completions = parallelism = N); the job controller names pod K's host `<job>-K`,
and the headless Service `<job>` (`subdomain` of every pod, `publishNotReadyAddresses`: names exist before
anything is ready, since rendezvous comes first) turns that into the DNS name `<job>-K.<job>`. Every pod gets
the variables of core/multinode.py: MASTER_ADDR = `<job>-0.<job>` (pod 0), NODE_RANK from its completion
index (a fieldRef to the index annotation: the JOB_COMPLETION_INDEX variable the controller adds comes after
the template's variables, so `$(JOB_COMPLETION_INDEX)` could not be used in them).

The Service is created before the Job and then owned by it (an ownerReference): deleting the Job, by hand or
by `ttl_seconds_after_finished`, takes the Service with it; `make delete` removes both. One failed node fails
the cell (`maxFailedIndexes: 0`, kube/jobspec.py), and its other pods are stopped with it.
"""
import json

from toolbox.core import multinode, naming
from toolbox.kube import jobspec, objects

SERVICE_ROLE = "service"
NODES_ANNOTATION = "toolbox/nodes"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def job_name(cell):
    return jobspec.job_name(cell.name, cell.settings, multinode.node_count(cell.settings))


def service_name(job):
    """A Service's name is a DNS-1035 label: it starts with a letter (a Job's name may start with a digit)."""
    return job if job[:1].isalpha() else naming.indexed_job_name("s" + job, 1)


def master_addr(job):
    return f"{job}-0.{service_name(job)}"


def service(settings, job, cell_name):
    """The headless Service that gives the pods of a multi-node cell their DNS names."""
    labels = {**objects.owner_labels(settings, SERVICE_ROLE), "toolbox/cell": cell_name}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service_name(job), "namespace": settings["namespace"], "labels": labels,
                         "annotations": {"toolbox/job": job}},
            "spec": {"clusterIP": "None", "selector": {JOB_NAME_LABEL: job}, "publishNotReadyAddresses": True,
                     "ports": [{"name": "master", "port": settings["master_port"]}]}}


def job_manifest(renderer, cell):
    """The Job text of a multi-node cell (None when its settings have problems: renderer.check() says)."""
    s = cell.settings
    shape = renderer.shape(s, "job", cell.name)
    renderer.check_command(cell)
    if shape.context is None:
        return None
    job, nodes = job_name(cell), multinode.node_count(s)
    env = [("MASTER_ADDR", master_addr(job)), *multinode.shared_variables(s).items()]
    rank = [("NODE_RANK", f"metadata.annotations['{jobspec.INDEX_KEY}']")]
    annotations = {"toolbox/model": cell.model, "toolbox/dataset": cell.dataset,
                   "toolbox/hparams": json.dumps(dict(cell.hparams), ensure_ascii=False),
                   NODES_ANNOTATION: str(nodes)}
    text = renderer.render("job.yaml.j2", shape, job, cell.command, renderer.workload_labels(shape, cell.name),
                           annotations, extra_env=env, cell_name=cell.name, main={"field_env": rank},
                           job=jobspec.spec(s, nodes), subdomain=service_name(job))
    return jobspec.check_template(renderer, text, cell.name)
