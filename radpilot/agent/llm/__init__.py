"""The LLM side of the agent: strict tool schemas, the LLM planner that falls back to the
embedded one, and the drafter. The chat client itself is `radpilot.llm`."""
