"""The stack in containers: what the image's entrypoint and healthcheck run.

bootstrap.py  one-shot: the stack's secrets and the Redis ACL file, on a volume
run.py        the entrypoint: a role's settings from those secrets, then exec
health.py     the HEALTHCHECK: the role's readiness endpoint, as a client sees it
"""
