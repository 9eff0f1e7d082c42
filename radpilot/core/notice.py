"""The one decision-support notice: every answer, report, tool output and interface that shows
results to a user carries this sentence."""

DECISION_SUPPORT = "Decision support, not a diagnosis: a clinician must confirm every finding."
