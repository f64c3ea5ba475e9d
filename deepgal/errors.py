"""The root of deepgal's explainable failures.

Every error whose message already says what went wrong in the user's terms (which file, key
or value, and what to do) derives from :class:`DeepgalError`, so a stage script can turn all
of them into one line without importing the modules that raise them (importing
``deepgal.checkpoint`` just to name its error would load torch into every stage).
"""


class DeepgalError(Exception):
    """A failure the message fully explains; stages print it as ``error: <message>``."""
