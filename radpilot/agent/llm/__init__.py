"""The LLM side of the agent: an OpenAI-compatible client (vLLM), strict tool schemas, the
circuit breaker, and the LLM planner that falls back to the embedded one."""
