"""Run the double standalone: `python tests/doubles/kube_api --port 0 --kubeconfig PATH [--no-validate]`.

Prints the server URL on stdout (one line, flushed) and serves until killed.
"""
import os
import sys

if __package__ in (None, ""):
    # Run as `python tests/doubles/kube_api`: sys.path[0] is this folder, whose module names must not shadow the
    # standard library's; import the package from its parent instead.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import signal

from doubles.kube_api.server import KubeDouble


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kube_api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this server here")
    parser.add_argument("--namespace", default="ns", help="the kubeconfig context's namespace")
    parser.add_argument("--no-validate", action="store_true", help="skip schema validation of bodies")
    parser.add_argument("--no-job-controller", action="store_true", help="do not create pods for new jobs")
    args = parser.parse_args(argv)
    double = KubeDouble(args.host, args.port, validate=not args.no_validate,
                        job_controller=not args.no_job_controller,
                        namespaces=sorted({"default", "kube-system", args.namespace}))
    if args.kubeconfig:
        double.write_kubeconfig(args.kubeconfig, namespace=args.namespace)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(double.url, flush=True)
    try:
        double.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
