"""Operator tools, not on the request path: the `qtts` command line (cli.py: demo, tiny
models, config checks, cluster manifests, admin; say_cli.py: `qtts say`), KubeRay manifests
generated from a serve config (cluster_manifest.py) and strict loading of serve-config
profiles (profiles.py)."""
