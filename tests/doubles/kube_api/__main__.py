"""Run the double standalone: prints the server URL on stdout (one line, flushed) and serves until killed.

    python tests/doubles/kube_api --port 0 --kubeconfig PATH [--no-validate] [--executor]
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
    parser.add_argument("--executor", action="store_true",
                        help="run each pod's main container command as a local process (see executor.py)")
    args = parser.parse_args(argv)
    double = KubeDouble(args.host, args.port, validate=not args.no_validate,
                        job_controller=not args.no_job_controller, executor=args.executor,
                        namespaces=sorted({"default", "kube-system", args.namespace}))
    if args.kubeconfig:
        double.write_kubeconfig(args.kubeconfig, namespace=args.namespace)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(double.url, flush=True)
    try:
        double.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        double.executor = False  # no pod process outlives the server
    return 0


if __name__ == "__main__":
    sys.exit(main())
