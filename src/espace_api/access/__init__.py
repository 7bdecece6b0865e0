"""Access policy: who may see and change what, compiled into SQL."""
