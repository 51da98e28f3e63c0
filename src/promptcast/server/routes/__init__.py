"""The route handlers, one module per group of routes; `server/app.py` lists them all."""
