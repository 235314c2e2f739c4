"""Multi-node cells (`nodes: N`): the variables torchrun reads, and the placeholders of commands.

A cell with `nodes` above 1 runs its command once per node: N pods of one Indexed Job in the cluster (kube/
distributed.py), N processes here (local/nodes.py). Each gets the same variables, so that
`torchrun --nnodes=$NNODES --node_rank=$NODE_RANK --nproc_per_node=$NPROC_PER_NODE --master_addr=$MASTER_ADDR
--master_port=$MASTER_PORT train.py` runs unchanged in both places:

    MASTER_ADDR      where rank 0 listens: pod 0's DNS name in the cluster, 127.0.0.1 here
    MASTER_PORT      the cell's master_port
    NNODES           the number of nodes (WORLD_SIZE too: torchrun sets its workers' own WORLD_SIZE)
    NODE_RANK        0 .. N-1 (in a pod: its completion index)
    NPROC_PER_NODE   processes per node: the cell's gpu_count, at least 1

Placeholders say the same in a command, for cells of any size: `<nodes>`, `<nproc_per_node>` and
`<master_port>` are the cell's values; `<node_rank>` and `<master_addr>` differ per node, so in a multi-node
cell they are the shell's `$NODE_RANK` and `$MASTER_ADDR` (in a single-node cell: 0 and 127.0.0.1).
"""

PLACEHOLDERS = ("nodes", "node_rank", "master_addr", "master_port", "nproc_per_node")
LOCAL_MASTER = "127.0.0.1"


def node_count(settings):
    return settings.get("nodes") or 1


def is_multinode(settings):
    return node_count(settings) > 1


def nproc_per_node(settings):
    return max(settings.get("gpu_count") or 0, 1)


def uses_placeholders(names):
    """Whether a command's placeholder names include one of ours."""
    return any(name in PLACEHOLDERS for name in names)


def placeholder_values(settings):
    """What the placeholders of a cell's command become."""
    multi = is_multinode(settings)
    return {"nodes": str(node_count(settings)), "nproc_per_node": str(nproc_per_node(settings)),
            "master_port": str(settings.get("master_port")),
            "node_rank": "${NODE_RANK}" if multi else "0",
            "master_addr": "${MASTER_ADDR}" if multi else LOCAL_MASTER}


def shared_variables(settings):
    """The variables every node of a cell gets alike (name -> text), in the order pods list them."""
    nodes = str(node_count(settings))
    return {"MASTER_PORT": str(settings.get("master_port")), "NNODES": nodes, "WORLD_SIZE": nodes,
            "NPROC_PER_NODE": str(nproc_per_node(settings))}


def node_variables(settings, rank, master_addr=LOCAL_MASTER):
    """Every variable of one node (local runs: the cluster's pods get NODE_RANK from their index)."""
    return {"MASTER_ADDR": master_addr, **shared_variables(settings), "NODE_RANK": str(rank)}
