"""Kube Toolbox: run an experiment grid locally or as Kubernetes Jobs, and move data through S3.

Lives at src/toolbox of a project; see README.md. Importing it has no side effects.
"""
