"""The one exception type meant for users: the CLI prints its message and exits non-zero."""


class SoundformerError(Exception):
    """A problem the user can fix (bad file, bad config, missing data).

    The message names the problem and the fix; the CLI shows it without a traceback.
    """


class Interrupted(SoundformerError):
    """Ctrl-C during training: the job saved its last epoch. Stops a whole cross-validation
    or sweep, not just the job it hit."""
