"""The online side: the HTTP API and results page (app.py), run on Ray Serve (deployments.py)."""
