"""HTTP routes: thin adapters from requests to the resource service."""
