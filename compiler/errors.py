"""User-facing errors: one line, naming the problem, never a traceback."""


class EdgegradError(Exception):
    """An error caused by the user's input (model, scheme, budget, data). The CLI prints it on one line."""


class UnsupportedModelError(EdgegradError):
    pass


class BudgetError(EdgegradError):
    pass
