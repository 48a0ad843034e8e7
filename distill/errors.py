"""User-facing errors: one line, no traceback, non-zero exit (see `distill.cli`)."""


class DistillError(Exception):
    """An error caused by the user's input (recipe, data, paths). The CLI prints it on one line."""


class RecipeError(DistillError):
    pass


class DataError(DistillError):
    pass
