"""How an answer counts: the failure messages the personas record and the gate reads.

Kept apart from `personas` so the gate (and its tests) never import Locust, which
monkey-patches the standard library with gevent on import.
"""

THROTTLED = "HTTP 429"  # rate limited: reported apart, not an error
SERVER_ERROR = "HTTP 5xx"  # counted by the availability SLOs
NO_ANSWER = "no answer"  # connection refused, reset or timed out: counted as well
CLIENT_ERROR = "HTTP 4xx"  # the client's mistake: reported, not an error
