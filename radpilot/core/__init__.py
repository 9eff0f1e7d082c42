"""The floor every layer stands on; it imports nothing from radpilot: the contract types
(evidence, model cards, tool results), errors, the instruction filter, the finding vocabulary
and the metrics."""
