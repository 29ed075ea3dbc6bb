"""The strategies the executor hosts, behind one protocol (``base.Strategy``), built by ``registry``."""
