"""Kube Toolbox: run an experiment grid locally or as Kubernetes Jobs, and move data through S3.

Lives at src/toolbox of a project; see README.md. Importing it has no side effects.
"""
import os

# The checkout itself: templates/, schemas/ and the Makefile live here (src/toolbox of a project).
TOOLBOX_DIR = os.path.dirname(os.path.abspath(__file__))
