"""HEI-NW server: an OpenAI-compatible API with episodic memory, generating on vLLM.

``server.app.create_app`` builds the FastAPI app; ``hei-nw serve`` runs it. vLLM
runs in its own virtual environment as a subprocess (``server.vllm_process``),
or is attached by URL; this package never imports it. Importing ``server`` has
no side effects and needs no extra; the app needs ``pip install "hei-nw[server]"``.
"""
