"""The harness and the ``bench`` command line of gradbench."""
