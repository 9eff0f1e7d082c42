"""The OpenAI-compatible chat client (vLLM), its circuit breaker, and the one factory that
builds a client from the settings; used by the LLM planner, the drafter and `describe_image`
alike."""
