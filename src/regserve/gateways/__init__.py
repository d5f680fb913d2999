"""Several gateways over one state database: who leads (``leader.py``), this gateway's part
(``node.py``), the change feed between them (``changes.py``), the controller that runs only
while leading (``fenced.py``) and the routing table followers read (``follower.py``).
docs/scale-out.md#several-gateways-over-one-database.

Import the modules themselves: the auth service needs the change feed before the rest can
be imported (this package re-exports nothing, so importing one module loads only it)."""
