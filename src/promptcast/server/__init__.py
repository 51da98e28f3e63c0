"""HTTP: the ASGI app, its routes and responses, and the door below ASGI under uvicorn."""
