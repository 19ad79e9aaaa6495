"""User-facing errors.

Anything the user can fix (a bad flag, a missing directory, a malformed file) is raised as
:class:`UserError`. The CLI prints its message as one line and exits with code 2; ``--debug``
shows the traceback instead. Library users can catch it like any exception.
"""


class UserError(Exception):
    """An error caused by user input; the message says what is wrong and what to do."""

    exit_code = 2


#: What a command's architecture argument may be (used in help texts and error messages).
ARCH_FORMS = ("a zoo name (see `noisydarts zoo`), a search or training run directory, a genotype.json, "
              "or genotype text (Genotype(...), an NB201 string |op~0|+..., CellwiseGenotype(...), LayerwiseGenotype(...))")
