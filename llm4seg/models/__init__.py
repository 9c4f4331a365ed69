"""Models: CMUNeXt, the LLM block, and the string registry that builds them."""
