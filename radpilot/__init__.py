"""radpilot: an agentic, evidence-grounded assistant for chest radiographs.

Decision support, not a diagnosis: every statement radpilot makes cites the tool output or
guideline passage it rests on, and a clinician makes the call.
"""

__version__ = "0.1.0"
