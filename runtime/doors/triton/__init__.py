"""Triton Inference Server: a model repository from a manifest (repository), the python-backend
model it serves (python_model), and a managed tritonserver process (server)."""
