"""Token sources behind the ``Backend`` protocol: vLLM, OpenAI-compatible servers, transformers."""
